/*
 * The online-softmax update (FlashAttention-2, Algorithm 1, lines 8-10),
 * base NEON, with the vector exp of vexp_f32_neon.h (< 1 ULP): the same
 * contract as ta_softmax_f32_scalar (ukernel.h) and the same shape as the
 * x86 body: one pass for the row max, one for exp and the sum, two
 * independent chains of 4 lanes each to hide the polynomial's latency; O is
 * rescaled only when the row's max moved (alpha != 1).
 */
#include <math.h>

#include "tile_f32_neon.h"
#include "vexp_f32_neon.h"
#include "../ukernels_arm.h"

void ta_softmax_f32_neon(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,
                         float *row_sum, float *o, int64_t ldo, int64_t dv) {
    for (int64_t i = 0; i < m; i++) {
        float *si = s + i * lds;
        float32x4_t mx0 = vdupq_n_f32(row_max[i]), mx1 = mx0;
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
            mx0 = vmaxq_f32(mx0, vld1q_f32(si + j));
            mx1 = vmaxq_f32(mx1, vld1q_f32(si + j + 4));
        }
        for (; j < n; j += 4)
            mx0 = vmaxq_f32(mx0, n - j >= 4 ? vld1q_f32(si + j)
                                            : ta_neon_load_n(si + j, n - j, -INFINITY));
        float new_max = vmaxvq_f32(vmaxq_f32(mx0, mx1));
        if (new_max == -INFINITY) {
            /* Nothing seen yet in this row: every probability is zero. */
            for (j = 0; j < n; j++)
                si[j] = 0.0f;
            continue;
        }
        float32x4_t nm = vdupq_n_f32(new_max), sum0 = vdupq_n_f32(0.0f), sum1 = sum0;
        for (j = 0; j + 8 <= n; j += 8) {
            float32x4_t p0 = ta_vexp_f32_neon(vsubq_f32(vld1q_f32(si + j), nm));
            float32x4_t p1 = ta_vexp_f32_neon(vsubq_f32(vld1q_f32(si + j + 4), nm));
            vst1q_f32(si + j, p0);
            vst1q_f32(si + j + 4, p1);
            sum0 = vaddq_f32(sum0, p0);
            sum1 = vaddq_f32(sum1, p1);
        }
        for (; j < n; j += 4) {
            int64_t left = n - j < 4 ? n - j : 4;
            float32x4_t x = left == 4 ? vld1q_f32(si + j) : ta_neon_load_n(si + j, left, -INFINITY);
            float32x4_t p0 = ta_vexp_f32_neon(vsubq_f32(x, nm));
            ta_neon_store_n(si + j, p0, left);
            sum0 = vaddq_f32(sum0, p0);
        }
        float alpha = expf(row_max[i] - new_max); /* 0 when the old max was -inf */
        if (alpha != 1.0f) {
            float *oi = o + i * ldo;
            float32x4_t va = vdupq_n_f32(alpha);
            int64_t c = 0;
            for (; c + 4 <= dv; c += 4)
                vst1q_f32(oi + c, vmulq_f32(vld1q_f32(oi + c), va));
            for (; c < dv; c++)
                oi[c] *= alpha;
        }
        row_sum[i] = row_sum[i] * alpha + vaddvq_f32(vaddq_f32(sum0, sum1));
        row_max[i] = new_max;
    }
}

/* The exp alone, for tests/test_exp_ulp.c: y[i] = exp(x[i]). */
void ta_exp_f32_neon(int64_t n, const float *x, float *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, ta_vexp_f32_neon(vld1q_f32(x + i)));
    if (i < n) ta_neon_store_n(y + i, ta_vexp_f32_neon(ta_neon_load_n(x + i, n - i, 0.0f)), n - i);
}
