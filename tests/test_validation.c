/*
 * Bad input, entry point by entry point: tileattn_forward, tileattn_validate,
 * tileattn_reference_forward and tileattn_describe_plan each get a valid
 * problem with one thing broken, must return the documented status, and
 * must leave every output byte untouched (O, LSE, the reference's buffers,
 * the plan's text buffer are filled with a sentinel first).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

enum { B = 2, SQ = 5, SK = 7, H = 4, HK = 2, D = 8, DV = 8 };
#define SENTINEL 0xA5

/* One valid problem, with every buffer an entry point may write. */
typedef struct fixture {
    float q[B * SQ * H * D], k[B * SK * HK * D], v[B * SK * HK * DV];
    float o[B * SQ * H * DV], lse[B * H * SQ];
    double ref_o[B * SQ * H * DV], ref_lse[B * H * SQ];
    char plan[512];
    float bias[B * H * SQ * SK];
    float slopes[H], sinks[H];
    int32_t cu_q[B + 1], cu_k[B + 1];
    tileattn_forward_args args;
} fixture;

static fixture fx;

static void fixture_reset(void) {
    th_rng rng;
    th_rng_seed(&rng, 42);
    for (size_t i = 0; i < sizeof fx.q / sizeof fx.q[0]; i++)
        fx.q[i] = (float)th_rng_normal(&rng);
    for (size_t i = 0; i < sizeof fx.k / sizeof fx.k[0]; i++)
        fx.k[i] = (float)th_rng_normal(&rng);
    for (size_t i = 0; i < sizeof fx.v / sizeof fx.v[0]; i++)
        fx.v[i] = (float)th_rng_normal(&rng);
    for (size_t i = 0; i < sizeof fx.bias / sizeof fx.bias[0]; i++)
        fx.bias[i] = (float)th_rng_normal(&rng);
    for (int h = 0; h < H; h++)
        fx.slopes[h] = 0.1f * (float)(h + 1), fx.sinks[h] = 0.5f;
    fx.cu_q[0] = 0, fx.cu_q[1] = 2, fx.cu_q[2] = 5;
    fx.cu_k[0] = 0, fx.cu_k[1] = 3, fx.cu_k[2] = 7;
    tileattn_forward_args *a = &fx.args;
    tileattn_forward_args_init(a);
    a->batch = B, a->seqlen_q = SQ, a->seqlen_k = SK, a->heads_q = H, a->heads_kv = HK;
    a->head_dim = D, a->head_dim_v = DV;
    a->q = tileattn_tensor_contiguous(fx.q, SQ, H, D);
    a->k = tileattn_tensor_contiguous(fx.k, SK, HK, D);
    a->v = tileattn_tensor_contiguous(fx.v, SK, HK, DV);
    a->o = tileattn_tensor_out_contiguous(fx.o, SQ, H, DV);
    a->lse = fx.lse;
}

static void fill_sentinels(void) {
    memset(fx.o, SENTINEL, sizeof fx.o);
    memset(fx.lse, SENTINEL, sizeof fx.lse);
    memset(fx.ref_o, SENTINEL, sizeof fx.ref_o);
    memset(fx.ref_lse, SENTINEL, sizeof fx.ref_lse);
    memset(fx.plan, SENTINEL, sizeof fx.plan);
}

static int untouched(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != SENTINEL) return 0;
    return 1;
}

/* Expected statuses per entry point; SAME = as forward, SKIP = not run. */
#define SAME (-1)
#define SKIP (-2)
#define OK_  TILEATTN_OK

typedef struct bad_case {
    const char *name;
    void (*mutate)(tileattn_forward_args *a);
    int forward, validate, reference, plan;
    int alt; /* another acceptable forward status (or SAME for none) */
} bad_case;

static void check_status(const char *name, const char *entry, int got, int want, int alt) {
    cr_expect(got == want || (alt != SAME && got == alt),
              "%s: %s returned %d (%s), expected %d (%s)", name, entry, got,
              tileattn_status_string((tileattn_status)got), want,
              tileattn_status_string((tileattn_status)want));
}

