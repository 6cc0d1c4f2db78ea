/*
 * K panels of bfloat16 pairs for the Q.K^T kernels that multiply pairs:
 * TDPBF16PS (the amx table) and VDPBF16PS (the avx512bf16 table).
 *
 * Panel: [ceil(n/32)][pairs][32 keys][2] bfloat16, pairs = ceil(d/32) x 16:
 * for each pair of head-dim columns (2g, 2g + 1), the 32 keys' pairs, one
 * 32-bit word per key; zero past n and past d. Padding the pairs to a
 * multiple of 16 gives AMX whole 16-row tiles; the VDPBF16PS kernel reads
 * only the ceil(d/2) it needs.
 */
#include <immintrin.h>

#include "vec_avx512.h"
#include "../ukernels_x86.h"

enum { NR = 32 };

int64_t ta_bf16_pairs_padded(int64_t d) {
    return (d + 31) / 32 * 16;
}

int64_t ta_packed_k_floats_bf16_pairs_x32(int64_t n, int64_t d) {
    return (n + NR - 1) / NR * NR * ta_bf16_pairs_padded(d);
}

/* The panel is a transpose of 32-bit words: key j's pair of columns
 * (2g, 2g + 1) is word g of its row, and goes to word j of group g. So 16
 * keys x 16 pairs are loaded as 16 rows of 16 words (masked: columns past
 * d, and keys past n, read as zero), transposed in registers
 * (vf_transpose), and stored as 16 groups' halves of 16 keys. The portable
 * copy (ta_pack_k_x16_scalar) moved one element at a time: 1 GB/s on the
 * Xeon this was measured on (`tileattn bench --ukernels`). */
void ta_pack_k_bf16_pairs_x32(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel) {
    (void)dtype; /* bfloat16 only */
    const uint16_t *k = src;
    int64_t pairs = ta_bf16_pairs_padded(d), padded_n = (n + NR - 1) / NR * NR;
    for (int64_t j0 = 0; j0 < padded_n; j0 += 16) {
        /* Keys j0 .. j0 + 15: the first or second half of a 32-key panel. */
        float *out = panel + (j0 / NR) * pairs * NR + j0 % NR;
        for (int64_t g0 = 0; g0 < pairs; g0 += 16) {
            int64_t c0 = 2 * g0, cols = d - c0 < 32 ? (d - c0 > 0 ? d - c0 : 0) : 32;
            __mmask32 col_mask = cols == 32 ? 0xffffffffu : (__mmask32)((1u << cols) - 1u);
            vf r[16];
            for (int i = 0; i < 16; i++)
                r[i] = j0 + i < n && cols > 0 ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(
                                                    col_mask, k + (j0 + i) * stride + c0))
                                              : vf_zero();
            vf_transpose(r);
            for (int i = 0; i < 16; i++)
                vf_store(out + (g0 + i) * NR, r[i]);
        }
    }
}
