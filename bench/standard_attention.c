/*
 * The standard (materialized) attention: the fair unfused baseline.
 *
 * For each (batch, head):
 *   S = scale Q K^T                 cblas_sgemm, Sq x Sk x D, S materialized
 *   P = masked row softmax of S     bench_softmax_rows (vectorized), in place
 *   O = P V, O_i /= sum_i           cblas_sgemm, Sq x Dv x Sk
 * The normalisation is applied to O (Dv values per row) instead of P (Sk
 * values per row): the same result, one pass over S fewer.
 *
 * Threads: OpenMP only, sgemm always single-threaded (no second thread
 * pool competing with OpenMP's). Pairs run one after another and each
 * pair's query rows are split into one block per thread: every thread
 * computes its rows of S = Q K^T, their softmax and their rows of O = P V.
 * So one Sq x Sk float32 matrix, the head's whole S, is live at a time (it
 * is allocated once per call and reused by every head). Spreading whole
 * heads over threads instead, each with its own S, measured slower on a
 * 2-core Zen 5 (B=1 H=8 Sq=Sk=2048 D=128 causal: 62 ms against 48 ms): two
 * S matrices no longer fit in L3.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "softmax_rows.h"
#include "tileattn_config.h"

#if TILEATTN_HAVE_OPENMP && defined(_OPENMP)
#include <omp.h>
#endif

/* The call's arguments, resolved: defaults applied, causal folded into the
 * window, the longest sequences known. */
typedef struct std_problem {
    const tileattn_forward_args *args;
    int64_t batch, heads, heads_kv, group, head_dim, head_dim_v;
    int64_t max_seqlen_q, max_seqlen_k, total_q;
    int varlen;
    float scale;
    int64_t window_left, window_right;
    int top_left;
    size_t elem_size;
    /* Whether sgemm may read Q, K, V / write O in place (float32, row
     * strides that BLAS accepts); otherwise rows go through float32 copies. */
    int direct_q, direct_k, direct_v, direct_o;
} std_problem;

/* One worker's buffers. */
typedef struct std_scratch {
    float *scores;        /* max_Sq x max_Sk: the materialized S, then P */
    float *inv_sum;       /* max_Sq */
    float *q, *k, *v, *o; /* float32 copies, NULL when direct */
} std_scratch;

static int fits_blas_ld(int64_t stride, int64_t dim) {
    return stride >= dim && stride <= INT_MAX;
}

static tileattn_status resolve_problem(const tileattn_forward_args *a, std_problem *p) {
    memset(p, 0, sizeof *p);
    p->args = a;
    p->batch = a->batch;
    p->heads = a->heads_q;
    p->heads_kv = a->heads_kv;
    p->group = a->heads_q / a->heads_kv;
    p->head_dim = a->head_dim;
    p->head_dim_v = a->head_dim_v ? a->head_dim_v : a->head_dim;
    p->scale = a->scale > 0.0f ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    p->window_left = a->window_left;
    p->window_right = a->causal != TILEATTN_CAUSAL_NONE ? 0 : a->window_right;
    p->top_left = a->causal == TILEATTN_CAUSAL_TOP_LEFT;
    p->elem_size = a->dtype == TILEATTN_F32 ? 4 : 2;
    p->varlen = a->cu_seqlens_q != NULL;
    if (p->varlen) {
        for (int64_t b = 0; b < a->batch; b++) {
            int64_t sq = (int64_t)a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
            int64_t sk = (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
            if (sq > p->max_seqlen_q) p->max_seqlen_q = sq;
            if (sk > p->max_seqlen_k) p->max_seqlen_k = sk;
        }
        p->total_q = a->cu_seqlens_q[a->batch];
    } else {
        p->max_seqlen_q = a->seqlen_q;
        p->max_seqlen_k = a->seqlen_k;
    }
    /* sgemm takes int sizes; S's rows are indexed with int inside a row. */
    if (p->max_seqlen_q > INT_MAX || p->max_seqlen_k > INT_MAX) return TILEATTN_ERR_UNSUPPORTED;
    int f32 = a->dtype == TILEATTN_F32;
    p->direct_q = f32 && fits_blas_ld(a->q.stride_s, p->head_dim);
    p->direct_k = f32 && fits_blas_ld(a->k.stride_s, p->head_dim);
    p->direct_v = f32 && fits_blas_ld(a->v.stride_s, p->head_dim_v);
    p->direct_o = f32 && fits_blas_ld(a->o.stride_s, p->head_dim_v);
    return TILEATTN_OK;
}

static int resolve_threads(const tileattn_forward_args *args, int threads) {
    if (threads <= 0) threads = args->num_threads;
    if (threads <= 0) threads = bench_max_threads();
    return threads;
}

size_t bench_standard_attention_score_bytes(const tileattn_forward_args *args, int threads) {
    (void)threads; /* one S whatever the threads: see the top of this file */
    std_problem p;
    if (!args || args->heads_kv < 1 || resolve_problem(args, &p) != TILEATTN_OK) return SIZE_MAX;
    size_t count, bytes;
    if (bench_mul_size((size_t)p.max_seqlen_q, (size_t)p.max_seqlen_k, &count) ||
        bench_mul_size(count, sizeof(float), &bytes))
        return SIZE_MAX;
    return bytes;
}

static void free_scratch(std_scratch *w) {
    free(w->scores);
    free(w->inv_sum);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->o);
    memset(w, 0, sizeof *w);
}