static void run_bad_case(const bad_case *bc) {
    fixture_reset();
    tileattn_forward_args a = fx.args;
    bc->mutate(&a);
    int want_v = bc->validate == SAME ? bc->forward : bc->validate;
    int want_r = bc->reference == SAME ? bc->forward : bc->reference;
    int want_p = bc->plan == SAME ? bc->forward : bc->plan;

    fill_sentinels();
    check_status(bc->name, "tileattn_forward", tileattn_forward(&a), bc->forward, bc->alt);
    if (bc->forward != OK_) {
        cr_expect(untouched(fx.o, sizeof fx.o), "%s: tileattn_forward wrote O", bc->name);
        cr_expect(untouched(fx.lse, sizeof fx.lse), "%s: tileattn_forward wrote LSE", bc->name);
    }
    fill_sentinels();
    check_status(bc->name, "tileattn_validate", tileattn_validate(&a), want_v, bc->alt);
    cr_expect(untouched(fx.o, sizeof fx.o) && untouched(fx.lse, sizeof fx.lse),
              "%s: tileattn_validate wrote an output", bc->name);
    if (want_r != SKIP) {
        fill_sentinels();
        check_status(bc->name, "tileattn_reference_forward",
                     tileattn_reference_forward(&a, fx.ref_o, fx.ref_lse), want_r, bc->alt);
        if (want_r != OK_)
            cr_expect(untouched(fx.ref_o, sizeof fx.ref_o) &&
                          untouched(fx.ref_lse, sizeof fx.ref_lse),
                      "%s: tileattn_reference_forward wrote an output", bc->name);
        cr_expect(untouched(fx.o, sizeof fx.o) && untouched(fx.lse, sizeof fx.lse),
                  "%s: tileattn_reference_forward wrote args->o or args->lse", bc->name);
    }
    fill_sentinels();
    check_status(bc->name, "tileattn_describe_plan",
                 tileattn_describe_plan(&a, fx.plan, sizeof fx.plan), want_p, bc->alt);
    if (want_p != OK_)
        cr_expect(untouched(fx.plan, sizeof fx.plan), "%s: tileattn_describe_plan wrote its buffer",
                  bc->name);
    cr_expect(untouched(fx.o, sizeof fx.o) && untouched(fx.lse, sizeof fx.lse),
              "%s: tileattn_describe_plan wrote an output", bc->name);
}

#define MUT(fn, body)                                                                              \
    static void fn(tileattn_forward_args *a) {                                                     \
        body;                                                                                      \
    }

MUT(m_none, (void)a)
MUT(m_q_null, a->q.data = NULL)
MUT(m_k_null, a->k.data = NULL)
MUT(m_v_null, a->v.data = NULL)
MUT(m_o_null, a->o.data = NULL)
MUT(m_batch_zero, a->batch = 0)
MUT(m_batch_neg, a->batch = -1)
MUT(m_sq_zero, a->seqlen_q = 0)
MUT(m_sq_neg, a->seqlen_q = -3)
MUT(m_sk_zero, a->seqlen_k = 0)
MUT(m_sk_neg, a->seqlen_k = -1)
MUT(m_h_zero, a->heads_q = 0)
MUT(m_hk_zero, a->heads_kv = 0)
MUT(m_hk_neg, a->heads_kv = -2)
MUT(m_d_zero, a->head_dim = 0)
MUT(m_d_257, a->head_dim = 257)
MUT(m_d_neg, a->head_dim = -8)
MUT(m_dv_257, a->head_dim_v = 257)
MUT(m_dv_neg, a->head_dim_v = -1)
MUT(m_h_mod, a->heads_kv = 3)
MUT(m_hk_gt_h, a->heads_kv = 8)
MUT(m_batch_huge, a->batch = (int64_t)1 << 40)
MUT(m_both_huge, (a->batch = (int64_t)1 << 40, a->seqlen_q = (int64_t)1 << 40))
MUT(m_seqs_huge, (a->batch = 1, a->seqlen_q = (int64_t)1 << 40, a->seqlen_k = (int64_t)1 << 40))
MUT(m_sq_huge, a->seqlen_q = (int64_t)1 << 62)
MUT(m_heads_huge, (a->heads_q = (int64_t)1 << 40, a->heads_kv = 1))
MUT(m_stride_b_huge, a->q.stride_b = (int64_t)1 << 62)
MUT(m_stride_s_huge, a->v.stride_s = (int64_t)1 << 61)
MUT(m_o_stride_huge, a->o.stride_h = INT64_MAX / 2)
/* The largest offset exactly INT64_MAX (the division is exact for these
 * sizes): one past it overflows. */
