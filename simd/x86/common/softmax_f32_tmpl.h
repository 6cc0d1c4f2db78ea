/*
 * The online-softmax update (FlashAttention-2, Algorithm 1, lines 8-10) over
 * the ISA's vocabulary, with the vector exp of vexp_f32.h: same contract as
 * ta_softmax_f32_scalar (see ukernel.h). Two passes over each row of S, the
 * first for the max, the second for exp and the sum; O is rescaled only when
 * the row's max moved (alpha != 1), so once the max settles the cost is the
 * exp alone.
 *
 * With SOFTMAX_P_BF16 defined to 1 (a table with p_bf16, whose vocabulary
 * has vf_store_bf16), P is stored rounded to bfloat16 in the first half of
 * its own row: element j at byte 2j, read from byte 4j. A chunk's store
 * lands below the bytes not yet read, so the rewrite in place is safe.
 */
#include <math.h>

#ifndef SOFTMAX_P_BF16
#define SOFTMAX_P_BF16 0
#endif
#if SOFTMAX_P_BF16
#define STORE_P(si, j, v)         vf_store_bf16((uint16_t *)(si) + (j), v)
#define STORE_P_N(si, j, v, left) vf_store_bf16_n((uint16_t *)(si) + (j), v, left)
#define ZERO_P(si, j)             (((uint16_t *)(si))[j] = 0)
#else
#define STORE_P(si, j, v)         vf_store((si) + (j), v)
#define STORE_P_N(si, j, v, left) vf_store_n((si) + (j), v, left)
#define ZERO_P(si, j)             ((si)[j] = 0.0f)
#endif

void SOFTMAX_NAME(int64_t m, int64_t n, float *s, int64_t lds, float *row_max, float *row_sum,
                  float *o, int64_t ldo, int64_t dv) {
    enum { W = VF_LANES };
    for (int64_t i = 0; i < m; i++) {
        float *si = s + i * lds;
        vf mx0 = vf_set1(row_max[i]), mx1 = mx0;
        int64_t j = 0;
        for (; j + 2 * W <= n; j += 2 * W) {
            mx0 = vf_max(mx0, vf_load(si + j));
            mx1 = vf_max(mx1, vf_load(si + j + W));
        }
        for (; j < n; j += W)
            mx0 = vf_max(mx0, vf_load_n(si + j, n - j < W ? n - j : W, -INFINITY));
        float new_max = vf_hmax(vf_max(mx0, mx1));
        if (new_max == -INFINITY) {
            /* Nothing seen yet in this row: every probability is zero. */
            for (j = 0; j < n; j++)
                ZERO_P(si, j);
            continue;
        }
        /* Two independent exp chains and sums hide the polynomial's latency. */
        vf nm = vf_set1(new_max), sum0 = vf_zero(), sum1 = vf_zero();
        for (j = 0; j + 2 * W <= n; j += 2 * W) {
            vf p0 = vf_exp(vf_sub(vf_load(si + j), nm));
            vf p1 = vf_exp(vf_sub(vf_load(si + j + W), nm));
            STORE_P(si, j, p0);
            STORE_P(si, j + W, p1);
            sum0 = vf_add(sum0, p0);
            sum1 = vf_add(sum1, p1);
        }
        for (; j < n; j += W) {
            int64_t left = n - j < W ? n - j : W;
            vf p0 = vf_exp(vf_sub(vf_load_n(si + j, left, -INFINITY), nm));
            STORE_P_N(si, j, p0, left);
            sum0 = vf_add(sum0, p0);
        }
        float alpha = expf(row_max[i] - new_max); /* 0 when the old max was -inf */
        if (alpha != 1.0f) {
            float *oi = o + i * ldo;
            vf va = vf_set1(alpha);
            int64_t c = 0;
            for (; c + W <= dv; c += W)
                vf_store(oi + c, vf_mul(vf_load(oi + c), va));
            for (; c < dv; c++)
                oi[c] *= alpha;
        }
        row_sum[i] = row_sum[i] * alpha + vf_hsum(vf_add(sum0, sum1));
        row_max[i] = new_max;
    }
}

#undef STORE_P
#undef STORE_P_N
#undef ZERO_P

#ifdef EXP_NAME
/* The exp alone, for tests/test_exp_ulp.c: y[i] = exp(x[i]). */
void EXP_NAME(int64_t n, const float *x, float *y) {
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES)
        vf_store(y + i, vf_exp(vf_load(x + i)));
    if (i < n) vf_store_n(y + i, vf_exp(vf_load_n(x + i, n - i, 0.0f)), n - i);
}
#endif