static float *alloc_floats(int64_t rows, int64_t cols) {
    size_t count, bytes;
    if (bench_mul_size((size_t)rows, (size_t)cols, &count) ||
        bench_mul_size(count ? count : 1, sizeof(float), &bytes))
        return NULL;
    return malloc(bytes);
}

static int alloc_scratch(const std_problem *p, std_scratch *w) {
    memset(w, 0, sizeof *w);
    w->scores = alloc_floats(p->max_seqlen_q, p->max_seqlen_k);
    w->inv_sum = alloc_floats(p->max_seqlen_q, 1);
    if (!p->direct_q) w->q = alloc_floats(p->max_seqlen_q, p->head_dim);
    if (!p->direct_k) w->k = alloc_floats(p->max_seqlen_k, p->head_dim);
    if (!p->direct_v) w->v = alloc_floats(p->max_seqlen_k, p->head_dim_v);
    if (!p->direct_o) w->o = alloc_floats(p->max_seqlen_q, p->head_dim_v);
    if (!w->scores || !w->inv_sum || (!p->direct_q && !w->q) || (!p->direct_k && !w->k) ||
        (!p->direct_v && !w->v) || (!p->direct_o && !w->o)) {
        free_scratch(w);
        return -1;
    }
    return 0;
}

/* rows x dim elements of dtype (row stride in elements) -> dense float32. */
static void rows_to_f32(const void *src, tileattn_dtype dtype, int64_t stride, int64_t rows,
                        int64_t dim, float *dst) {
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * dim;
        if (dtype == TILEATTN_F32) {
            memcpy(d, (const float *)src + r * stride, (size_t)dim * sizeof *d);
        } else if (dtype == TILEATTN_BF16) {
            const uint16_t *s = (const uint16_t *)src + r * stride;
            for (int64_t c = 0; c < dim; c++)
                d[c] = bench_bf16_to_f32(s[c]);
        } else {
            const uint16_t *s = (const uint16_t *)src + r * stride;
            for (int64_t c = 0; c < dim; c++)
                d[c] = bench_f16_to_f32(s[c]);
        }
    }
}

/* Where one (batch, head) pair's data lives, in float32 where sgemm reads
 * it (converted copies in the worker's scratch when the inputs are not
 * float32 rows sgemm can take). */
typedef struct pair_view {
    int64_t b, h, seqlen_q, seqlen_k;
    const char *q_base; /* the pair's first query row, in the input dtype */
    char *o_base;       /* the pair's first output row, in the input dtype */
    const float *k, *v;
    int64_t ldk, ldv;
    float *lse; /* the pair's LSE row, or NULL */
    bench_row_mask mask;
} pair_view;