MUT(m_q_stride_max,
    a->q.stride_s = (INT64_MAX - (B - 1) * SQ * H * D - (H - 1) * D - (D - 1)) / (SQ - 1))
MUT(m_alibi_stride_max, (a->alibi_slopes = fx.slopes, a->alibi_stride_b = INT64_MAX))
MUT(m_alibi_stride_near_max, (a->alibi_slopes = fx.slopes, a->alibi_stride_b = INT64_MAX - 2))
MUT(m_scale_nan, a->scale = NAN)
MUT(m_scale_neg, a->scale = -0.5f)
MUT(m_scale_inf, a->scale = INFINITY)
MUT(m_softcap_nan, a->softcap = NAN)
MUT(m_softcap_neg, a->softcap = -1.0f)
MUT(m_softcap_inf, a->softcap = INFINITY)
MUT(m_wl_bad, a->window_left = -2)
MUT(m_wr_bad, a->window_right = -7)
MUT(m_causal_bad, a->causal = (tileattn_causal)3)
MUT(m_causal_neg, a->causal = (tileattn_causal)-1)
MUT(m_bias_kind_bad, (a->bias_kind = (tileattn_bias_kind)3, a->bias = fx.bias))
MUT(m_bias_null, (a->bias_kind = TILEATTN_BIAS_ADDITIVE, a->bias_stride_q = SK))
MUT(m_mask_null, (a->bias_kind = TILEATTN_BIAS_BOOL_MASK, a->bias_stride_q = SK))
MUT(m_dtype_bad, a->dtype = (tileattn_dtype)7)
MUT(m_dtype_neg, a->dtype = (tileattn_dtype)-1)
MUT(m_dtype_f64, a->dtype = TILEATTN_F64)
MUT(m_bias_f64, (a->bias_kind = TILEATTN_BIAS_ADDITIVE, a->bias = fx.bias, a->bias_stride_q = SK,
                 a->bias_dtype = TILEATTN_F64))
MUT(m_bias_dtype_bad, (a->bias_kind = TILEATTN_BIAS_ADDITIVE, a->bias = fx.bias,
                       a->bias_stride_q = SK, a->bias_dtype = (tileattn_dtype)9))
MUT(m_bias_stride_huge, (a->bias_kind = TILEATTN_BIAS_ADDITIVE, a->bias = fx.bias,
                         a->bias_stride_q = SK, a->bias_stride_b = (int64_t)1 << 62))
static void varlen(tileattn_forward_args *a) {
    a->cu_seqlens_q = fx.cu_q;
    a->cu_seqlens_k = fx.cu_k;
    a->q = tileattn_tensor_contiguous(fx.q, 0, H, D);
    a->k = tileattn_tensor_contiguous(fx.k, 0, HK, D);
    a->v = tileattn_tensor_contiguous(fx.v, 0, HK, DV);
    a->o = tileattn_tensor_out_contiguous(fx.o, 0, H, DV);
}
MUT(m_varlen_ok, varlen(a))
MUT(m_cu_nonmono, (varlen(a), fx.cu_k[1] = 8))
MUT(m_cu_neg, (varlen(a), fx.cu_q[0] = -1))
MUT(m_cu_q_only, (varlen(a), a->cu_seqlens_k = NULL))
MUT(m_cu_k_only, (varlen(a), a->cu_seqlens_q = NULL))
MUT(m_varlen_bias,
    (varlen(a), a->bias_kind = TILEATTN_BIAS_ADDITIVE, a->bias = fx.bias, a->bias_stride_q = SK))
MUT(m_varlen_mask,
    (varlen(a), a->bias_kind = TILEATTN_BIAS_BOOL_MASK, a->bias = fx.bias, a->bias_stride_q = SK))
