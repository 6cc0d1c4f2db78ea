/*
 * The AVX2 vector vocabulary: the operations the shared kernel bodies in
 * ../common/ are written in, mapped onto ymm registers. The forward's
 * kernels include it in ta_simd_avx2, compiled with -mavx2 -mfma -mf16c;
 * each function also carries that target as an attribute, so that the
 * backward and decoding kernels (src/, compiled for the baseline ISA, with
 * the same target on their own functions) share this vocabulary and
 * vf_exp.
 */
#ifndef TILEATTN_VEC_AVX2_H
#define TILEATTN_VEC_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define TA_ISA(name) name##_avx2
#define VF_LANES     8

/* Every function of the vocabulary: inlined, and compiled for the ISA even
 * where the including file is not. */
#define TA_VEC_FN static inline __attribute__((always_inline, target("avx2,fma,f16c")))

typedef __m256 vf;
typedef __m256i vi;

TA_VEC_FN vf vf_zero(void) {
    return _mm256_setzero_ps();
}
TA_VEC_FN vf vf_set1(float x) {
    return _mm256_set1_ps(x);
}
TA_VEC_FN vf vf_load(const float *p) {
    return _mm256_loadu_ps(p);
}
TA_VEC_FN void vf_store(float *p, vf v) {
    _mm256_storeu_ps(p, v);
}
/* A lane mask with the first n lanes set, n in [0, 8]. */
TA_VEC_FN vi vf_mask_n(int64_t n) {
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - n));
}
/* The first n lanes from p, the others `fill` (memory past n untouched). */
TA_VEC_FN vf vf_load_n(const float *p, int64_t n, float fill) {
    vi m = vf_mask_n(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
TA_VEC_FN void vf_store_n(float *p, vf v, int64_t n) {
    _mm256_maskstore_ps(p, vf_mask_n(n), v);
}
TA_VEC_FN vf vf_fma(vf a, vf b, vf c) {
    return _mm256_fmadd_ps(a, b, c);
}
TA_VEC_FN vf vf_fnma(vf a, vf b, vf c) {
    return _mm256_fnmadd_ps(a, b, c); /* c - a * b */
}
TA_VEC_FN vf vf_add(vf a, vf b) {
    return _mm256_add_ps(a, b);
}
TA_VEC_FN vf vf_sub(vf a, vf b) {
    return _mm256_sub_ps(a, b);
}
TA_VEC_FN vf vf_mul(vf a, vf b) {
    return _mm256_mul_ps(a, b);
}
TA_VEC_FN vf vf_max(vf a, vf b) {
    return _mm256_max_ps(a, b);
}
TA_VEC_FN float vf_hmax(vf v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
TA_VEC_FN float vf_hsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* p * 2^n where t = n + 1.5 * 2^23 (n integral, the result normal), and 0
 * in the lanes where x < xmin: n sits in t's low mantissa bits; shifted
 * into the exponent field the magic number's own bits fall off the top. */
TA_VEC_FN vf vf_scale_pow2_or_zero(vf p, vf n, vf t, vf x, vf xmin) {
    (void)n;
    vi e = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    vf y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
    return _mm256_and_ps(y, _mm256_cmp_ps(x, xmin, _CMP_NLT_UQ));
}

/* Transposes an 8 x 8 block held in 8 registers. */
TA_VEC_FN void vf_transpose(vf r[8]) {
    vf t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) { /* rows 4i..4i+3, columns k, k+4 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

TA_VEC_FN vf vf_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
TA_VEC_FN vf vf_load_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

#endif /* TILEATTN_VEC_AVX2_H */
