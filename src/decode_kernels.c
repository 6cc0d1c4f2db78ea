/*
 * Decoding kernels: streaming dot products, the online-softmax update and
 * the P.V accumulation over K/V rows read in place from the cache.
 *
 * Decoding reads each K/V byte once and does 2 x rows FLOPs per element, so
 * it is bound by memory bandwidth as soon as the kernels convert and
 * multiply faster than memory delivers. Each ISA's body is one function per
 * step with the cache dtype as a compile-time constant (always_inline
 * helpers called from a switch), so the dtype conversion sits inside the
 * vector loop without a branch. The AVX2 and AVX-512 versions are compiled
 * with target attributes only (never -mavx* for the file) and chosen at run
 * time from the CPU's features.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "decode.h"
#include "dispatch.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TA_DECODE_X86 1
#include <immintrin.h>
#else
#define TA_DECODE_X86 0
#endif

float ta_cache_load_f32(const void *row, tileattn_cache_dtype dtype, int64_t idx) {
    switch (dtype) {
    case TILEATTN_CACHE_F32: return ((const float *)row)[idx];
    case TILEATTN_CACHE_F16: return ta_f16_to_f32(((const uint16_t *)row)[idx]);
    case TILEATTN_CACHE_BF16: return ta_bf16_to_f32(((const uint16_t *)row)[idx]);
    case TILEATTN_CACHE_INT8: return (float)((const int8_t *)row)[idx];
    }
    return 0.0f;
}

/* ------------------------------------------------------------ portable */

static void qk_scalar(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                      const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                      int64_t lds) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < rows; r++) {
            float dot = 0.0f;
            for (int64_t c = 0; c < d; c++)
                dot += q[r * ldq + c] * ta_cache_load_f32(k_rows[j], dtype, c);
            s[r * lds + j] = dot;
        }
}

static void softmax_scalar(int64_t rows, int64_t n, float *s, int64_t lds, float *row_max,
                           float *row_sum, float *o, int64_t ldo, int64_t dv) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        float new_max = row_max[r];
        for (int64_t j = 0; j < n; j++)
            new_max = sr[j] > new_max ? sr[j] : new_max;
        if (new_max == -INFINITY) { /* nothing seen yet: every probability is 0 */
            for (int64_t j = 0; j < n; j++)
                sr[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            sr[j] = expf(sr[j] - new_max);
            sum += sr[j];
        }
        float alpha = expf(row_max[r] - new_max);
        if (alpha != 1.0f)
            for (int64_t c = 0; c < dv; c++)
                o[r * ldo + c] *= alpha;
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = new_max;
    }
}

static void pv_scalar(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                      const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                      int64_t ldo) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < dv; c++) {
            float v = ta_cache_load_f32(v_rows[j], dtype, c);
            for (int64_t r = 0; r < rows; r++)
                o[r * ldo + c] += p[r * ldp + j] * v;
        }
}

const ta_decode_kernels ta_decode_kernels_scalar = {"scalar", qk_scalar, softmax_scalar, pv_scalar};

#if TA_DECODE_X86

#define INLINE static inline __attribute__((always_inline))

/* exp of float32 lanes, Cephes expf's method: x = n ln2 + r with
 * |r| <= ln2/2 (ln2 split in two so r is exact), e^r by a degree-7
 * polynomial, 2^n into the exponent. Measured within 2 ULP of exp() on
 * [-87, 0] (tests/test_decode.c checks it); inputs below -104 give exactly
 * 0, and -inf gives 0. Only arguments <= 0 occur (scores minus their max). */
#define EXP_LOG2E  1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_P0     1.9875691500e-4f
#define EXP_P1     1.3981999507e-3f
#define EXP_P2     8.3334519073e-3f
#define EXP_P3     4.1665795894e-2f
#define EXP_P4     1.6666665459e-1f
#define EXP_P5     5.0000001201e-1f

/* ------------------------------------------------------------- AVX-512 */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

INLINE AVX512 __m512 exp_avx512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 y = _mm512_set1_ps(EXP_P0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n); /* y * 2^n, flushing to 0 below the range */
}

/* 16 elements of a cache row from element c, as float32; lanes outside mask
 * are 0 and not read. */