MUT(m_o_overlap_h, a->o.stride_h = DV - 1)
MUT(m_o_overlap_s, a->o.stride_s = H * DV - 1)
MUT(m_o_zero_s, a->o.stride_s = 0)
MUT(m_o_zero_b, a->o.stride_b = 0)
MUT(m_threads_neg, a->num_threads = -1)
MUT(m_alibi_nan, (a->alibi_slopes = fx.slopes, fx.slopes[2] = NAN))
MUT(m_alibi_inf, (a->alibi_slopes = fx.slopes, fx.slopes[0] = -INFINITY))
MUT(m_sinks_inf, (a->sinks = fx.sinks, fx.sinks[1] = INFINITY))
MUT(m_sinks_nan, (a->sinks = fx.sinks, fx.sinks[3] = NAN))
MUT(m_sinks_neg_inf, (a->sinks = fx.sinks, fx.sinks[1] = -INFINITY)) /* that head: no sink */
MUT(m_o_is_k, a->o.data = fx.k)
MUT(m_lse_is_q, a->lse = fx.q)
MUT(m_p_precision_bad, a->p_precision = (tileattn_p_precision)2)
/* Valid but unusual: inputs may overlap (read-only), O may be padded. */
MUT(m_k_bcast_heads, a->k.stride_h = 0)
MUT(m_q_overlap, a->q.stride_h = 1)
/* "Strides ... may be anything for the batch, sequence and head axes":
 * K with its sequence reversed (negative stride_s), data at the last row. */
MUT(m_k_reversed, (a->k.data = fx.k + (SK - 1) * HK * D, a->k.stride_s = -(HK * D)))
MUT(m_o_padded, (a->o.stride_h = DV, a->o.stride_s = H * DV, a->o.stride_b = SQ * H * DV))
MUT(m_everything_on, (a->causal = TILEATTN_CAUSAL_TOP_LEFT, a->window_left = 2, a->softcap = 3.0f,
                      a->alibi_slopes = fx.slopes, a->bias_kind = TILEATTN_BIAS_ADDITIVE,
                      a->bias = fx.bias, a->bias_stride_b = H * SQ * SK, a->bias_stride_h = SQ * SK,
                      a->bias_stride_q = SK, a->scale = 0.5f))

#define NP TILEATTN_ERR_NULL_POINTER
#define BS TILEATTN_ERR_BAD_SIZE
#define OV TILEATTN_ERR_OVERFLOW
#define SM TILEATTN_ERR_SHAPE_MISMATCH
#define BV TILEATTN_ERR_BAD_VALUE
#define BD TILEATTN_ERR_BAD_DTYPE
#define UN TILEATTN_ERR_UNSUPPORTED

/* name, mutation, forward, validate, reference, describe_plan, alt. The
 * reference ignores args->o; describe_plan takes NULL data pointers. */
