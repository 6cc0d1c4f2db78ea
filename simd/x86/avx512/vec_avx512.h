/*
 * The AVX-512 vector vocabulary (ggml's habit): the few operations the
 * shared kernel bodies in ../common/ are written in, mapped onto zmm
 * registers. The forward's kernels include it in ta_simd_avx512*, compiled
 * with AVX-512 flags; each function also carries that target as an
 * attribute, so that the backward and decoding kernels (src/, compiled for
 * the baseline ISA) share this vocabulary and vf_exp.
 */
#ifndef TILEATTN_VEC_AVX512_H
#define TILEATTN_VEC_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define TA_ISA(name) name##_avx512
#define VF_LANES     16

/* Every function of the vocabulary: inlined, and compiled for the ISA even
 * where the including file is not. */
#define TA_VEC_FN                                                                                  \
    static inline                                                                                  \
        __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

typedef __m512 vf;
typedef __m512i vi;

TA_VEC_FN vf vf_zero(void) {
    return _mm512_setzero_ps();
}
TA_VEC_FN vf vf_set1(float x) {
    return _mm512_set1_ps(x);
}
TA_VEC_FN vf vf_load(const float *p) {
    return _mm512_loadu_ps(p);
}
TA_VEC_FN void vf_store(float *p, vf v) {
    _mm512_storeu_ps(p, v);
}
TA_VEC_FN __mmask16 vf_mask_n(int64_t n) {
    return (__mmask16)((1u << n) - 1u); /* n in [0, 16] */
}
/* The first n lanes from p, the others `fill` (memory past n untouched). */
TA_VEC_FN vf vf_load_n(const float *p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vf_mask_n(n), p);
}
TA_VEC_FN void vf_store_n(float *p, vf v, int64_t n) {
    _mm512_mask_storeu_ps(p, vf_mask_n(n), v);
}
TA_VEC_FN vf vf_fma(vf a, vf b, vf c) {
    return _mm512_fmadd_ps(a, b, c);
}
TA_VEC_FN vf vf_fnma(vf a, vf b, vf c) {
    return _mm512_fnmadd_ps(a, b, c); /* c - a * b */
}
TA_VEC_FN vf vf_add(vf a, vf b) {
    return _mm512_add_ps(a, b);
}
TA_VEC_FN vf vf_sub(vf a, vf b) {
    return _mm512_sub_ps(a, b);
}
TA_VEC_FN vf vf_mul(vf a, vf b) {
    return _mm512_mul_ps(a, b);
}
TA_VEC_FN vf vf_max(vf a, vf b) {
    return _mm512_max_ps(a, b);
}
TA_VEC_FN float vf_hmax(vf v) {
    return _mm512_reduce_max_ps(v);
}
TA_VEC_FN float vf_hsum(vf v) {
    return _mm512_reduce_add_ps(v);
}
/* p * 2^n (n integral, held also as t = n + 1.5 * 2^23; the result
 * normal), and 0 in the lanes where x < xmin: one VSCALEFPS masked by the
 * compare, where the exponent add (AVX2's) takes a shift and an add. The
 * same bits: scaling a normal result by 2^n is exact either way. */
TA_VEC_FN vf vf_scale_pow2_or_zero(vf p, vf n, vf t, vf x, vf xmin) {
    (void)t;
    __mmask16 keep = _mm512_cmp_ps_mask(x, xmin, _CMP_NLT_UQ);
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* Transposes a 16 x 16 block held in 16 registers (4 shuffle stages of 16,
 * the usual unpack / shuffle / 128-bit lane shuffle ladder). */
TA_VEC_FN void vf_transpose(vf r[16]) {
    vf t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* rows 4i..4i+3, columns k, k+4, k+8, k+12 */
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int h = 0; h < 2; h++) /* rows 8h..8h+7 */
        for (int k = 0; k < 4; k++) {
            t[8 * h + k] = _mm512_shuffle_f32x4(u[8 * h + k], u[8 * h + 4 + k], 0x88);
            t[8 * h + 4 + k] = _mm512_shuffle_f32x4(u[8 * h + k], u[8 * h + 4 + k], 0xdd);
        }
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
    }
}

/* Conversions from the storage dtypes, 16 elements (F16C / a shift). */
TA_VEC_FN vf vf_load_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
TA_VEC_FN vf vf_load_bf16(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

#ifdef __AVX512BF16__
/* To bfloat16, rounded to nearest even (VCVTNE[2]PS2BF16, which also
 * flushes subnormals: the softmax's P has none), for files compiled with
 * -mavx512bf16: 32 elements (a then b), or the first n of 16. */
#define TA_VEC_BF16_FN                                                                             \
    static inline                                                                                  \
        __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
TA_VEC_BF16_FN void vf_store_bf16_x2(uint16_t *p, vf a, vf b) {
    _mm512_storeu_si512((void *)p, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}
TA_VEC_BF16_FN void vf_store_bf16_n(uint16_t *p, vf v, int64_t n) {
    _mm256_mask_storeu_epi16(p, vf_mask_n(n), (__m256i)_mm512_cvtneps_pbh(v));
}
#endif

#endif /* TILEATTN_VEC_AVX512_H */