INLINE AVX512 __m512 load16_avx512(const void *row, int64_t c, tileattn_cache_dtype dtype,
                                   __mmask16 mask) {
    switch (dtype) {
    case TILEATTN_CACHE_F32: return _mm512_maskz_loadu_ps(mask, (const float *)row + c);
    case TILEATTN_CACHE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)row + c));
    case TILEATTN_CACHE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)row + c)), 16));
    case TILEATTN_CACHE_INT8:
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, (const int8_t *)row + c)));
    }
    return _mm512_setzero_ps();
}

/* Dot products of rows_in_block query rows with one key row (the tail of a
 * key tile): the key chunk is converted once and used by every row. */
INLINE AVX512 void qk_rows_avx512(int rows_in_block, int64_t d, const float *q, int64_t ldq,
                                  const void *k_row, tileattn_cache_dtype dtype, float *s,
                                  int64_t lds) {
    __m512 acc[4];
    for (int r = 0; r < rows_in_block; r++)
        acc[r] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) {
        __m512 k = load16_avx512(k_row, c, dtype, 0xffff);
        for (int r = 0; r < rows_in_block; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + c), k, acc[r]);
    }
    if (c < d) {
        __mmask16 tail = (__mmask16)((1u << (d - c)) - 1);
        __m512 k = load16_avx512(k_row, c, dtype, tail);
        for (int r = 0; r < rows_in_block; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + r * ldq + c), k, acc[r]);
    }
    for (int r = 0; r < rows_in_block; r++)
        s[r * lds] = _mm512_reduce_add_ps(acc[r]);
}

/* The four sums of a0..a3 at once: 13 shuffles and adds instead of four
 * full horizontal reductions (8 each). */
INLINE AVX512 __m128 reduce4_avx512(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 x01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 x23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    /* Per 128-bit lane: [a0, a1, a2, a3] partial sums. */
    __m512 z = _mm512_add_ps(_mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(3, 2, 3, 2)));
    z = _mm512_add_ps(z, _mm512_shuffle_f32x4(z, z, _MM_SHUFFLE(1, 0, 3, 2)));
    z = _mm512_add_ps(z, _mm512_shuffle_f32x4(z, z, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(z);
}

/* Dot products of rows_in_block (<= 4) query rows with four key rows: 16
 * accumulators, each converted key chunk used by every row and each query
 * chunk by every key. */
INLINE AVX512 void qk_4keys_avx512(int rows_in_block, int64_t d, const float *q, int64_t ldq,
                                   const void *const *k4, tileattn_cache_dtype dtype, float *s,
                                   int64_t lds) {
    __m512 acc[4][4];
    for (int r = 0; r < rows_in_block; r++)
        for (int t = 0; t < 4; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) {
        __m512 k[4];
        for (int t = 0; t < 4; t++)
            k[t] = load16_avx512(k4[t], c, dtype, 0xffff);
        for (int r = 0; r < rows_in_block; r++) {
            __m512 qv = _mm512_loadu_ps(q + r * ldq + c);
            for (int t = 0; t < 4; t++)
                acc[r][t] = _mm512_fmadd_ps(qv, k[t], acc[r][t]);
        }
    }
    if (c < d) {
        __mmask16 tail = (__mmask16)((1u << (d - c)) - 1);
        __m512 k[4];
        for (int t = 0; t < 4; t++)
            k[t] = load16_avx512(k4[t], c, dtype, tail);
        for (int r = 0; r < rows_in_block; r++) {
            __m512 qv = _mm512_maskz_loadu_ps(tail, q + r * ldq + c);
            for (int t = 0; t < 4; t++)
                acc[r][t] = _mm512_fmadd_ps(qv, k[t], acc[r][t]);
        }
    }
    for (int r = 0; r < rows_in_block; r++)
        _mm_storeu_ps(s + r * lds, reduce4_avx512(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
}

INLINE AVX512 void qk_avx512_typed(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                                   const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                                   int64_t lds) {
    size_t row_bytes = (size_t)d * ta_cache_dtype_size(dtype);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        /* Paged rows are not adjacent, so the hardware prefetcher cannot
         * guess them: ask for the next group's rows now. */
        for (int64_t t = j + 4; t < j + 8 && t < n; t++)
            for (size_t off = 0; off < row_bytes; off += 64)
                _mm_prefetch((const char *)k_rows[t] + off, _MM_HINT_T0);
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4)
            qk_4keys_avx512(4, d, q + r * ldq, ldq, k_rows + j, dtype, s + r * lds + j, lds);
        for (; r < rows; r++)
            qk_4keys_avx512(1, d, q + r * ldq, ldq, k_rows + j, dtype, s + r * lds + j, lds);
    }
    for (; j < n; j++) {
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4)
            qk_rows_avx512(4, d, q + r * ldq, ldq, k_rows[j], dtype, s + r * lds + j, lds);
        for (; r < rows; r++)
            qk_rows_avx512(1, d, q + r * ldq, ldq, k_rows[j], dtype, s + r * lds + j, lds);
    }
}

