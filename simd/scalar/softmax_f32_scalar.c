/*
 * Portable online-softmax update (FlashAttention-2, Algorithm 1, lines 8-10):
 * raise the running row max, turn scores into unnormalised probabilities,
 * and rescale what was accumulated under the old max.
 */
#include <math.h>

#include "ukernels_scalar.h"

void ta_softmax_f32_scalar(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,
                           float *row_sum, float *o, int64_t ldo, int64_t dv) {
    for (int64_t i = 0; i < m; i++) {
        float *si = s + i * lds;
        float new_max = row_max[i];
        for (int64_t j = 0; j < n; j++)
            new_max = si[j] > new_max ? si[j] : new_max;
        if (new_max == -INFINITY) {
            /* Nothing seen yet in this row: every probability is zero. */
            for (int64_t j = 0; j < n; j++)
                si[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            si[j] = expf(si[j] - new_max); /* exp(-inf) = 0 hides masked keys */
            sum += si[j];
        }
        float alpha = expf(row_max[i] - new_max); /* 0 when the old max was -inf */
        if (alpha != 1.0f) {
            float *oi = o + i * ldo;
            for (int64_t c = 0; c < dv; c++)
                oi[c] *= alpha;
        }
        row_sum[i] = row_sum[i] * alpha + sum;
        row_max[i] = new_max;
    }
}
