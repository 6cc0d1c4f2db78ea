/*
 * The decoding kernels for x86-64 CPUs with AVX2, FMA and F16C: the three
 * steps of decode.h's ta_decode_kernels over K/V rows read in place from
 * the cache (decode_kernels.c describes the design). Only the functions
 * carry the AVX2 target attribute; the file is compiled for the baseline
 * ISA, and ta_decode_kernels_select calls in only after checking the CPU.
 * The horizontal sums are the forward's vector vocabulary, and the softmax
 * is the forward's own (ta_softmax_f32_avx2, vf_exp below 1 ULP).
 */
#include "convert.h"
#include "decode.h"
#include "tileattn_config.h"

/* With the x86-64 SIMD tables only: the softmax is the forward's. */
#if defined(__x86_64__) && defined(__GNUC__) && TILEATTN_HAVE_X86_SIMD
#include <immintrin.h>

#include "../simd/x86/avx2/vec_avx2.h"
#include "../simd/x86/ukernels_x86.h"

#define INLINE static inline __attribute__((always_inline))
#define AVX2   __attribute__((target("avx2,fma,f16c")))

/* 8 elements of a cache row from element c (all 8 must exist). */
INLINE AVX2 __m256 load8_avx2(const void *row, int64_t c, tileattn_cache_dtype dtype) {
    switch (dtype) {
    case TILEATTN_CACHE_F32: return _mm256_loadu_ps((const float *)row + c);
    case TILEATTN_CACHE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + c)));
    case TILEATTN_CACHE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + c))),
            16));
    case TILEATTN_CACHE_INT8:
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)row + c))));
    }
    return _mm256_setzero_ps();
}

/* 16 bf16 of a row from column c as two float vectors, the even columns
 * (shifted up) and the odd ones (masked in place): one load and one
 * integer op each instead of a widening shuffle and a shift per 8. The
 * kernels then want Q and keep O with each full 16-column chunk as its 8
 * even columns, then its 8 odd ones (permute_q_avx2, unpermute_o_avx2);
 * decode_kernels_avx512.c does the same in 32-column chunks. */
INLINE AVX2 void load16_bf16_split(const void *row, int64_t c, __m256 *even, __m256 *odd) {
    __m256i x = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32((int)0xffff0000u)));
}

static void permute_q_avx2(int64_t rows, int64_t d, float *q, int64_t ldq,
                           tileattn_cache_dtype dtype) {
    if (dtype == TILEATTN_CACHE_BF16) ta_decode_split_columns(rows, d, q, ldq, 16);
}

static void unpermute_o_avx2(int64_t rows, int64_t dv, float *o, int64_t ldo,
                             tileattn_cache_dtype dtype) {
    if (dtype == TILEATTN_CACHE_BF16) ta_decode_merge_columns(rows, dv, o, ldo, 16);
}

INLINE AVX2 void qk_rows_avx2(int rows_in_block, int64_t d, const float *q, int64_t ldq,
                              const void *k_row, tileattn_cache_dtype dtype, float *s,
                              int64_t lds) {
    __m256 acc[4];
    for (int r = 0; r < rows_in_block; r++)
        acc[r] = _mm256_setzero_ps();
    int64_t c = 0;
    if (dtype == TILEATTN_CACHE_BF16) /* Q permuted: even columns, then odd */
        for (; c + 16 <= d; c += 16) {
            __m256 even, odd;
            load16_bf16_split(k_row, c, &even, &odd);
            for (int r = 0; r < rows_in_block; r++) {
                acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + c), even, acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + c + 8), odd, acc[r]);
            }
        }
    for (; c + 8 <= d; c += 8) {
        __m256 k = load8_avx2(k_row, c, dtype);
        for (int r = 0; r < rows_in_block; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + c), k, acc[r]);
    }
    for (int r = 0; r < rows_in_block; r++) {
        float dot = vf_hsum(acc[r]);
        for (int64_t t = c; t < d; t++)
            dot += q[r * ldq + t] * ta_cache_load_f32(k_row, dtype, t);
        s[r * lds] = dot;
    }
}

/* Four query rows against two keys at once: eight independent FMA chains
 * instead of four, and two K rows' loads in flight. d is a multiple of 8. */