/* Rows [r0, r1) of one pair: S rows, their softmax, O rows. */
static void attend_rows(const std_problem *p, const pair_view *pv, std_scratch *w, int64_t r0,
                        int64_t r1) {
    const tileattn_forward_args *a = p->args;
    const int64_t d = p->head_dim, dv = p->head_dim_v, sk = pv->seqlen_k, rows = r1 - r0;
    if (rows <= 0) return;
    const float *q;
    int64_t ldq;
    if (p->direct_q) {
        q = (const float *)pv->q_base + r0 * a->q.stride_s;
        ldq = a->q.stride_s;
    } else {
        rows_to_f32(pv->q_base + r0 * a->q.stride_s * (int64_t)p->elem_size, a->dtype,
                    a->q.stride_s, rows, d, w->q + r0 * d);
        q = w->q + r0 * d;
        ldq = d;
    }
    float *s = w->scores + r0 * sk;

    /* S = scale Q K^T: these rows of the whole Sq x Sk matrix. */
    bench_sgemm(1, rows, sk, d, p->scale, q, ldq, pv->k, pv->ldk, 0.0f, s, sk);
    bench_softmax_rows(&pv->mask, w->scores, sk, r0, r1, w->inv_sum, pv->lse);

    /* O = P V, then each row divided by its softmax denominator. */
    float *o;
    int64_t ldo;
    if (p->direct_o) {
        o = (float *)pv->o_base + r0 * a->o.stride_s;
        ldo = a->o.stride_s;
    } else {
        o = w->o + r0 * dv;
        ldo = dv;
    }
    bench_sgemm(0, rows, dv, sk, 1.0f, s, sk, pv->v, pv->ldv, 0.0f, o, ldo);
    for (int64_t i = 0; i < rows; i++) {
        float *o_row = o + i * ldo;
        const float inv = w->inv_sum[r0 + i];
        for (int64_t c = 0; c < dv; c++)
            o_row[c] *= inv;
    }
    if (p->direct_o) return;
    for (int64_t i = 0; i < rows; i++) { /* write O in its dtype and layout */
        const float *src = o + i * ldo;
        char *dst_row = pv->o_base + (r0 + i) * a->o.stride_s * (int64_t)p->elem_size;
        if (a->dtype == TILEATTN_F32) {
            memcpy(dst_row, src, (size_t)dv * sizeof(float));
        } else if (a->dtype == TILEATTN_BF16) {
            uint16_t *dst = (uint16_t *)dst_row;
            for (int64_t c = 0; c < dv; c++)
                dst[c] = bench_f32_to_bf16(src[c]);
        } else {
            uint16_t *dst = (uint16_t *)dst_row;
            for (int64_t c = 0; c < dv; c++)
                dst[c] = bench_f32_to_f16(src[c]);
        }
    }
}

/* One (batch, head) pair, start to finish; row_threads > 1 splits its query
 * rows over an OpenMP team. */