static const bad_case bad_cases[] = {
    {"valid", m_none, OK_, SAME, SAME, SAME, SAME},
    {"varlen valid", m_varlen_ok, OK_, SAME, SAME, SAME, SAME},
    {"K broadcast over heads (stride 0)", m_k_bcast_heads, OK_, SAME, SAME, SAME, SAME},
    {"Q heads overlapping (read-only)", m_q_overlap, OK_, SAME, SAME, SAME, SAME},
    {"O padded strides", m_o_padded, OK_, SAME, SAME, SAME, SAME},
    {"K sequence reversed (negative stride)", m_k_reversed, OK_, SAME, SAME, SAME, SAME},
    {"every option on", m_everything_on, OK_, SAME, SAME, SAME, SAME},
    {"q.data NULL", m_q_null, NP, SAME, SAME, OK_, SAME},
    {"k.data NULL", m_k_null, NP, SAME, SAME, OK_, SAME},
    {"v.data NULL", m_v_null, NP, SAME, SAME, OK_, SAME},
    {"o.data NULL", m_o_null, NP, SAME, OK_, OK_, SAME},
    {"batch 0", m_batch_zero, BS, SAME, SAME, SAME, SAME},
    {"batch -1", m_batch_neg, BS, SAME, SAME, SAME, SAME},
    {"seqlen_q 0", m_sq_zero, BS, SAME, SAME, SAME, SAME},
    {"seqlen_q -3", m_sq_neg, BS, SAME, SAME, SAME, SAME},
    {"seqlen_k 0", m_sk_zero, BS, SAME, SAME, SAME, SAME},
    {"seqlen_k -1", m_sk_neg, BS, SAME, SAME, SAME, SAME},
    {"heads_q 0", m_h_zero, BS, SAME, SAME, SAME, SAME},
    {"heads_kv 0", m_hk_zero, BS, SAME, SAME, SAME, SAME},
    {"heads_kv -2", m_hk_neg, BS, SAME, SAME, SAME, SAME},
    {"head_dim 0", m_d_zero, BS, SAME, SAME, SAME, SAME},
    {"head_dim 257", m_d_257, BS, SAME, SAME, SAME, SAME},
    {"head_dim -8", m_d_neg, BS, SAME, SAME, SAME, SAME},
    {"head_dim_v 257", m_dv_257, BS, SAME, SAME, SAME, SAME},
    {"head_dim_v -1", m_dv_neg, BS, SAME, SAME, SAME, SAME},
    {"H % Hk != 0", m_h_mod, SM, SAME, SAME, SAME, SAME},
    {"Hk > H", m_hk_gt_h, SM, SAME, SAME, SAME, SAME},
    {"batch 2^40", m_batch_huge, OV, SAME, SAME, SAME, BS},
    {"batch and seqlen_q 2^40", m_both_huge, OV, SAME, SAME, SAME, BS},
    {"seqlen_q = seqlen_k = 2^40", m_seqs_huge, OV, SAME, SAME, SAME, SAME},
    {"seqlen_q 2^62", m_sq_huge, OV, SAME, SAME, SAME, SAME},
    {"heads_q 2^40", m_heads_huge, OV, SAME, SAME, SAME, BS},
    {"q.stride_b 2^62", m_stride_b_huge, OV, SAME, SAME, SAME, SAME},
    {"v.stride_s 2^61", m_stride_s_huge, OV, SAME, SAME, SAME, SAME},
    {"o.stride_h 2^62", m_o_stride_huge, OV, SAME, OK_, SAME, SAME},
    {"q.stride_s reaching INT64_MAX", m_q_stride_max, OV, SAME, SAME, SAME, SAME},
    {"alibi_stride_b INT64_MAX", m_alibi_stride_max, OV, SAME, SAME, SAME, SAME},
    {"alibi_stride_b INT64_MAX - 2", m_alibi_stride_near_max, OV, SAME, SAME, SAME, SAME},
    {"scale NaN", m_scale_nan, BV, SAME, SAME, SAME, SAME},
    {"scale negative", m_scale_neg, BV, SAME, SAME, SAME, SAME},
    {"scale inf", m_scale_inf, BV, SAME, SAME, SAME, SAME},
    {"softcap NaN", m_softcap_nan, BV, SAME, SAME, SAME, SAME},
    {"softcap negative", m_softcap_neg, BV, SAME, SAME, SAME, SAME},
    {"softcap inf", m_softcap_inf, BV, SAME, SAME, SAME, SAME},
    {"window_left -2", m_wl_bad, BV, SAME, SAME, SAME, SAME},
    {"window_right -7", m_wr_bad, BV, SAME, SAME, SAME, SAME},
    {"causal 3", m_causal_bad, BV, SAME, SAME, SAME, SAME},
    {"causal -1", m_causal_neg, BV, SAME, SAME, SAME, SAME},
    {"bias_kind 3", m_bias_kind_bad, BV, SAME, SAME, SAME, SAME},
    {"additive bias without pointer", m_bias_null, NP, SAME, SAME, OK_, SAME},
    {"bool mask without pointer", m_mask_null, NP, SAME, SAME, OK_, SAME},
    {"dtype 7", m_dtype_bad, BD, SAME, SAME, SAME, SAME},
    {"dtype -1", m_dtype_neg, BD, SAME, SAME, SAME, SAME},
    {"dtype F64 (reference only)", m_dtype_f64, BD, SAME, SKIP, SAME, SAME},
    {"bias dtype F64", m_bias_f64, BD, SAME, SAME, SAME, SAME},
    {"bias dtype 9", m_bias_dtype_bad, BD, SAME, SAME, SAME, SAME},
    {"bias_stride_b 2^62", m_bias_stride_huge, OV, SAME, SAME, SAME, SAME},
    {"cu_seqlens_k not monotonic", m_cu_nonmono, SM, SAME, SAME, SAME, SAME},
    {"cu_seqlens_q negative", m_cu_neg, SM, SAME, SAME, SAME, SAME},
    {"only cu_seqlens_q", m_cu_q_only, SM, SAME, SAME, SAME, SAME},
    {"only cu_seqlens_k", m_cu_k_only, SM, SAME, SAME, SAME, SAME},
    {"varlen with additive bias", m_varlen_bias, UN, SAME, SAME, SAME, SAME},
    {"varlen with bool mask", m_varlen_mask, UN, SAME, SAME, SAME, SAME},
    {"O heads overlap", m_o_overlap_h, SM, SAME, OK_, SAME, SAME},
    {"O rows overlap", m_o_overlap_s, SM, SAME, OK_, SAME, SAME},
    {"O stride_s 0", m_o_zero_s, SM, SAME, OK_, SAME, SAME},
    {"O stride_b 0", m_o_zero_b, SM, SAME, OK_, SAME, SAME},
    {"num_threads -1", m_threads_neg, BV, SAME, SAME, SAME, SAME},
    {"ALiBi slope NaN", m_alibi_nan, BV, SAME, SAME, SAME, SAME},
    {"ALiBi slope -inf", m_alibi_inf, BV, SAME, SAME, SAME, SAME},
    {"sink +inf", m_sinks_inf, BV, SAME, SAME, SAME, SAME},
    {"sink NaN", m_sinks_nan, BV, SAME, SAME, SAME, SAME},
    {"sink -inf (no sink)", m_sinks_neg_inf, OK_, SAME, SAME, SAME, SAME},
    {"O = K (one buffer twice)", m_o_is_k, SM, SAME, OK_, SAME, SAME},
    {"LSE = Q (one buffer twice)", m_lse_is_q, SM, SAME, OK_, SAME, SAME},
    {"p_precision 2", m_p_precision_bad, BV, SAME, SAME, SAME, SAME},
};

