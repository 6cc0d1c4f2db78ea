/*
 * S = scale Q.K^T for bfloat16 inputs with AMX (TDPBF16PS), 32 x 32 blocks
 * of four 16 x 16 float32 tiles, and the bfloat16 Q rows and K panels it
 * reads.
 *
 * TDPBF16PS adds to each float32 element of a 16 x 16 tile the products
 * of 16 pairs of bfloat16 values: C[m][n] += sum_k A[m][2k] B[k][2n] +
 * A[m][2k+1] B[k][2n+1]. A product of two bfloat16 values is exact in
 * float32, so S is a float32 sum of exact products, as in the float32
 * kernels (the instruction flushes subnormal inputs and outputs, below
 * 1.2e-38). Q is not scaled beforehand (that would round it again): the
 * scale multiplies S once, in float32, when the tiles are stored.
 *
 * Layouts:
 *   Q rows:  bfloat16, row r at q + r * ldq floats (ta_load_rows_x16_scalar),
 *            zero past d up to 2 ldq elements; a full block of 32 rows is
 *            read in place when its steps' columns fit in those, any other
 *            copied into a zero-padded buffer of 32 rows x 32 steps-worth
 *            of columns, so edge rows and columns past d read zeros, never
 *            a neighbour's bytes;
 *   K panel: [ceil(n/32)][16 * steps][32 keys][2] bfloat16, steps =
 *            ceil(d / 32): for each pair of head-dim columns, the 32 keys'
 *            pairs (one 32-bit word per key), zero past n and past d
 *            (ta_pack_k_bf16_pairs_x32, shared with the avx512bf16 table).
 *            A B tile is 16 pairs x 16 keys: rows 128 bytes apart.
 * Tiles: 0-3 accumulate the 2 x 2 blocks of 16 x 16, 4-5 hold Q's two
 * 16-row halves of one 32-column step, 6-7 K's two 16-key halves.
 *
 * AMX state must be granted per process (dispatch.c asks the kernel with
 * arch_prctl) and configured per thread: every call loads the tile
 * configuration, which costs little next to a block's work and keeps the
 * kernel independent of whatever else ran on the thread.
 */
#include <immintrin.h>
#include <string.h>

#include "../avx512/vec_avx512.h"
#include "../ukernels_x86.h"
#include "tiles_amx.h"
#include "../../scalar/ukernels_scalar.h"

enum { MR = 32, NR = 32, KSTEP = 32 /* bf16 columns per tile row */ };

void ta_qk_bf16_32x32_amx(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                          const float *k_panel, float scale, float *s, int64_t lds) {
    int64_t steps = (d + KSTEP - 1) / KSTEP, pairs = ta_bf16_pairs_padded(d);
    int64_t qcols = steps * KSTEP; /* bf16 per row of the Q block */
    uint16_t qblock[MR * (TILEATTN_MAX_HEAD_DIM + KSTEP)] __attribute__((aligned(64)));
    float cbuf[MR * NR] __attribute__((aligned(64)));
    ta_amx_configure_16x16_tiles();
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        const uint16_t *qa = (const uint16_t *)(q + i * ldq);
        int64_t q_ld = 2 * ldq; /* bf16 per row of the A tiles' source */
        if (rows < MR || qcols > q_ld) {
            memset(qblock, 0, (size_t)(MR * qcols) * sizeof(uint16_t));
            for (int64_t r = 0; r < rows; r++)
                memcpy(qblock + r * qcols, q + (i + r) * ldq, (size_t)d * sizeof(uint16_t));
            qa = qblock;
            q_ld = qcols;
        }
        for (int64_t j = 0; j < n; j += NR) {
            const uint32_t *kp = (const uint32_t *)(k_panel + j * pairs);
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t st = 0; st < steps; st++) {
                _tile_loadd(4, qa + st * KSTEP, q_ld * 2);
                _tile_loadd(5, qa + 16 * q_ld + st * KSTEP, q_ld * 2);
                _tile_loadd(6, kp + st * 16 * NR, NR * 4);
                _tile_loadd(7, kp + st * 16 * NR + 16, NR * 4);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, cbuf, NR * 4);
            _tile_stored(1, cbuf + 16, NR * 4);
            _tile_stored(2, cbuf + 16 * NR, NR * 4);
            _tile_stored(3, cbuf + 16 * NR + 16, NR * 4);
            int64_t cols = n - j < NR ? n - j : NR;
            __m512 vscale = _mm512_set1_ps(scale);
            __mmask16 lo = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            __mmask16 hi = cols >= 32  ? 0xffff
                           : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1)
                                       : 0;
            for (int64_t r = 0; r < rows; r++) {
                float *out = s + (i + r) * lds + j;
                _mm512_mask_storeu_ps(out, lo,
                                      _mm512_mul_ps(_mm512_load_ps(cbuf + r * NR), vscale));
                if (hi)
                    _mm512_mask_storeu_ps(
                        out + 16, hi, _mm512_mul_ps(_mm512_load_ps(cbuf + r * NR + 16), vscale));
            }
        }
    }
}
