/*
 * The float64 reference is what every numeric test trusts, so it is checked
 * here against the header's formula restated independently (a naive
 * per-element loop written from include/tileattn.h alone), against a few
 * hand-computed values, and for F64 inputs. If the reference and the
 * forward shared a misreading of the semantics, only these tests would see
 * it.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_case.h"

/* The header's definition, word for word: score, mask, softmax with sink. */
static void naive(const tileattn_forward_args *a, double *o, double *lse) {
    int varlen = a->cu_seqlens_q != NULL;
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    int64_t total_q = varlen ? a->cu_seqlens_q[a->batch] : a->batch * a->seqlen_q;
    int64_t group = a->heads_q / a->heads_kv;
    double scale = a->scale > 0 ? a->scale : 1.0 / sqrt((double)a->head_dim);
    int64_t wr = a->causal != TILEATTN_CAUSAL_NONE ? 0 : a->window_right;
    int64_t wl = a->window_left;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t q0 = varlen ? a->cu_seqlens_q[b] : 0, k0 = varlen ? a->cu_seqlens_k[b] : 0;
        int64_t sq = varlen ? a->cu_seqlens_q[b + 1] - q0 : a->seqlen_q;
        int64_t sk = varlen ? a->cu_seqlens_k[b + 1] - k0 : a->seqlen_k;
        int64_t off = a->causal == TILEATTN_CAUSAL_TOP_LEFT ? 0 : sk - sq;
        int64_t bo = varlen ? 0 : b;
        for (int64_t h = 0; h < a->heads_q; h++) {
            int64_t hk = h / group;
            for (int64_t i = 0; i < sq; i++) {
                double *s = calloc((size_t)(sk ? sk : 1), sizeof(double));
                int *seen = calloc((size_t)(sk ? sk : 1), sizeof(int));
                double mx = a->sinks ? a->sinks[h] : -INFINITY;
                for (int64_t j = 0; j < sk; j++) {
                    int vis = 1;
                    if (wl != -1 && j < i + off - wl) vis = 0;
                    if (wr != -1 && j > i + off + wr) vis = 0;
                    int64_t bias_at =
                        b * a->bias_stride_b + h * a->bias_stride_h + i * a->bias_stride_q + j;
                    if (a->bias_kind == TILEATTN_BIAS_BOOL_MASK &&
                        ((const unsigned char *)a->bias)[bias_at] == 0)
                        vis = 0;
                    if (!vis) continue;
                    double dot = 0;
                    for (int64_t c = 0; c < a->head_dim; c++)
                        dot += th_load(a->q.data, a->dtype,
                                       bo * a->q.stride_b + (q0 + i) * a->q.stride_s +
                                           h * a->q.stride_h + c) *
                               th_load(a->k.data, a->dtype,
                                       bo * a->k.stride_b + (k0 + j) * a->k.stride_s +
                                           hk * a->k.stride_h + c);
                    double x = scale * dot;
                    if (a->softcap > 0) x = a->softcap * tanh(x / a->softcap);
                    if (a->alibi_slopes)
                        x -= a->alibi_slopes[b * a->alibi_stride_b + h] *
                             fabs((double)(i + off - j));
                    if (a->bias_kind == TILEATTN_BIAS_ADDITIVE)
                        x += th_load(a->bias, a->bias_dtype, bias_at);
                    s[j] = x;
                    seen[j] = 1;
                    if (x > mx) mx = x;
                }
                int64_t tok = varlen ? q0 + i : b * sq + i;
                double *orow = o + (tok * a->heads_q + h) * dv;
                double *l = &lse[varlen ? h * total_q + q0 + i : (b * a->heads_q + h) * sq + i];
                for (int64_t c = 0; c < dv; c++)
                    orow[c] = 0;
                if (mx == -INFINITY) {
                    *l = -INFINITY;
                } else {
                    double den = a->sinks ? exp(a->sinks[h] - mx) : 0;
                    for (int64_t j = 0; j < sk; j++)
                        if (seen[j]) den += exp(s[j] - mx);
                    for (int64_t j = 0; j < sk; j++)
                        if (seen[j]) {
                            double pj = exp(s[j] - mx) / den;
                            for (int64_t c = 0; c < dv; c++)
                                orow[c] +=
                                    pj * th_load(a->v.data, a->dtype,
                                                 bo * a->v.stride_b + (k0 + j) * a->v.stride_s +
                                                     hk * a->v.stride_h + c);
                        }
                    *l = mx + log(den);
                }
                free(s);
                free(seen);
            }
        }
    }
}

static int close_enough(double got, double want) {
    if (isinf(want)) return got == want;
    return fabs(got - want) <= 1e-11 * (1.0 + fabs(want));
}