Test(api, bad_arguments) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++)
        run_bad_case(&bad_cases[i]);
}

Test(api, null_args) {
    fixture_reset();
    fill_sentinels();
    cr_expect_eq(tileattn_forward(NULL), TILEATTN_ERR_NULL_POINTER);
    cr_expect_eq(tileattn_validate(NULL), TILEATTN_ERR_NULL_POINTER);
    cr_expect_eq(tileattn_reference_forward(NULL, fx.ref_o, fx.ref_lse), TILEATTN_ERR_NULL_POINTER);
    cr_expect_eq(tileattn_describe_plan(NULL, fx.plan, sizeof fx.plan), TILEATTN_ERR_NULL_POINTER);
    cr_expect(untouched(fx.ref_o, sizeof fx.ref_o) && untouched(fx.ref_lse, sizeof fx.ref_lse));
    cr_expect(untouched(fx.plan, sizeof fx.plan));
    /* The reference's own output pointer; LSE is optional. */
    cr_expect_eq(tileattn_reference_forward(&fx.args, NULL, fx.ref_lse), TILEATTN_ERR_NULL_POINTER);
    cr_expect(untouched(fx.ref_lse, sizeof fx.ref_lse));
    cr_expect_eq(tileattn_reference_forward(&fx.args, fx.ref_o, NULL), TILEATTN_OK);
    cr_expect(untouched(fx.ref_lse, sizeof fx.ref_lse));
    /* LSE is optional for the forward too. */
    fx.args.lse = NULL;
    cr_expect_eq(tileattn_forward(&fx.args), TILEATTN_OK);
    cr_expect(untouched(fx.lse, sizeof fx.lse), "LSE written although args->lse is NULL");
    cr_expect_eq(tileattn_describe_plan(&fx.args, NULL, 100), TILEATTN_ERR_NULL_POINTER);
    cr_expect_eq(tileattn_describe_machine(NULL, 100), TILEATTN_ERR_NULL_POINTER);
    tileattn_forward_args_init(NULL); /* must not crash */
}