static void attend_pair(const std_problem *p, int64_t b, int64_t h, std_scratch *w,
                        int row_threads) {
    const tileattn_forward_args *a = p->args;
    const int64_t kvh = h / p->group;
    const int64_t elem = (int64_t)p->elem_size;
    pair_view pv = {.b = b, .h = h};
    const char *k_base, *v_base;
    int64_t q_row0 = 0; /* the pair's first query token (varlen) */
    if (p->varlen) {
        q_row0 = a->cu_seqlens_q[b];
        const int64_t k_row0 = a->cu_seqlens_k[b];
        pv.seqlen_q = (int64_t)a->cu_seqlens_q[b + 1] - q_row0;
        pv.seqlen_k = (int64_t)a->cu_seqlens_k[b + 1] - k_row0;
        pv.q_base = (const char *)a->q.data + (q_row0 * a->q.stride_s + h * a->q.stride_h) * elem;
        k_base = (const char *)a->k.data + (k_row0 * a->k.stride_s + kvh * a->k.stride_h) * elem;
        v_base = (const char *)a->v.data + (k_row0 * a->v.stride_s + kvh * a->v.stride_h) * elem;
        pv.o_base = (char *)a->o.data + (q_row0 * a->o.stride_s + h * a->o.stride_h) * elem;
    } else {
        pv.seqlen_q = a->seqlen_q;
        pv.seqlen_k = a->seqlen_k;
        pv.q_base = (const char *)a->q.data + (b * a->q.stride_b + h * a->q.stride_h) * elem;
        k_base = (const char *)a->k.data + (b * a->k.stride_b + kvh * a->k.stride_h) * elem;
        v_base = (const char *)a->v.data + (b * a->v.stride_b + kvh * a->v.stride_h) * elem;
        pv.o_base = (char *)a->o.data + (b * a->o.stride_b + h * a->o.stride_h) * elem;
    }
    const int64_t sq = pv.seqlen_q, sk = pv.seqlen_k, dv = p->head_dim_v;
    if (a->lse)
        pv.lse = p->varlen ? a->lse + h * p->total_q + q_row0 : a->lse + (b * p->heads + h) * sq;
    if (sq == 0) return;
    if (sk == 0) { /* no key at all: every row is O = 0 (sinks add no value) */
        for (int64_t i = 0; i < sq; i++) {
            memset(pv.o_base + i * a->o.stride_s * elem, 0, (size_t)(dv * elem));
            if (pv.lse) pv.lse[i] = a->sinks ? a->sinks[h] : -INFINITY;
        }
        return;
    }

    /* K and V once per pair (shared by every row block). */
    pv.k = (const float *)k_base;
    pv.v = (const float *)v_base;
    pv.ldk = a->k.stride_s;
    pv.ldv = a->v.stride_s;
    if (!p->direct_k) {
        rows_to_f32(k_base, a->dtype, a->k.stride_s, sk, p->head_dim, w->k);
        pv.k = w->k;
        pv.ldk = p->head_dim;
    }
    if (!p->direct_v) {
        rows_to_f32(v_base, a->dtype, a->v.stride_s, sk, dv, w->v);
        pv.v = w->v;
        pv.ldv = dv;
    }

    pv.mask = (bench_row_mask){
        .seqlen_k = sk,
        .offset = p->top_left ? 0 : sk - sq,
        .window_left = p->window_left,
        .window_right = p->window_right,
        .softcap = a->softcap,
        .has_alibi = a->alibi_slopes != NULL,
        .alibi_slope = a->alibi_slopes ? a->alibi_slopes[b * a->alibi_stride_b + h] : 0.0f,
        .bias_kind = a->bias ? a->bias_kind : TILEATTN_BIAS_NONE,
        .bias = NULL,
        .bias_dtype = a->bias_dtype,
        .bias_stride_q = a->bias_stride_q,
        .has_sink = a->sinks != NULL,
        .sink = a->sinks ? a->sinks[h] : 0.0f,
    };
    if (pv.mask.bias_kind != TILEATTN_BIAS_NONE) {
        const int64_t bias_elem = pv.mask.bias_kind == TILEATTN_BIAS_BOOL_MASK ? 1
                                  : a->bias_dtype == TILEATTN_F32              ? 4
                                                                               : 2;
        pv.mask.bias =
            (const char *)a->bias + (b * a->bias_stride_b + h * a->bias_stride_h) * bias_elem;
    }

    if (row_threads <= 1) {
        attend_rows(p, &pv, w, 0, sq);
        return;
    }
#pragma omp parallel num_threads(row_threads)
    {
        int t = 0, nt = 1;
#if TILEATTN_HAVE_OPENMP && defined(_OPENMP)
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        /* Equal row blocks: both sgemms cost the same for every row, masked
         * or not, and they dominate. */
        attend_rows(p, &pv, w, sq * t / nt, sq * (t + 1) / nt);
    }
}

tileattn_status bench_standard_attention(const tileattn_forward_args *args, int threads) {
    tileattn_status status = tileattn_validate(args);
    if (status != TILEATTN_OK) return status;
    std_problem p;
    status = resolve_problem(args, &p);
    if (status != TILEATTN_OK) return status;
    threads = resolve_threads(args, threads);
    const int64_t pairs = p.batch * p.heads;

    std_scratch scratch;
    if (alloc_scratch(&p, &scratch) != 0) return TILEATTN_ERR_OUT_OF_MEMORY;
    bench_blas_set_threads(1);
    for (int64_t pair = 0; pair < pairs; pair++)
        attend_pair(&p, pair / p.heads, pair % p.heads, &scratch, threads);
    free_scratch(&scratch);
    return TILEATTN_OK;
}