static AVX512 void qk_avx512(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                             const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                             int64_t lds) {
    switch (dtype) {
    case TILEATTN_CACHE_F32:
        qk_avx512_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_F32, s, lds);
        break;
    case TILEATTN_CACHE_F16:
        qk_avx512_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_F16, s, lds);
        break;
    case TILEATTN_CACHE_BF16:
        qk_avx512_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_BF16, s, lds);
        break;
    case TILEATTN_CACHE_INT8:
        qk_avx512_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_INT8, s, lds);
        break;
    }
}

static AVX512 void softmax_avx512(int64_t rows, int64_t n, float *s, int64_t lds, float *row_max,
                                  float *row_sum, float *o, int64_t ldo, int64_t dv) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
            vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, sr + j));
        }
        float tile_max = _mm512_reduce_max_ps(vmax);
        float new_max = tile_max > row_max[r] ? tile_max : row_max[r];
        if (new_max == -INFINITY) {
            for (int64_t j = 0; j < n; j++)
                sr[j] = 0.0f;
            continue;
        }
        __m512 vnew = _mm512_set1_ps(new_max), vsum = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
            __m512 p = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sr + j), vnew));
            _mm512_mask_storeu_ps(sr + j, m, p);
            vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, p));
        }
        float alpha = expf(row_max[r] - new_max);
        if (alpha != 1.0f) {
            float *orow = o + r * ldo;
            __m512 va = _mm512_set1_ps(alpha);
            for (int64_t c = 0; c < dv; c += 16) {
                __mmask16 m = dv - c >= 16 ? 0xffff : (__mmask16)((1u << (dv - c)) - 1);
                _mm512_mask_storeu_ps(orow + c, m,
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, orow + c), va));
            }
        }
        row_sum[r] = row_sum[r] * alpha + _mm512_reduce_add_ps(vsum);
        row_max[r] = new_max;
    }
}

/* O[rows_in_block][c0 .. c0 + 16 chunks) += P . V[:, same columns], with
 * rows_in_block <= 4 and chunks <= 4: up to 16 accumulators stay in
 * registers over the whole key tile, each V chunk is converted once and
 * each weight broadcast once per key. mask is for the last chunk. */
INLINE AVX512 void pv_block_avx512(int rows_in_block, int chunks, int64_t n, int64_t c0,
                                   __mmask16 last_mask, const float *p, int64_t ldp,
                                   const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                                   int64_t ldo) {
    __m512 acc[4][4];
    __mmask16 mask[4];
    for (int u = 0; u < chunks; u++)
        mask[u] = u == chunks - 1 ? last_mask : 0xffff;
    for (int r = 0; r < rows_in_block; r++)
        for (int u = 0; u < chunks; u++)
            acc[r][u] = _mm512_maskz_loadu_ps(mask[u], o + r * ldo + c0 + 16 * u);
    for (int64_t j = 0; j < n; j++) {
        __m512 v[4];
        for (int u = 0; u < chunks; u++)
            v[u] = load16_avx512(v_rows[j], c0 + 16 * u, dtype, mask[u]);
        for (int r = 0; r < rows_in_block; r++) {
            __m512 w = _mm512_set1_ps(p[r * ldp + j]);
            for (int u = 0; u < chunks; u++)
                acc[r][u] = _mm512_fmadd_ps(w, v[u], acc[r][u]);
        }
    }
    for (int r = 0; r < rows_in_block; r++)
        for (int u = 0; u < chunks; u++)
            _mm512_mask_storeu_ps(o + r * ldo + c0 + 16 * u, mask[u], acc[r][u]);
}