Test(api, status_strings) {
    const char *seen[TILEATTN_ERR_BAD_ENV + 1];
    for (int s = 0; s <= TILEATTN_ERR_BAD_ENV; s++) {
        const char *m = tileattn_status_string((tileattn_status)s);
        cr_assert_not_null(m, "status %d", s);
        cr_expect_gt(strlen(m), 0, "status %d has an empty message", s);
        for (int t = 0; t < s; t++)
            cr_expect_str_neq(m, seen[t], "statuses %d and %d share a message", t, s);
        seen[s] = m;
    }
    static const int out_of_range[] = {-1, TILEATTN_ERR_BAD_ENV + 1, 1000, -2147483647 - 1};
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        const char *m = tileattn_status_string((tileattn_status)out_of_range[i]);
        cr_assert_not_null(m, "status %d", out_of_range[i]);
        cr_expect_gt(strlen(m), 0, "status %d has an empty message", out_of_range[i]);
    }
}

Test(api, small_helpers) {
    cr_expect_eq(tileattn_dtype_size(TILEATTN_F32), 4);
    cr_expect_eq(tileattn_dtype_size(TILEATTN_F16), 2);
    cr_expect_eq(tileattn_dtype_size(TILEATTN_BF16), 2);
    cr_expect_eq(tileattn_dtype_size(TILEATTN_F64), 8);
    cr_expect_eq(tileattn_dtype_size((tileattn_dtype)4), 0);
    cr_expect_eq(tileattn_dtype_size((tileattn_dtype)-1), 0);

    tileattn_forward_args a;
    memset(&a, 0x7f, sizeof a);
    tileattn_forward_args_init(&a);
    cr_expect_eq(a.window_left, -1);
    cr_expect_eq(a.window_right, -1);
    cr_expect_eq(a.dtype, TILEATTN_F32);
    cr_expect_eq(a.causal, TILEATTN_CAUSAL_NONE);
    cr_expect_eq(a.bias_kind, TILEATTN_BIAS_NONE);
    cr_expect_null(a.q.data);
    cr_expect_null(a.lse);
    cr_expect_null(a.sinks);
    cr_expect_null(a.alibi_slopes);
    cr_expect_null(a.cu_seqlens_q);
    cr_expect_eq(a.scale, 0.0f);
    cr_expect_eq(a.softcap, 0.0f);
    cr_expect_eq(a.num_threads, 0);
    cr_expect_eq(a.batch, 0);

    float x;
    tileattn_tensor t = tileattn_tensor_contiguous(&x, 10, 3, 7);
    cr_expect_eq(t.data, &x);
    cr_expect_eq(t.stride_b, 210);
    cr_expect_eq(t.stride_s, 21);
    cr_expect_eq(t.stride_h, 7);
    tileattn_tensor_out to = tileattn_tensor_out_contiguous(&x, 4, 5, 6);
    cr_expect_eq(to.data, &x);
    cr_expect_eq(to.stride_b, 120);
    cr_expect_eq(to.stride_s, 30);
    cr_expect_eq(to.stride_h, 6);
}

/* Each input dtype of the forward pass names the set that runs it, at or
 * below the best one; other dtypes get a message, not a crash. */
Test(api, isa_per_dtype) {
    const char *best = tileattn_isa_name();
    const tileattn_dtype dtypes[] = {TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16};
    for (int i = 0; i < 3; i++) {
        const char *name = tileattn_isa_name_for_dtype(dtypes[i]);
        cr_assert(name && *name && strncmp(name, "none", 4) != 0, "dtype %d: %s", (int)dtypes[i],
                  name ? name : "(null)");
    }
    /* float32 is served by every table's family: it runs on the best set
     * unless that set serves 16-bit inputs only. */
    cr_expect(strcmp(tileattn_isa_name_for_dtype(TILEATTN_F32), best) == 0 ||
                  strcmp(best, "neonbf16") == 0 || strcmp(best, "neonfhm") == 0 ||
                  strcmp(best, "amx") == 0 || strcmp(best, "avx512bf16") == 0,
              "float32 runs on %s, the best set is %s", tileattn_isa_name_for_dtype(TILEATTN_F32),
              best);
    cr_expect_eq(strncmp(tileattn_isa_name_for_dtype(TILEATTN_F64), "none", 4), 0);
    cr_expect_eq(strncmp(tileattn_isa_name_for_dtype((tileattn_dtype)99), "none", 4), 0);
}

