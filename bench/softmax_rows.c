/*
 * The row softmax of the standard attention, written so the compiler
 * vectorizes it: every loop is a plain `#pragma omp simd` loop over floats
 * (built with -O3 -fopenmp-simd, no -ffast-math, so -inf keeps its meaning),
 * and exp / tanh are polynomials instead of libm calls.
 *
 * One body, compiled three times (AVX-512, AVX2, baseline) by inlining it
 * into functions with target attributes; bench_softmax_rows picks one at run
 * time, so the default build runs anywhere and still uses the widest unit.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "softmax_rows.h"

#define ROW_INLINE static inline __attribute__((always_inline))

/* exp(x), Cephes expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so
 * n ln2 is exact), a degree-6 polynomial for e^r, then 2^n from the exponent
 * bits. Below -87 the result (< 1.7e-38) is flushed to 0, which also covers
 * -inf (a masked score). Inputs above 88 would overflow the exponent; the
 * softmax only passes x <= 0 and tanh x <= 80. */
ROW_INLINE float exp_body(float x) {
    const float xc = x < -87.0f ? -87.0f : x;
    /* Round x log2(e) to nearest: adding 1.5 * 2^23 drops the fraction. */
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    const float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : y * scale;
}

/* tanh(x), Cephes tanhf: an odd polynomial below 0.625, where 1 - 2/(e^2x+1)
 * would cancel, and the exponential form above (saturating at 1). */
ROW_INLINE float tanh_body(float x) {
    const float ax = fabsf(x);
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    const float e = exp_body(2.0f * (ax < 40.0f ? ax : 40.0f));
    const float large_abs = 1.0f - 2.0f / (e + 1.0f);
    const float large = x < 0.0f ? -large_abs : large_abs;
    return ax < 0.625f ? small : large;
}

ROW_INLINE float f16_to_f32_body(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7FFFu;
    const uint32_t normal = (em << 13) + ((uint32_t)(127 - 15) << 23);
    const uint32_t special = (em << 13) | 0x7F800000u; /* inf, NaN */
    uint32_t bits = em >= 0x7C00u ? special : normal;
    float value;
    memcpy(&value, &bits, sizeof value);
    value = em < 0x400u ? (float)(int32_t)em * 0x1.0p-24f : value; /* zero, subnormal */
    return sign ? -value : value;
}