INLINE AVX512 void pv_avx512_typed(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                   const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                                   int64_t ldo) {
    for (int64_t c = 0; c < dv;) {
        int64_t left = dv - c;
        if (left >= 64) { /* four full chunks */
            int64_t r = 0;
            for (; r + 4 <= rows; r += 4)
                pv_block_avx512(4, 4, n, c, 0xffff, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                ldo);
            for (; r < rows; r++)
                pv_block_avx512(1, 4, n, c, 0xffff, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                ldo);
            c += 64;
        } else { /* one chunk at a time, the last one masked */
            __mmask16 mask = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            int64_t r = 0;
            for (; r + 4 <= rows; r += 4)
                pv_block_avx512(4, 1, n, c, mask, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                ldo);
            for (; r < rows; r++)
                pv_block_avx512(1, 1, n, c, mask, p + r * ldp, ldp, v_rows, dtype, o + r * ldo,
                                ldo);
            c += 16;
        }
    }
}

static AVX512 void pv_avx512(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                             const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                             int64_t ldo) {
    switch (dtype) {
    case TILEATTN_CACHE_F32:
        pv_avx512_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_F32, o, ldo);
        break;
    case TILEATTN_CACHE_F16:
        pv_avx512_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_F16, o, ldo);
        break;
    case TILEATTN_CACHE_BF16:
        pv_avx512_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_BF16, o, ldo);
        break;
    case TILEATTN_CACHE_INT8:
        pv_avx512_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_INT8, o, ldo);
        break;
    }
}

const ta_decode_kernels ta_decode_kernels_avx512 = {"avx512", qk_avx512, softmax_avx512, pv_avx512};

/* ---------------------------------------------------------------- AVX2 */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

INLINE AVX2 __m256 exp_avx2(__m256 x) {
    /* Below -87.3 the result would be subnormal: return exactly 0 there
     * (those weights are below 2^-126 of the row's largest). */
    __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 y = _mm256_set1_ps(EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(underflow, y);
}

INLINE AVX2 float hsum_avx2(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

INLINE AVX2 float hmax_avx2(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

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

INLINE AVX2 void qk_rows_avx2(int rows_in_block, int64_t d, const float *q, int64_t ldq,
                              const void *k_row, tileattn_cache_dtype dtype, float *s,
                              int64_t lds) {
    __m256 acc[4];
    for (int r = 0; r < rows_in_block; r++)
        acc[r] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= d; c += 8) {
        __m256 k = load8_avx2(k_row, c, dtype);
        for (int r = 0; r < rows_in_block; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + c), k, acc[r]);
    }
    for (int r = 0; r < rows_in_block; r++) {
        float dot = hsum_avx2(acc[r]);
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
    for (int64_t c = 0; c < d; c += 8) {
        __m256 ka = load8_avx2(k0, c, dtype), kb = load8_avx2(k1, c, dtype);
        for (int r = 0; r < 4; r++) {
            __m256 qv = _mm256_loadu_ps(q + r * ldq + c);
            acc0[r] = _mm256_fmadd_ps(qv, ka, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(qv, kb, acc1[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        s[r * lds] = hsum_avx2(acc0[r]);
        s[r * lds + 1] = hsum_avx2(acc1[r]);
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
    switch (dtype) {
    case TILEATTN_CACHE_F32:
        qk_avx2_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_F32, s, lds);
        break;
    case TILEATTN_CACHE_F16:
        qk_avx2_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_F16, s, lds);
        break;
    case TILEATTN_CACHE_BF16:
        qk_avx2_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_BF16, s, lds);
        break;
    case TILEATTN_CACHE_INT8:
        qk_avx2_typed(rows, n, d, q, ldq, k_rows, TILEATTN_CACHE_INT8, s, lds);
        break;
    }
}

static AVX2 void softmax_avx2(int64_t rows, int64_t n, float *s, int64_t lds, float *row_max,
                              float *row_sum, float *o, int64_t ldo, int64_t dv) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
            vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(sr + j));
        float new_max = hmax_avx2(vmax);
        for (; j < n; j++)
            new_max = sr[j] > new_max ? sr[j] : new_max;
        if (row_max[r] > new_max) new_max = row_max[r];
        if (new_max == -INFINITY) {
            for (j = 0; j < n; j++)
                sr[j] = 0.0f;
            continue;
        }
        __m256 vnew = _mm256_set1_ps(new_max), vsum = _mm256_setzero_ps();
        for (j = 0; j + 8 <= n; j += 8) {
            __m256 p = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(sr + j), vnew));
            _mm256_storeu_ps(sr + j, p);
            vsum = _mm256_add_ps(vsum, p);
        }
        float sum = hsum_avx2(vsum);
        for (; j < n; j++) {
            sr[j] = expf(sr[j] - new_max);
            sum += sr[j];
        }
        float alpha = expf(row_max[r] - new_max);
        if (alpha != 1.0f)
            for (int64_t c = 0; c < dv; c++)
                o[r * ldo + c] *= alpha;
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = new_max;
    }
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