Test(api, describe) {
    char buf[4096];
    memset(buf, SENTINEL, sizeof buf);
    cr_assert_eq(tileattn_describe_machine(buf, sizeof buf), TILEATTN_OK);
    cr_expect_lt(strnlen(buf, sizeof buf), sizeof buf, "not NUL-terminated");
    cr_expect_gt(strlen(buf), 0);
    cr_expect_not_null(strstr(buf, tileattn_isa_name()), "the machine description omits the ISA");

    char small[9];
    memset(small, SENTINEL, sizeof small);
    cr_assert_eq(tileattn_describe_machine(small, 8), TILEATTN_OK);
    cr_expect_lt(strnlen(small, 8), 8, "truncated text is not NUL-terminated");
    cr_expect_eq((unsigned char)small[8], SENTINEL, "wrote past len");

    fixture_reset();
    memset(buf, SENTINEL, sizeof buf);
    cr_assert_eq(tileattn_describe_plan(&fx.args, buf, sizeof buf), TILEATTN_OK);
    cr_expect_lt(strnlen(buf, sizeof buf), sizeof buf);
    cr_expect_gt(strlen(buf), 0);
    memset(small, SENTINEL, sizeof small);
    cr_assert_eq(tileattn_describe_plan(&fx.args, small, 5), TILEATTN_OK);
    cr_expect_lt(strnlen(small, 5), 5);
    cr_expect_eq((unsigned char)small[5], SENTINEL, "wrote past len");

    /* "Pointers in args may be NULL": a plan for shapes alone. */
    tileattn_forward_args shapes;
    tileattn_forward_args_init(&shapes);
    shapes.batch = 1, shapes.seqlen_q = 4096, shapes.seqlen_k = 4096, shapes.heads_q = 32;
    shapes.heads_kv = 8, shapes.head_dim = 128, shapes.dtype = TILEATTN_BF16;
    shapes.q = tileattn_tensor_contiguous(NULL, 4096, 32, 128);
    shapes.k = tileattn_tensor_contiguous(NULL, 4096, 8, 128);
    shapes.v = tileattn_tensor_contiguous(NULL, 4096, 8, 128);
    shapes.o = tileattn_tensor_out_contiguous(NULL, 4096, 32, 128);
    cr_expect_eq(tileattn_describe_plan(&shapes, buf, sizeof buf), TILEATTN_OK,
                 "describe_plan rejects a problem given by shapes only (NULL data pointers)");
}

/* Registered by meson a second time with TILEATTN_ISA=not-an-isa. */
Test(isa_env, unknown_isa_is_an_error) {
    const char *isa = getenv("TILEATTN_ISA");
    if (!isa || strcmp(isa, "not-an-isa") != 0) cr_skip_test("needs TILEATTN_ISA=not-an-isa");
    fixture_reset();
    fill_sentinels();
    cr_expect_eq(tileattn_forward(&fx.args), TILEATTN_ERR_BAD_ISA);
    cr_expect(untouched(fx.o, sizeof fx.o) && untouched(fx.lse, sizeof fx.lse));
    cr_expect_eq(tileattn_describe_plan(&fx.args, fx.plan, sizeof fx.plan), TILEATTN_ERR_BAD_ISA);
    cr_expect(untouched(fx.plan, sizeof fx.plan));
    const char *name = tileattn_isa_name();
    cr_expect(name && *name, "tileattn_isa_name must still return a message");
    char buf[2048];
    cr_expect_eq(tileattn_describe_machine(buf, sizeof buf), TILEATTN_OK);
}
