/*
 * The standard attention's row pass (internal to the bench library): turns
 * rows of the materialized score matrix S = scale Q K^T into unnormalised
 * softmax weights, applying every mask tileattn_forward_args can hold.
 */
#ifndef TILEATTN_BENCH_SOFTMAX_ROWS_H
#define TILEATTN_BENCH_SOFTMAX_ROWS_H

#include <stdint.h>

#include "tileattn.h"

/* What one (batch, head) pair's rows need to know. */
typedef struct bench_row_mask {
    int64_t seqlen_k;
    int64_t offset;       /* Sk - Sq (bottom-right) or 0 (top-left) */
    int64_t window_left;  /* -1 = unbounded */
    int64_t window_right; /* -1 = unbounded; causal has set 0 */
    float softcap;        /* 0 = off */
    int has_alibi;
    float alibi_slope;
    tileattn_bias_kind bias_kind;
    const void *bias; /* row 0 of this (batch, head); NULL when none */
    tileattn_dtype bias_dtype;
    int64_t bias_stride_q; /* elements (bytes for a boolean mask) */
    int has_sink;
    float sink;
} bench_row_mask;

/* For rows i in [row_begin, row_end) of s (leading dimension lds >= Sk):
 *   s[i][j] = exp(score_ij - m_i) where key j is visible, 0 elsewhere,
 *   inv_sum[i] = 1 / (sum_j s[i][j] + exp(sink - m_i)), 0 for a row that
 *                sees no key and has no sink,
 *   lse[i] (when lse is not NULL) = m_i + log(that sum), -inf for such a row,
 * with m_i the row's largest score (and the sink). Picks AVX-512, AVX2 or
 * the baseline ISA at run time. */
void bench_softmax_rows(const bench_row_mask *mask, float *s, int64_t lds, int64_t row_begin,
                        int64_t row_end, float *inv_sum, float *lse);

/* exp(x) for float x, about 2 ulp on [-87, 88]; 0 below -87 (and for -inf).
 * Exposed for the bench tests. */
float bench_exp_approx(float x);

/* tanh(x), about 2 ulp (Cephes' tanhf). Exposed for the bench tests. */
float bench_tanh_approx(float x);

#endif /* TILEATTN_BENCH_SOFTMAX_ROWS_H */
