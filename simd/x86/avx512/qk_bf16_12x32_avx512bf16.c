/*
 * S = scale Q.K^T for bfloat16 inputs with VDPBF16PS (AVX512_BF16), 12 x 32
 * register tile.
 *
 * VDPBF16PS adds to each float32 lane the products of a pair of bfloat16
 * values from each operand: acc[i] += a[2i+1] b[2i+1], then += a[2i] b[2i],
 * each product exact in float32 (8 x 8 significand bits) and each sum
 * rounded to nearest; subnormal inputs and outputs are flushed to zero
 * (below 1.2e-38), as in the AMX table. So S is a float32 sum of exact
 * products, as in the float32 kernels, at twice the products per
 * instruction of a float32 FMA. The scale multiplies S once, in float32.
 *
 * Layouts (the AMX table's, so both share one packer):
 *   Q rows:  bfloat16 (ta_load_rows_x16_scalar), zero past d: the pair
 *            (2g, 2g + 1) of row r is 32-bit word g of the row, broadcast
 *            to every lane; a last block of fewer than 12 rows is copied
 *            into a zeroed buffer first;
 *   K panel: [ceil(n/32)][pairs padded to 16][32 keys][2] bfloat16
 *            (ta_pack_k_bf16_pairs_x32): one pair step is two vectors,
 *            keys 0-15 and 16-31.
 * Registers: 24 accumulators, 2 K vectors, 1 broadcast Q pair: 27 of 32.
 *
 * Where it pays depends on the core: on a Zen 4 VDPBF16PS ran at twice the
 * FMA loop's FLOP/s (235 against 117 GFLOP/s, one core), on the 16-core
 * Xeon this project measured at half (73-85 against 150-175), and there
 * the AMX table is chosen first.
 */
#include <immintrin.h>
#include <string.h>

#include "../ukernels_x86.h"

enum { MR = 12, NR = 32 };

void ta_qk_bf16_12x32_avx512bf16(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                                 const float *k_panel, float scale, float *s, int64_t lds) {
    int64_t pairs = (d + 1) / 2, panel_pairs = ta_bf16_pairs_padded(d);
    uint32_t edge[MR * (TILEATTN_MAX_HEAD_DIM / 2)];
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        /* A row of ldq floats is ldq words, each a pair of bfloat16. */
        const uint32_t *qw = (const uint32_t *)(q + i * ldq);
        int64_t ldw = ldq;
        if (rows < MR) {
            memset(edge, 0, (size_t)(MR * pairs) * sizeof(uint32_t));
            for (int64_t r = 0; r < rows; r++)
                memcpy(edge + r * pairs, qw + r * ldq, (size_t)pairs * sizeof(uint32_t));
            qw = edge, ldw = pairs;
        }
        for (int64_t j = 0; j < n; j += NR) {
            const float *kp = k_panel + (j / NR) * panel_pairs * NR;
            __m512 acc[MR][2];
            for (int r = 0; r < MR; r++)
                acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (int64_t g = 0; g < pairs; g++) {
                __m512bh k0 = (__m512bh)_mm512_loadu_ps(kp + g * NR);
                __m512bh k1 = (__m512bh)_mm512_loadu_ps(kp + g * NR + 16);
                for (int r = 0; r < MR; r++) {
                    __m512bh qp = (__m512bh)_mm512_set1_epi32((int)qw[r * ldw + g]);
                    acc[r][0] = _mm512_dpbf16_ps(acc[r][0], qp, k0);
                    acc[r][1] = _mm512_dpbf16_ps(acc[r][1], qp, k1);
                }
            }
            int64_t cols = n - j < NR ? n - j : NR;
            __mmask16 lo = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            __mmask16 hi = cols >= 32  ? 0xffff
                           : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1)
                                       : 0;
            for (int64_t r = 0; r < rows; r++) {
                float *out = s + (i + r) * lds + j;
                _mm512_mask_storeu_ps(out, lo, _mm512_mul_ps(acc[r][0], vscale));
                _mm512_mask_storeu_ps(out + 16, hi, _mm512_mul_ps(acc[r][1], vscale));
            }
        }
    }
}