ROW_INLINE float bf16_to_f32_body(uint16_t b) {
    const uint32_t bits = (uint32_t)b << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Adds the additive bias (or applies the boolean mask) to x[0..len). */
ROW_INLINE void apply_bias(const bench_row_mask *mk, int64_t i, int64_t lo, float *x, int len) {
    if (mk->bias_kind == TILEATTN_BIAS_ADDITIVE) {
        const int64_t first = i * mk->bias_stride_q + lo;
        if (mk->bias_dtype == TILEATTN_F32) {
            const float *b = (const float *)mk->bias + first;
#pragma omp simd
            for (int j = 0; j < len; j++)
                x[j] += b[j];
        } else if (mk->bias_dtype == TILEATTN_BF16) {
            const uint16_t *b = (const uint16_t *)mk->bias + first;
#pragma omp simd
            for (int j = 0; j < len; j++)
                x[j] += bf16_to_f32_body(b[j]);
        } else {
            const uint16_t *b = (const uint16_t *)mk->bias + first;
#pragma omp simd
            for (int j = 0; j < len; j++)
                x[j] += f16_to_f32_body(b[j]);
        }
    } else if (mk->bias_kind == TILEATTN_BIAS_BOOL_MASK) {
        const uint8_t *seen = (const uint8_t *)mk->bias + i * mk->bias_stride_q + lo;
#pragma omp simd
        for (int j = 0; j < len; j++)
            x[j] = seen[j] ? x[j] : -INFINITY;
    }
}

ROW_INLINE void softmax_row(const bench_row_mask *mk, float *row, int64_t i, float *inv_sum,
                            float *lse) {
    const int64_t n = mk->seqlen_k;
    int64_t lo = 0, hi = n - 1, centre = i + mk->offset;
    /* Compared before added: a side may be as wide as INT64_MAX. */
    if (mk->window_left >= 0 && mk->window_left < centre) lo = centre - mk->window_left;
    if (mk->window_right >= 0 && mk->window_right < hi - centre) hi = centre + mk->window_right;
    if (lo > hi) lo = hi = n; /* nothing visible: an empty range at the end */
    float *x = row + lo;
    const int len = lo < n ? (int)(hi - lo + 1) : 0; /* Sk fits in int (a BLAS dimension) */

    if (mk->softcap > 0.0f) {
        const float cap = mk->softcap, inv_cap = 1.0f / mk->softcap;
#pragma omp simd
        for (int j = 0; j < len; j++)
            x[j] = cap * tanh_body(x[j] * inv_cap);
    }
    if (mk->has_alibi) {
        /* |i + off - j| as float: exact below 2^24 keys. */
        const float slope = mk->alibi_slope, d0 = (float)(i + mk->offset - lo);
#pragma omp simd
        for (int j = 0; j < len; j++)
            x[j] -= slope * fabsf(d0 - (float)j);
    }
    apply_bias(mk, i, lo, x, len);

    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < len; j++)
        m = x[j] > m ? x[j] : m;
    if (mk->has_sink && mk->sink > m) m = mk->sink;

    if (m == -INFINITY) { /* no key seen, no sink: O = 0, LSE = -inf */
        memset(row, 0, (size_t)n * sizeof *row);
        inv_sum[i] = 0.0f;
        if (lse) lse[i] = -INFINITY;
        return;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < len; j++) {
        const float p = exp_body(x[j] - m);
        x[j] = p;
        sum += p;
    }
    if (mk->has_sink) sum += exp_body(mk->sink - m);
    memset(row, 0, (size_t)(lo < n ? lo : n) * sizeof *row);
    if (lo < n && hi + 1 < n) memset(row + hi + 1, 0, (size_t)(n - hi - 1) * sizeof *row);
    inv_sum[i] = 1.0f / sum;
    if (lse) lse[i] = m + logf(sum);
}

ROW_INLINE void softmax_rows_body(const bench_row_mask *mask, float *s, int64_t lds,
                                  int64_t row_begin, int64_t row_end, float *inv_sum, float *lse) {
    for (int64_t i = row_begin; i < row_end; i++)
        softmax_row(mask, s + i * lds, i, inv_sum, lse);
}

typedef void (*softmax_rows_fn)(const bench_row_mask *, float *, int64_t, int64_t, int64_t, float *,
                                float *);

static void softmax_rows_baseline(const bench_row_mask *mask, float *s, int64_t lds,
                                  int64_t row_begin, int64_t row_end, float *inv_sum, float *lse) {
    softmax_rows_body(mask, s, lds, row_begin, row_end, inv_sum, lse);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))) static void
softmax_rows_avx512(const bench_row_mask *mask, float *s, int64_t lds, int64_t row_begin,
                    int64_t row_end, float *inv_sum, float *lse) {
    softmax_rows_body(mask, s, lds, row_begin, row_end, inv_sum, lse);
}

__attribute__((target("avx2,fma"))) static void
softmax_rows_avx2(const bench_row_mask *mask, float *s, int64_t lds, int64_t row_begin,
                  int64_t row_end, float *inv_sum, float *lse) {
    softmax_rows_body(mask, s, lds, row_begin, row_end, inv_sum, lse);
}
#endif

static softmax_rows_fn pick_softmax_rows(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return softmax_rows_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return softmax_rows_avx2;
#endif
    return softmax_rows_baseline;
}

void bench_softmax_rows(const bench_row_mask *mask, float *s, int64_t lds, int64_t row_begin,
                        int64_t row_end, float *inv_sum, float *lse) {
    pick_softmax_rows()(mask, s, lds, row_begin, row_end, inv_sum, lse);
}

float bench_exp_approx(float x) {
    return exp_body(x);
}

float bench_tanh_approx(float x) {
    return tanh_body(x);
}