Test(numeric, reference_matches_the_formula) {
    th_case cases[40];
    int n = 0;
    for (int k = 0; k < 40; k++) {
        th_case c = th_case_default();
        c.dtype = (tileattn_dtype)(k % 3);
        c.batch = 1 + k % 2;
        c.sq = 1 + (k * 7) % 23;
        c.sk = 1 + (k * 11) % 29;
        c.h = 4;
        c.hk = k % 3 == 0 ? 1 : k % 3 == 1 ? 2 : 4;
        c.d = 1 + (k * 5) % 17;
        c.dv = k % 4 == 0 ? 3 : 0;
        c.causal = (tileattn_causal)(k % 3);
        c.wl = k % 5 == 1 ? 2 : -1;
        c.wr = k % 7 == 2 ? 1 : -1;
        c.softcap = k % 4 == 1 ? 2.0f : 0.0f;
        c.scale = k % 6 == 5 ? 0.7f : 0.0f;
        c.alibi = (th_alibi)(k % 3);
        c.sinks = k % 2;
        c.q_gain = 2.0;
        if (k >= 30) { /* varlen */
            c.nseq = 3;
            c.lens_q[0] = k % 4, c.lens_q[1] = 5, c.lens_q[2] = 1;
            c.lens_k[0] = 6, c.lens_k[1] = k % 3, c.lens_k[2] = 9;
        } else {
            c.bias = (th_bias)(k % 3);
            c.bias_dtype = (tileattn_dtype)((k / 3) % 3);
            c.bias_flags =
                k & (TH_BIAS_BCAST_B | TH_BIAS_BCAST_H | TH_BIAS_NEGINF | TH_BIAS_DEAD_ROWS);
            c.layout = (th_layout)(k % 3);
            if (c.layout == TH_LAYOUT_PACKED_QKV) c.sk = c.sq;
        }
        cases[n++] = c;
    }
    int fails = 0;
    for (int k = 0; k < n; k++) {
        th_problem p;
        th_problem_make(&p, &cases[k], 99 + (uint64_t)k);
        double *o, *lse;
        cr_assert_eq(th_problem_reference(&p, NULL, &o, &lse), TILEATTN_OK);
        size_t rows = (size_t)(p.total_q * cases[k].h);
        double *o2 = th_alloc((rows + 1) * (size_t)p.dv * sizeof(double));
        double *lse2 = th_alloc((rows + 1) * sizeof(double));
        naive(&p.args, o2, lse2);
        int bad = 0;
        for (size_t r = 0; r < rows && !bad; r++) {
            if (!close_enough(lse[r], lse2[r])) bad = 1;
            for (int64_t c = 0; c < p.dv; c++)
                if (!close_enough(o[r * (size_t)p.dv + (size_t)c],
                                  o2[r * (size_t)p.dv + (size_t)c]))
                    bad = 1;
        }
        if (bad) {
            char desc[512];
            th_case_str(&cases[k], desc, sizeof desc);
            fprintf(stderr, "FAIL reference vs formula [%s]\n", desc);
            fails++;
        }
        th_free(o);
        th_free(lse);
        th_free(o2);
        th_free(lse2);
        th_problem_free(&p);
    }
    cr_assert_eq(fails, 0, "%d of %d cases differ from the header's formula", fails, n);
}

/* Hand-computed: q = 0 makes every score 0 (plus ALiBi/bias), so the
 * softmax is plain arithmetic. Sq = 2, Sk = 3, D = 1, v_j = j + 1. */
static void tiny(tileattn_forward_args *a, float *q, float *k, float *v) {
    tileattn_forward_args_init(a);
    a->batch = 1, a->seqlen_q = 2, a->seqlen_k = 3, a->heads_q = a->heads_kv = 1;
    a->head_dim = 1;
    q[0] = q[1] = 0.0f;
    k[0] = 1, k[1] = 2, k[2] = 3;
    v[0] = 1, v[1] = 2, v[2] = 3;
    a->q = tileattn_tensor_contiguous(q, 2, 1, 1);
    a->k = tileattn_tensor_contiguous(k, 3, 1, 1);
    a->v = tileattn_tensor_contiguous(v, 3, 1, 1);
}