/* Four rows and sixteen columns at once: eight accumulators, each weight
 * broadcast once for two V vectors. */
INLINE AVX2 void pv_4rows_16cols_avx2(int64_t n, int64_t c, const float *p, int64_t ldp,
                                      const void *const *v_rows, tileattn_cache_dtype dtype,
                                      float *o, int64_t ldo) {
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++) {
        acc0[r] = _mm256_loadu_ps(o + r * ldo + c);
        acc1[r] = _mm256_loadu_ps(o + r * ldo + c + 8);
    }
    for (int64_t j = 0; j < n; j++) {
        __m256 va = load8_avx2(v_rows[j], c, dtype), vb = load8_avx2(v_rows[j], c + 8, dtype);
        for (int r = 0; r < 4; r++) {
            __m256 w = _mm256_set1_ps(p[r * ldp + j]);
            acc0[r] = _mm256_fmadd_ps(w, va, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(w, vb, acc1[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_ps(o + r * ldo + c, acc0[r]);
        _mm256_storeu_ps(o + r * ldo + c + 8, acc1[r]);
    }
}

INLINE AVX2 void pv_avx2_typed(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                               const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                               int64_t ldo) {
    int64_t c = 0;
    if (rows % 4 == 0)
        for (; c + 16 <= dv; c += 16)
            for (int64_t r = 0; r < rows; r += 4)
                pv_4rows_16cols_avx2(n, c, p + r * ldp, ldp, v_rows, dtype, o + r * ldo, ldo);
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
    switch (dtype) {
    case TILEATTN_CACHE_F32:
        pv_avx2_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_F32, o, ldo);
        break;
    case TILEATTN_CACHE_F16:
        pv_avx2_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_F16, o, ldo);
        break;
    case TILEATTN_CACHE_BF16:
        pv_avx2_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_BF16, o, ldo);
        break;
    case TILEATTN_CACHE_INT8:
        pv_avx2_typed(rows, n, dv, p, ldp, v_rows, TILEATTN_CACHE_INT8, o, ldo);
        break;
    }
}

const ta_decode_kernels ta_decode_kernels_avx2 = {"avx2", qk_avx2, softmax_avx2, pv_avx2};

static int runs_avx512(const ta_cpu_features *f) {
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->fma && f->f16c;
}
static int runs_avx2(const ta_cpu_features *f) {
    return f->avx2 && f->fma && f->f16c;
}
#endif /* TA_DECODE_X86 */

int ta_decode_kernels_all(const ta_decode_kernels **list, int max) {
    int count = 0;
    if (count < max) list[count++] = &ta_decode_kernels_scalar;
#if TA_DECODE_X86
    const ta_cpu_features *f = ta_cpu_features_get();
    if (count < max && runs_avx2(f)) list[count++] = &ta_decode_kernels_avx2;
    if (count < max && runs_avx512(f)) list[count++] = &ta_decode_kernels_avx512;
#endif
    return count;
}

/* The rank of an ISA name in the order scalar < avx2 < avx512 (avx512bf16
 * counts as avx512: decoding has no bf16 dot-product kernel). */
static int isa_rank(const char *name) {
    if (strncmp(name, "avx512", 6) == 0) return 2;
    if (strcmp(name, "avx2") == 0) return 1;
    return 0;
}

const ta_decode_kernels *ta_decode_kernels_select(tileattn_status *status) {
    tileattn_status st = TILEATTN_OK;
    const ta_ukernels *uk = ta_ukernels_select(&st);
    if (status) *status = st;
    if (!uk) return NULL;
    const ta_decode_kernels *list[3];
    int count = ta_decode_kernels_all(list, 3);
    /* The decode kernels live in the library itself, so they exist even in a
     * build without the simd/ tables: use the best the CPU runs unless
     * TILEATTN_ISA asks for less, which tileattn_isa_name() then reports. */
    const char *forced = getenv("TILEATTN_ISA");
    int limit = forced && *forced ? isa_rank(uk->isa) : 2;
    const ta_decode_kernels *best = list[0];
    for (int i = 0; i < count; i++)
        if (isa_rank(list[i]->isa) <= limit) best = list[i];
    return best;
}
