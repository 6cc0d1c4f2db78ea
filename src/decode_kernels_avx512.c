/*
 * The decoding kernels for x86-64 CPUs with AVX-512 (F, BW, VL, DQ): the
 * three steps of decode.h's ta_decode_kernels over K/V rows read in place
 * from the cache (decode_kernels.c describes the design). Only the
 * functions carry the AVX-512 target attribute; the file is compiled for
 * the baseline ISA, and ta_decode_kernels_select calls in only after
 * checking the CPU. The softmax is the forward's own
 * (ta_softmax_f32_avx512, vf_exp below 1 ULP).
 */
#include "convert.h"
#include "decode.h"
#include "tileattn_config.h"

/* With the x86-64 SIMD tables only: the softmax is the forward's. */
#if defined(__x86_64__) && defined(__GNUC__) && TILEATTN_HAVE_X86_SIMD
#include <immintrin.h>

#include "../simd/x86/avx512/vec_avx512.h"
#include "../simd/x86/ukernels_x86.h"

#define INLINE static inline __attribute__((always_inline))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

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

/* bfloat16 rows in pairs of 16-column chunks. A bf16 is the high half of
 * its float32, so one 64-byte load of 32 bf16 becomes two float vectors
 * with one integer op each: the even columns (c, c + 2, ..) shifted up,
 * the odd ones masked in place; no widening shuffle, which would compete
 * with the FMAs for the same ports. The price is the column order: in each
 * full 32-column chunk the kernels want Q and keep O as the 16 even
 * columns, then the 16 odd ones (permute_q_avx512 and unpermute_o_avx512
 * convert, through ta_decode_split_columns); the columns after the last
 * full chunk stay in order. */
INLINE AVX512 void load32_bf16_split(const void *row, int64_t c, __m512 *even, __m512 *odd) {
    __m512i x = _mm512_loadu_si512((const uint16_t *)row + c);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u)));
}

static void permute_q_avx512(int64_t rows, int64_t d, float *q, int64_t ldq,
                             tileattn_cache_dtype dtype) {
    if (dtype == TILEATTN_CACHE_BF16) ta_decode_split_columns(rows, d, q, ldq, 32);
}

static void unpermute_o_avx512(int64_t rows, int64_t dv, float *o, int64_t ldo,
                               tileattn_cache_dtype dtype) {
    if (dtype == TILEATTN_CACHE_BF16) ta_decode_merge_columns(rows, dv, o, ldo, 32);
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
    if (dtype == TILEATTN_CACHE_BF16) /* Q permuted: even columns, then odd */
        for (; c + 32 <= d; c += 32) {
            __m512 even, odd;
            load32_bf16_split(k_row, c, &even, &odd);
            for (int r = 0; r < rows_in_block; r++) {
                acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + c), even, acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + c + 16), odd, acc[r]);
            }
        }
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
    if (dtype == TILEATTN_CACHE_BF16) /* Q permuted: even columns, then odd */
        for (; c + 32 <= d; c += 32) {
            __m512 even[4], odd[4];
            for (int t = 0; t < 4; t++)
                load32_bf16_split(k4[t], c, &even[t], &odd[t]);
            for (int r = 0; r < rows_in_block; r++) {
                __m512 q_even = _mm512_loadu_ps(q + r * ldq + c);
                __m512 q_odd = _mm512_loadu_ps(q + r * ldq + c + 16);
                for (int t = 0; t < 4; t++) {
                    acc[r][t] = _mm512_fmadd_ps(q_even, even[t], acc[r][t]);
                    acc[r][t] = _mm512_fmadd_ps(q_odd, odd[t], acc[r][t]);
                }
            }
        }
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
#define QK_TYPED(dt) qk_avx512_typed(rows, n, d, q, ldq, k_rows, dt, s, lds)
    TA_DECODE_SWITCH_DTYPE(dtype, QK_TYPED);
#undef QK_TYPED
}

/* O[rows_in_block][c0 .. c0 + 16 chunks) += P . V[:, same columns], with
 * rows_in_block <= 4 and chunks <= 4: up to 16 accumulators stay in
 * registers over the whole key tile, each V chunk is converted once and
 * each weight broadcast once per key. mask is for the last chunk. With
 * split_pairs (bf16, an even number of full chunks) each pair of chunks is
 * one load32_bf16_split and O's columns are in its order. */
INLINE AVX512 void pv_block_avx512(int rows_in_block, int chunks, int split_pairs, int64_t n,
                                   int64_t c0, __mmask16 last_mask, const float *p, int64_t ldp,
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
        if (split_pairs)
            for (int u = 0; u < chunks; u += 2)
                load32_bf16_split(v_rows[j], c0 + 16 * u, &v[u], &v[u + 1]);
        else
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

/* pv_block_avx512 over rows 4 at a time (then one by one) for the columns
 * [c, c + 16 chunks). */
INLINE AVX512 void pv_columns_avx512(int64_t rows, int chunks, int split_pairs, int64_t n,
                                     int64_t c, __mmask16 last_mask, const float *p, int64_t ldp,
                                     const void *const *v_rows, tileattn_cache_dtype dtype,
                                     float *o, int64_t ldo) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4)
        pv_block_avx512(4, chunks, split_pairs, n, c, last_mask, p + r * ldp, ldp, v_rows, dtype,
                        o + r * ldo, ldo);
    for (; r < rows; r++)
        pv_block_avx512(1, chunks, split_pairs, n, c, last_mask, p + r * ldp, ldp, v_rows, dtype,
                        o + r * ldo, ldo);
}

INLINE AVX512 void pv_avx512_typed(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                   const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                                   int64_t ldo) {
    int split = dtype == TILEATTN_CACHE_BF16;
    for (int64_t c = 0; c < dv;) {
        int64_t left = dv - c;
        if (left >= 64) { /* four full chunks */
            pv_columns_avx512(rows, 4, split, n, c, 0xffff, p, ldp, v_rows, dtype, o, ldo);
            c += 64;
        } else if (split && left >= 32) { /* the last full bf16 pair */
            pv_columns_avx512(rows, 2, 1, n, c, 0xffff, p, ldp, v_rows, dtype, o, ldo);
            c += 32;
        } else { /* one chunk at a time, the last one masked */
            __mmask16 mask = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            pv_columns_avx512(rows, 1, 0, n, c, mask, p, ldp, v_rows, dtype, o, ldo);
            c += 16;
        }
    }
}

static AVX512 void pv_avx512(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                             const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                             int64_t ldo) {
#define PV_TYPED(dt) pv_avx512_typed(rows, n, dv, p, ldp, v_rows, dt, o, ldo)
    TA_DECODE_SWITCH_DTYPE(dtype, PV_TYPED);
#undef PV_TYPED
}

const ta_decode_kernels ta_decode_kernels_avx512 = {
    "avx512", qk_avx512, ta_softmax_f32_avx512, pv_avx512, permute_q_avx512, unpermute_o_avx512};

#endif
