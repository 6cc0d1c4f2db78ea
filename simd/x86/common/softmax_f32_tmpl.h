/*
 * The online-softmax update (FlashAttention-2, Algorithm 1, lines 8-10) over
 * the ISA's vocabulary, with the vector exp of vexp_f32.h: same contract as
 * ta_softmax_f32_scalar (see ukernel.h). Two passes over each row of S, the
 * first for the max, the second for exp and the sum; O is rescaled only when
 * the row's max moved (alpha != 1), so once the max settles the cost is the
 * exp alone.
 *
 * With SOFTMAX_P_BF16 defined to 1 (a table with p_bf16, whose vocabulary
 * has vf_store_bf16_x2 and vf_store_bf16_n), P is stored rounded to
 * bfloat16 in the first half of its own row: element j at byte 2j, read
 * from byte 4j. A chunk's store lands below the bytes not yet read, so the
 * rewrite in place is safe. Its exp is then vf_exp_for_bf16 (relative
 * error below 2^-18, where vf_exp is faithful): P keeps 8 bits.
 */
#include <math.h>

#ifndef SOFTMAX_P_BF16
#define SOFTMAX_P_BF16 0
#endif
#if SOFTMAX_P_BF16
#define SOFTMAX_EXP               vf_exp_for_bf16
#define STORE_P2(si, j, a, b)     vf_store_bf16_x2((uint16_t *)(si) + (j), a, b)
#define STORE_P_N(si, j, v, left) vf_store_bf16_n((uint16_t *)(si) + (j), v, left)
#define ZERO_P(si, j)             (((uint16_t *)(si))[j] = 0)
#else
#define SOFTMAX_EXP               vf_exp
#define STORE_P2(si, j, a, b)     (vf_store((si) + (j), a), vf_store((si) + (j) + VF_LANES, b))
#define STORE_P_N(si, j, v, left) vf_store_n((si) + (j), v, left)
#define ZERO_P(si, j)             ((si)[j] = 0.0f)
#endif

/* max(start, S[0..n)) of one row, in four chains: one chain of maxima
 * would wait on each max's latency (4 cycles) for every vector. */
static inline float row_max_of(const float *si, int64_t n, float start) {
    enum { W = VF_LANES };
    vf mx0 = vf_set1(start), mx1 = mx0, mx2 = mx0, mx3 = mx0;
    int64_t j = 0;
    for (; j + 4 * W <= n; j += 4 * W) {
        mx0 = vf_max(mx0, vf_load(si + j));
        mx1 = vf_max(mx1, vf_load(si + j + W));
        mx2 = vf_max(mx2, vf_load(si + j + 2 * W));
        mx3 = vf_max(mx3, vf_load(si + j + 3 * W));
    }
    for (; j < n; j += W)
        mx0 = vf_max(mx0, vf_load_n(si + j, n - j < W ? n - j : W, -INFINITY));
    return vf_hmax(vf_max(vf_max(mx0, mx1), vf_max(mx2, mx3)));
}

void SOFTMAX_NAME(int64_t m, int64_t n, float *s, int64_t lds, float *row_max, float *row_sum,
                  float *o, int64_t ldo, int64_t dv) {
    enum { W = VF_LANES, GROUP = 8 };
    float group_max[GROUP];
    for (int64_t i = 0; i < m; i++) {
        /* The maxima of a group of rows first: each row's exp pass waits on
         * its max's horizontal reduction, and a group's reductions overlap. */
        if (i % GROUP == 0)
            for (int64_t g = 0; g < GROUP && i + g < m; g++)
                group_max[g] = row_max_of(s + (i + g) * lds, n, row_max[i + g]);
        float *si = s + i * lds;
        float new_max = group_max[i % GROUP];
        int64_t j;
        if (new_max == -INFINITY) {
            /* Nothing seen yet in this row: every probability is zero. */
            for (j = 0; j < n; j++)
                ZERO_P(si, j);
            continue;
        }
        /* Two independent exp chains and sums hide the polynomial's latency. */
        vf nm = vf_set1(new_max), sum0 = vf_zero(), sum1 = vf_zero();
        for (j = 0; j + 2 * W <= n; j += 2 * W) {
            vf p0 = SOFTMAX_EXP(vf_sub(vf_load(si + j), nm));
            vf p1 = SOFTMAX_EXP(vf_sub(vf_load(si + j + W), nm));
            STORE_P2(si, j, p0, p1);
            sum0 = vf_add(sum0, p0);
            sum1 = vf_add(sum1, p1);
        }
        for (; j < n; j += W) {
            int64_t left = n - j < W ? n - j : W;
            vf p0 = SOFTMAX_EXP(vf_sub(vf_load_n(si + j, left, -INFINITY), nm));
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

#undef SOFTMAX_EXP
#undef STORE_P2
#undef STORE_P_N
#undef ZERO_P

/* An exp alone over an array, for tests/test_exp_ulp.c: y[i] = vexp(x[i]). */
#define ARRAY_EXP(name, vexp)                                                                      \
    void name(int64_t n, const float *x, float *y) {                                               \
        int64_t i = 0;                                                                             \
        for (; i + VF_LANES <= n; i += VF_LANES)                                                   \
            vf_store(y + i, vexp(vf_load(x + i)));                                                 \
        if (i < n) vf_store_n(y + i, vexp(vf_load_n(x + i, n - i, 0.0f)), n - i);                  \
    }
#ifdef EXP_NAME
ARRAY_EXP(EXP_NAME, vf_exp)
#endif
#ifdef EXP_FOR_BF16_NAME
ARRAY_EXP(EXP_FOR_BF16_NAME, vf_exp_for_bf16)
#endif
#undef ARRAY_EXP
