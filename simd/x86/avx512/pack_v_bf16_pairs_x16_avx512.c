/*
 * V panels of bfloat16 key pairs for the P.V kernels that multiply pairs
 * (the twins of the amx and avx512bf16 tables that round P to bfloat16).
 *
 * A pair instruction sums, per float32 lane, the products of two adjacent
 * bfloat16 values of each operand. In P.V the summed axis is the keys, so
 * the lane of output column c must hold V[2g][c] and V[2g + 1][c] side by
 * side: rows of V are interleaved two by two.
 *
 * Panel: [ceil(n/32) chunks][ceil(dv/16) strips][16 pairs][16 columns][2]
 * bfloat16. One (chunk, strip) is 16 rows of 64 bytes: exactly one AMX B
 * tile (16 key pairs x 16 columns), and for VDPBF16PS one vector per key
 * pair. Chunks come first, so a prefix of the keys is readable without
 * knowing the packed n. Zero past n and past dv.
 */
#include <immintrin.h>

#include "../ukernels_x86.h"

enum { CHUNK = 32, STRIP = 16 };

int64_t ta_packed_v_floats_bf16_pairs_x16(int64_t n, int64_t dv) {
    /* 32 keys x 16 columns of bfloat16 = 256 floats per (chunk, strip). */
    return (n + CHUNK - 1) / CHUNK * ((dv + STRIP - 1) / STRIP) * 256;
}

/* Rows j and j + 1 (16 columns each, masked past dv, zero past n) become
 * one vector: V[j][0], V[j+1][0], V[j][1], V[j+1][1], ... (one VPERMW). */
void ta_pack_v_bf16_pairs_x16(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel) {
    (void)dtype; /* bfloat16 only */
    const uint16_t *v = src;
    int64_t strips = (dv + STRIP - 1) / STRIP;
    uint16_t order[32];
    for (int e = 0; e < 32; e++)
        order[e] = (uint16_t)(e % 2 ? 16 + e / 2 : e / 2);
    const __m512i interleave = _mm512_loadu_si512(order);
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        uint16_t *chunk = (uint16_t *)panel + (c0 / CHUNK) * strips * 512;
        for (int64_t g = 0; g < CHUNK / 2; g++) {
            int64_t j = c0 + 2 * g;
            for (int64_t s = 0; s < strips; s++) {
                int64_t cols = dv - s * STRIP < STRIP ? dv - s * STRIP : STRIP;
                __mmask16 mask = (__mmask16)((1u << cols) - 1u);
                __m256i a = j < n ? _mm256_maskz_loadu_epi16(mask, v + j * stride + s * STRIP)
                                  : _mm256_setzero_si256();
                __m256i b = j + 1 < n
                                ? _mm256_maskz_loadu_epi16(mask, v + (j + 1) * stride + s * STRIP)
                                : _mm256_setzero_si256();
                __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
                _mm512_storeu_si512(chunk + s * 512 + g * 32,
                                    _mm512_permutexvar_epi16(interleave, ab));
            }
        }
    }
}