INLINE AVX2 void qk_4rows_2keys_avx2(int64_t d, const float *q, int64_t ldq, const void *k0,
                                     const void *k1, tileattn_cache_dtype dtype, float *s,
                                     int64_t lds) {
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++)
        acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t c = 0;
    if (dtype == TILEATTN_CACHE_BF16) /* Q permuted: even columns, then odd */
        for (; c + 16 <= d; c += 16) {
            __m256 ka_even, ka_odd, kb_even, kb_odd;
            load16_bf16_split(k0, c, &ka_even, &ka_odd);
            load16_bf16_split(k1, c, &kb_even, &kb_odd);
            for (int r = 0; r < 4; r++) {
                __m256 q_even = _mm256_loadu_ps(q + r * ldq + c);
                __m256 q_odd = _mm256_loadu_ps(q + r * ldq + c + 8);
                acc0[r] = _mm256_fmadd_ps(q_even, ka_even, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(q_even, kb_even, acc1[r]);
                acc0[r] = _mm256_fmadd_ps(q_odd, ka_odd, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(q_odd, kb_odd, acc1[r]);
            }
        }
    for (; c < d; c += 8) {
        __m256 ka = load8_avx2(k0, c, dtype), kb = load8_avx2(k1, c, dtype);
        for (int r = 0; r < 4; r++) {
            __m256 qv = _mm256_loadu_ps(q + r * ldq + c);
            acc0[r] = _mm256_fmadd_ps(qv, ka, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(qv, kb, acc1[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        s[r * lds] = vf_hsum(acc0[r]);
        s[r * lds + 1] = vf_hsum(acc1[r]);
    }
}

INLINE AVX2 void qk_avx2_typed(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                               const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                               int64_t lds) {
    int64_t j = 0;
    if (rows % 4 == 0 && d % 8 == 0)
        for (; j + 2 <= n; j += 2)
            for (int64_t r = 0; r < rows; r += 4)
                qk_4rows_2keys_avx2(d, q + r * ldq, ldq, k_rows[j], k_rows[j + 1], dtype,
                                    s + r * lds + j, lds);
    for (; j < n; j++) {
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4)
            qk_rows_avx2(4, d, q + r * ldq, ldq, k_rows[j], dtype, s + r * lds + j, lds);
        for (; r < rows; r++)
            qk_rows_avx2(1, d, q + r * ldq, ldq, k_rows[j], dtype, s + r * lds + j, lds);
    }
}

static AVX2 void qk_avx2(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                         const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                         int64_t lds) {
#define QK_TYPED(dt) qk_avx2_typed(rows, n, d, q, ldq, k_rows, dt, s, lds)
    TA_DECODE_SWITCH_DTYPE(dtype, QK_TYPED);
#undef QK_TYPED
}

INLINE AVX2 void pv_chunk_avx2(int rows_in_block, int64_t n, int64_t c, const float *p, int64_t ldp,
                               const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                               int64_t ldo) {
    __m256 acc[4];
    for (int r = 0; r < rows_in_block; r++)
        acc[r] = _mm256_loadu_ps(o + r * ldo + c);
    for (int64_t j = 0; j < n; j++) {
        __m256 v = load8_avx2(v_rows[j], c, dtype);
        for (int r = 0; r < rows_in_block; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(p[r * ldp + j]), v, acc[r]);
    }
    for (int r = 0; r < rows_in_block; r++)
        _mm256_storeu_ps(o + r * ldo + c, acc[r]);
}

/* Up to four rows and sixteen columns at once: eight accumulators, each
 * weight broadcast once for two V vectors. With split (bf16) the two
 * vectors are one load16_bf16_split and O's 16 columns are in its order. */
INLINE AVX2 void pv_rows_16cols_avx2(int rows_in_block, int split, int64_t n, int64_t c,
                                     const float *p, int64_t ldp, const void *const *v_rows,
                                     tileattn_cache_dtype dtype, float *o, int64_t ldo) {
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < rows_in_block; r++) {
        acc0[r] = _mm256_loadu_ps(o + r * ldo + c);
        acc1[r] = _mm256_loadu_ps(o + r * ldo + c + 8);
    }
    for (int64_t j = 0; j < n; j++) {
        __m256 va, vb;
        if (split) {
            load16_bf16_split(v_rows[j], c, &va, &vb);
        } else {
            va = load8_avx2(v_rows[j], c, dtype);
            vb = load8_avx2(v_rows[j], c + 8, dtype);
        }
        for (int r = 0; r < rows_in_block; r++) {
            __m256 w = _mm256_set1_ps(p[r * ldp + j]);
            acc0[r] = _mm256_fmadd_ps(w, va, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(w, vb, acc1[r]);
        }
    }
    for (int r = 0; r < rows_in_block; r++) {
        _mm256_storeu_ps(o + r * ldo + c, acc0[r]);
        _mm256_storeu_ps(o + r * ldo + c + 8, acc1[r]);
    }
}

INLINE AVX2 void pv_avx2_typed(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                               const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                               int64_t ldo) {
    int split = dtype == TILEATTN_CACHE_BF16;
    int64_t c = 0;
    /* bf16 must take every full 16-column chunk here, whatever the rows,
     * to match the column order of permute_q_avx2. */
    if (split || rows % 4 == 0)
        for (; c + 16 <= dv; c += 16) {
            int64_t r = 0;
            for (; r + 4 <= rows; r += 4)
                pv_rows_16cols_avx2(4, split, n, c, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                    ldo);
            for (; r < rows; r++)
                pv_rows_16cols_avx2(1, split, n, c, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                    ldo);
        }
    for (; c + 8 <= dv; c += 8) {
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4)
            pv_chunk_avx2(4, n, c, p + r * ldp, ldp, v_rows, dtype, o + r * ldo, ldo);
        for (; r < rows; r++)
            pv_chunk_avx2(1, n, c, p + r * ldp, ldp, v_rows, dtype, o + r * ldo, ldo);
    }
    for (; c < dv; c++) /* the tail of a head dimension that is not a multiple of 8 */
        for (int64_t j = 0; j < n; j++) {
            float v = ta_cache_load_f32(v_rows[j], dtype, c);
            for (int64_t r = 0; r < rows; r++)
                o[r * ldo + c] += p[r * ldp + j] * v;
        }
}

static AVX2 void pv_avx2(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                         const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                         int64_t ldo) {
#define PV_TYPED(dt) pv_avx2_typed(rows, n, dv, p, ldp, v_rows, dt, o, ldo)
    TA_DECODE_SWITCH_DTYPE(dtype, PV_TYPED);
#undef PV_TYPED
}

const ta_decode_kernels ta_decode_kernels_avx2 = {"avx2",  qk_avx2,        ta_softmax_f32_avx2,
                                                  pv_avx2, permute_q_avx2, unpermute_o_avx2};

#endif