Test(numeric, reference_hand_computed) {
    float q[2], k[3], v[3];
    double o[2], lse[2];
    tileattn_forward_args a;

    tiny(&a, q, k, v); /* no mask: both rows average 1, 2, 3 */
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[0], 2.0, 1e-12);
    cr_expect_float_eq(lse[1], log(3.0), 1e-12);

    tiny(&a, q, k, v); /* bottom-right causal: row 0 sees keys 0,1; row 1 sees all */
    a.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[0], 1.5, 1e-12);
    cr_expect_float_eq(o[1], 2.0, 1e-12);
    cr_expect_float_eq(lse[0], log(2.0), 1e-12);

    tiny(&a, q, k, v); /* top-left causal: row 0 sees key 0; row 1 keys 0,1 */
    a.causal = TILEATTN_CAUSAL_TOP_LEFT;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[0], 1.0, 1e-12);
    cr_expect_float_eq(o[1], 1.5, 1e-12);
    cr_expect_float_eq(lse[0], 0.0, 1e-12);

    tiny(&a, q, k, v); /* window (0, 0) bottom-right: row i sees key i + 1 */
    a.window_left = a.window_right = 0;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[0], 2.0, 1e-12);
    cr_expect_float_eq(o[1], 3.0, 1e-12);

    tiny(&a, q, k, v); /* a sink of logit log 3 joins the denominator only */
    float sink = (float)log(3.0);
    a.sinks = &sink;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[0], 6.0 / (3.0 + 3.0), 1e-6);
    cr_expect_float_eq(lse[0], log(3.0 + 3.0), 1e-6);

    tiny(&a, q, k, v); /* ALiBi slope 1, bottom-right: row 1 (i+off = 2) */
    float slope = 1.0f;
    a.alibi_slopes = &slope;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    double w0 = exp(-2.0), w1 = exp(-1.0), w2 = 1.0;
    cr_expect_float_eq(o[1], (w0 * 1 + w1 * 2 + w2 * 3) / (w0 + w1 + w2), 1e-12);

    tiny(&a, q, k, v); /* ALiBi with top-left causal: distance from i, row 1 */
    a.alibi_slopes = &slope;
    a.causal = TILEATTN_CAUSAL_TOP_LEFT;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_float_eq(o[1], (exp(-1.0) * 1 + 2) / (exp(-1.0) + 1), 1e-12);

    tiny(&a, q, k, v); /* softcap, then ALiBi: q = 1, k = 1,2,3 (scale 1) */
    q[0] = q[1] = 1.0f;
    a.softcap = 2.0f;
    a.alibi_slopes = &slope;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    double s0 = 2 * tanh(0.5) - 2, s1 = 2 * tanh(1.0) - 1, s2 = 2 * tanh(1.5);
    cr_expect_float_eq(lse[1], log(exp(s0) + exp(s1) + exp(s2)), 1e-6);

    tiny(&a, q, k, v); /* boolean mask: row 0 sees nothing, row 1 sees key 2 */
    unsigned char mask[6] = {0, 0, 0, 0, 0, 7};
    a.bias_kind = TILEATTN_BIAS_BOOL_MASK;
    a.bias = mask;
    a.bias_stride_q = 3;
    cr_assert_eq(tileattn_reference_forward(&a, o, lse), TILEATTN_OK);
    cr_expect_eq(o[0], 0.0);
    cr_expect(isinf(lse[0]) && lse[0] < 0, "LSE of a row without keys is -inf");
    cr_expect_float_eq(o[1], 3.0, 1e-12);
}

/* F64 inputs are exact copies of the F32 ones: the results are identical. */
Test(numeric, reference_f64_inputs) {
    th_case c = th_case_default();
    c.batch = 2, c.sq = 19, c.sk = 23, c.h = 4, c.hk = 2, c.d = 13, c.dv = 5;
    c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
    c.sinks = 1;
    c.alibi = TH_ALIBI_H;
    th_problem p;
    th_problem_make(&p, &c, 5);
    double *o, *lse;
    cr_assert_eq(th_problem_reference(&p, NULL, &o, &lse), TILEATTN_OK);
    size_t nq = (size_t)(c.batch * c.sq * c.h * c.d), nk = (size_t)(c.batch * c.sk * c.hk * c.d),
           nv = (size_t)(c.batch * c.sk * c.hk * c.dv);
    double *q = th_alloc(nq * 8), *k = th_alloc(nk * 8), *v = th_alloc(nv * 8);
    for (size_t i = 0; i < nq; i++)
        q[i] = ((const float *)p.qbuf)[i];
    for (size_t i = 0; i < nk; i++)
        k[i] = ((const float *)p.kbuf)[i];
    for (size_t i = 0; i < nv; i++)
        v[i] = ((const float *)p.vbuf)[i];
    tileattn_forward_args a = p.args;
    a.dtype = TILEATTN_F64;
    a.q.data = q, a.k.data = k, a.v.data = v;
    double *o2, *lse2;
    cr_assert_eq(th_problem_reference(&p, &a, &o2, &lse2), TILEATTN_OK);
    cr_expect_eq(memcmp(o, o2, (size_t)(c.batch * c.sq * c.h * c.dv) * 8), 0);
    cr_expect_eq(memcmp(lse, lse2, (size_t)(c.batch * c.sq * c.h) * 8), 0);
    /* The forward takes no F64. */
    a.o = p.args.o;
    cr_expect_eq(tileattn_forward(&a), TILEATTN_ERR_BAD_DTYPE);
    th_free(q), th_free(k), th_free(v), th_free(o), th_free(lse), th_free(o2), th_free(lse2);
    th_problem_free(&p);
}
