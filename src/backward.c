/*
 * The FlashAttention-2 backward on a CPU: the loops around the backward's
 * microkernels (backward.h).
 *
 *   0. Delta_i = rowsum(dO_i o O_i) for every query row     (one pass, O(N))
 *   1. for each work item (batch, KV head, KV-tile group g), in parallel:
 *        for each key tile j of group g (tiles j = g, g + G, g + 2G, ...):
 *            pack K_j and V_j (the forward's K panels); dK_j = dV_j = 0
 *            for each query head h of the KV head's group, for each query
 *            tile i that the mask does not hide from tile j:
 *                S = Q_i K_j^T;  dP = dO_i V_j^T
 *                P = exp(S' - LSE_i);  dS = P o (dP - Delta_i)   (S' = final score)
 *                dV_j += P^T dO_i;  dK_j += scale dS^T Q_i
 *                dQacc[g, h, i] += scale dS K_j
 *            write dK_j, dV_j
 *   2. dQ = sum over g = 0, 1, ..., G-1 of dQacc[g]                (fixed order)
 *
 * Determinism without atomics: dK_j and dV_j belong to one work item and
 * are summed in a fixed (head, query tile) order; dQ's partial sums are
 * split by group g, each summed by one work item in increasing key-tile
 * order, then added in increasing g. G depends only on the shapes, never on
 * the number of threads, so results are bitwise identical for any
 * num_threads. Memory: per thread one key tile's panels and accumulators
 * and one query tile; globally Delta (B H Sq floats) and G float32 copies
 * of dQ (G <= 8), all O(N).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "convert.h"
#include "desc.h"
#include "mask.h"
#include "plan_util.h"
#include "threads.h"
#include "tileattn_config.h"
#include "topology.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif

enum {
    /* Tiles: multiples of the gemm's register block (8 rows x 32 columns).
     * Measured at D = 128 on Zen 4 (1 MiB L2): block_k 128 x block_q 64 beat
     * 64 x 64 and 256 x 32; larger tiles only add edge waste. */
    MAX_BLOCK_K = 128,
    MAX_BLOCK_Q = 64,
    MIN_BLOCK_K = 32,
    MIN_BLOCK_Q = 8,
    /* Work items wanted from the KV-tile groups when batch x KV heads is
     * small, and the most groups (copies of the float32 dQ accumulator). */
    TARGET_WORK_ITEMS = 32,
    MAX_GROUPS = 8,
};

/* The problem, normalised, and how it is split. */
typedef struct bwd_plan {
    int64_t batch, heads_q, heads_kv, group, d, dv;
    tileattn_dtype dtype;
    size_t elem;
    int varlen;
    int64_t seqlen_q, seqlen_k; /* longest sequences for varlen */
    int64_t rows_q;             /* query rows over the batch: B Sq, or total_q */
    float scale, softcap;
    int64_t window_left, window_right;
    int top_left;
    int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3], do_stride[3];
    int64_t dq_stride[3], dk_stride[3], dv_stride[3];

    int64_t block_q, block_k;
    int64_t num_k_tiles, num_groups, num_work;
    int num_threads;
    int place_threads;                      /* one thread per core (threads.h) */
    int64_t k_panel_floats, v_panel_floats; /* the forward's packed K and V tiles */
    size_t workspace_floats;                /* per thread */
} bwd_plan;

/* ------------------------------------------------------------ validation */

/* An input view fits; an output view also writes no element twice. */
static tileattn_status check_view(const int64_t n[3], const int64_t stride[3], int64_t dim,
                                  size_t elem, int injective) {
    tileattn_status st = ta_check_view(n, stride, dim, elem);
    if (st) return st;
    if (injective && !ta_view_is_injective(n, stride, dim)) return TILEATTN_ERR_SHAPE_MISMATCH;
    return TILEATTN_OK;
}

static void strides_of(const tileattn_tensor *t, int varlen, int64_t out[3]) {
    out[0] = varlen ? 0 : t->stride_b;
    out[1] = t->stride_s;
    out[2] = t->stride_h;
}

static void strides_of_out(const tileattn_tensor_out *t, int varlen, int64_t out[3]) {
    out[0] = varlen ? 0 : t->stride_b;
    out[1] = t->stride_s;
    out[2] = t->stride_h;
}

void tileattn_backward_args_init(tileattn_backward_args *args) {
    if (!args) return;
    memset(args, 0, sizeof *args);
    tileattn_forward_args_init(&args->fwd);
}

tileattn_status tileattn_validate_backward(const tileattn_backward_args *args) {
    if (!args) return TILEATTN_ERR_NULL_POINTER;
    /* The forward's checks, with O's strides in the forward's output view
     * but no data pointer: that bounds O's offsets without asking it to be
     * injective, which an input (here O may have any strides) need not be. */
    tileattn_forward_args fwd = args->fwd;
    fwd.o = (tileattn_tensor_out){NULL, args->o.stride_b, args->o.stride_s, args->o.stride_h};
    fwd.lse = NULL;
    tileattn_status st = ta_validate(&fwd, TA_VALIDATE_KERNEL);
    if (st) return st;
    if (!args->o.data || !args->d_o.data || !args->lse || !args->dq.data || !args->dk.data ||
        !args->dv.data)
        return TILEATTN_ERR_NULL_POINTER;
    if (args->d_sinks && !fwd.sinks) return TILEATTN_ERR_BAD_VALUE;
    const ta_buffer bufs[10] = {{args->dq.data, 1}, {args->dk.data, 1}, {args->dv.data, 1},
                                {args->d_sinks, 1}, {fwd.q.data, 0},    {fwd.k.data, 0},
                                {fwd.v.data, 0},    {args->o.data, 0},  {args->d_o.data, 0},
                                {args->lse, 0}};
    if (!ta_no_buffer_passed_twice(bufs, 10)) return TILEATTN_ERR_SHAPE_MISMATCH;

    int varlen = fwd.cu_seqlens_q != NULL;
    int64_t batch = varlen ? 1 : fwd.batch;
    int64_t rows_q = varlen ? fwd.cu_seqlens_q[fwd.batch] : fwd.seqlen_q;
    int64_t rows_k = varlen ? fwd.cu_seqlens_k[fwd.batch] : fwd.seqlen_k;
    if (rows_q == 0) rows_q = 1; /* nothing is touched, but keep extents positive */
    if (rows_k == 0) rows_k = 1;
    int64_t d = fwd.head_dim, dv = fwd.head_dim_v ? fwd.head_dim_v : d;
    size_t es = tileattn_dtype_size(fwd.dtype);
    int64_t nq[3] = {batch, rows_q, fwd.heads_q}, nk[3] = {batch, rows_k, fwd.heads_kv};
    int64_t s[3];
    strides_of(&args->d_o, varlen, s);
    if ((st = check_view(nq, s, dv, es, 0))) return st;
    strides_of_out(&args->dq, varlen, s);
    if ((st = check_view(nq, s, d, es, 1))) return st;
    strides_of_out(&args->dk, varlen, s);
    if ((st = check_view(nk, s, d, es, 1))) return st;
    strides_of_out(&args->dv, varlen, s);
    if ((st = check_view(nk, s, dv, es, 1))) return st;
    return TILEATTN_OK;
}

/* --------------------------------------------------------------- planning */

static void plan_backward(const tileattn_backward_args *args, const ta_ukernels *scores,
                          bwd_plan *p) {
    const tileattn_forward_args *a = &args->fwd;
    *p = (bwd_plan){0};
    p->batch = a->batch;
    p->heads_q = a->heads_q;
    p->heads_kv = a->heads_kv;
    p->group = a->heads_q / a->heads_kv;
    p->d = a->head_dim;
    p->dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    p->dtype = a->dtype;
    p->elem = tileattn_dtype_size(a->dtype);
    p->varlen = a->cu_seqlens_q != NULL;
    p->seqlen_q = a->seqlen_q;
    p->seqlen_k = a->seqlen_k;
    p->rows_q = a->batch * a->seqlen_q;
    if (p->varlen) {
        p->seqlen_q = p->seqlen_k = 0;
        for (int64_t b = 0; b < a->batch; b++) {
            int64_t lq = (int64_t)a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
            int64_t lk = (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
            if (lq > p->seqlen_q) p->seqlen_q = lq;
            if (lk > p->seqlen_k) p->seqlen_k = lk;
        }
        p->rows_q = a->cu_seqlens_q[a->batch];
    }
    p->scale = a->scale > 0.0f ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    p->softcap = a->softcap;
    p->window_left = a->window_left;
    p->window_right = a->causal != TILEATTN_CAUSAL_NONE ? 0 : a->window_right;
    p->top_left = a->causal == TILEATTN_CAUSAL_TOP_LEFT;
    strides_of(&a->q, p->varlen, p->q_stride);
    strides_of(&a->k, p->varlen, p->k_stride);
    strides_of(&a->v, p->varlen, p->v_stride);
    strides_of(&args->o, p->varlen, p->o_stride);
    strides_of(&args->d_o, p->varlen, p->do_stride);
    strides_of_out(&args->dq, p->varlen, p->dq_stride);
    strides_of_out(&args->dk, p->varlen, p->dk_stride);
    strides_of_out(&args->dv, p->varlen, p->dv_stride);

    /* Tiles from L2 (per core): a key tile's rows, panels and accumulators
     * (K, the K and V panels, dK, dV: block_k (3 D + 2 Dv) floats) take half
     * of it, the query tile (Q, dO, S, dP and the bias tile) a quarter. */
    const ta_topology *topo = ta_topology_get();
    int64_t l2_floats = (int64_t)(topo->l2_bytes / sizeof(float));
    int64_t sk = p->seqlen_k > 0 ? p->seqlen_k : 1, sq = p->seqlen_q > 0 ? p->seqlen_q : 1;
    int64_t bk = ta_round_down(l2_floats / 2 / (3 * p->d + 2 * p->dv), 32);
    bk = ta_clamp(bk, MIN_BLOCK_K, MAX_BLOCK_K);
    p->block_k = bk < ta_round_up(sk, 16) ? bk : ta_round_up(sk, 16);
    int64_t bq = ta_round_down(l2_floats / 4 / (p->d + p->dv + 3 * p->block_k), 8);
    bq = ta_clamp(bq, MIN_BLOCK_Q, MAX_BLOCK_Q);
    p->block_q = bq < ta_round_up(sq, 8) ? bq : ta_round_up(sq, 8);

    /* Groups of key tiles: from the shapes only (never the thread count),
     * so that dQ's summation order - and its bits - do not depend on it. */
    p->num_k_tiles = (p->seqlen_k + p->block_k - 1) / p->block_k;
    int64_t heads = p->batch * p->heads_kv;
    int64_t groups = (TARGET_WORK_ITEMS + heads - 1) / heads;
    groups = groups < p->num_k_tiles ? groups : p->num_k_tiles;
    p->num_groups = ta_clamp(groups, 1, MAX_GROUPS);
    p->num_work = heads * p->num_groups;

    int threads = ta_team_size(a->num_threads);
    if (threads > p->num_work) threads = (int)p->num_work;
    p->num_threads = threads > 0 ? threads : 1;

    int64_t bq_ = p->block_q, bk_ = p->block_k;
    p->k_panel_floats = scores->packed_k_floats(bk_, p->d);
    p->v_panel_floats = scores->packed_k_floats(bk_, p->dv);
    p->workspace_floats = ta_pad_floats(bk_ * p->d) + ta_pad_floats(p->k_panel_floats) +
                          ta_pad_floats(p->v_panel_floats) + ta_pad_floats(bk_ * p->d) +
                          ta_pad_floats(bk_ * p->dv) + ta_pad_floats(bq_ * p->d) +
                          ta_pad_floats(bq_ * p->dv) + 3 * ta_pad_floats(bq_ * bk_) +
                          2 * ta_pad_floats(bq_) + ta_pad_floats(bq_ * p->d);
}

/* ------------------------------------------------------------ the driver */

/* One thread's scratch. */
typedef struct workspace {
    float *k;       /* [block_k][D]  K tile, row form (for dQ += dS K) */
    float *k_panel; /* K as the forward's pack_k packs it (for S = Q K^T) */
    float *v_panel; /* V packed the same way (for dP = dO V^T) */
    float *dk;      /* [block_k][D]  dK accumulator */
    float *dv;      /* [block_k][Dv] dV accumulator */
    float *q;       /* [block_q][D]  Q tile converted to float32 */
    float *d_o;     /* [block_q][Dv] dO tile converted to float32 */
    float *s;       /* [block_q][block_k] S, then P */
    float *dp;      /* [block_q][block_k] dP, then dS */
    float *bias;    /* [block_q][block_k] the bias tile as float32 */
    float *lse;     /* [block_q] */
    float *delta;   /* [block_q] */
    float *dq;      /* [block_q][D]  this step's dS K, before it joins dQ */
} workspace;

static float *carve(float **cursor, int64_t floats) {
    float *p = *cursor;
    *cursor += ta_pad_floats(floats);
    return p;
}

static workspace carve_workspace(const bwd_plan *p, float *base) {
    workspace w;
    float *cur = base;
    int64_t bq = p->block_q, bk = p->block_k;
    w.k = carve(&cur, bk * p->d);
    w.k_panel = carve(&cur, p->k_panel_floats);
    w.v_panel = carve(&cur, p->v_panel_floats);
    w.dk = carve(&cur, bk * p->d);
    w.dv = carve(&cur, bk * p->dv);
    w.q = carve(&cur, bq * p->d);
    w.d_o = carve(&cur, bq * p->dv);
    w.s = carve(&cur, bq * bk);
    w.dp = carve(&cur, bq * bk);
    w.bias = carve(&cur, bq * bk);
    w.lse = carve(&cur, bq);
    w.delta = carve(&cur, bq);
    w.dq = carve(&cur, bq * p->d);
    return w;
}

/* One sequence of the batch. */
typedef struct sequence {
    int64_t b, q_start, k_start, seqlen_q, seqlen_k;
    ta_window window;
} sequence;

static sequence sequence_of(const bwd_plan *p, const tileattn_forward_args *a, int64_t b) {
    sequence s = {b, 0, 0, p->seqlen_q, p->seqlen_k, {0, 0, 0, 0}};
    if (p->varlen) {
        s.q_start = a->cu_seqlens_q[b];
        s.k_start = a->cu_seqlens_k[b];
        s.seqlen_q = a->cu_seqlens_q[b + 1] - s.q_start;
        s.seqlen_k = a->cu_seqlens_k[b + 1] - s.k_start;
    }
    s.window = (ta_window){p->top_left ? 0 : s.seqlen_k - s.seqlen_q, p->window_left,
                           p->window_right, s.seqlen_k};
    return s;
}

/* Row of LSE / Delta / the dQ accumulator of query i of sequence s, head h:
 * LSE's own layout, [B, H, Sq] or [H, total_q]. */
static int64_t lse_index(const bwd_plan *p, const sequence *s, int64_t h, int64_t i) {
    return p->varlen ? h * p->rows_q + s->q_start + i : (s->b * p->heads_q + h) * p->seqlen_q + i;
}

/* Element offset of (b, token, head) in a view with strides st. */
static int64_t offset(const int64_t st[3], int64_t b, int64_t token, int64_t head) {
    return b * st[0] + token * st[1] + head * st[2];
}

/* Rows of a [.., S, H, dim] tensor as float32 [rows][dim]; float32 rows
 * that are already adjacent are returned in place (*ld = dim). Rows H x D
 * apart are copied even in float32: read in place, a tile's rows fall in a
 * few of L1's sets (2 KiB apart at H = 4, D = 128), evict each other, and
 * the GEMMs that stream them ran 1.5x slower than those reading a copy. */
static const float *rows_as_f32(const void *base, tileattn_dtype dtype, int64_t off, int64_t stride,
                                int64_t rows, int64_t dim, float *buf, int64_t *ld) {
    if (dtype == TILEATTN_F32 && (stride == dim || rows == 1)) {
        *ld = dim;
        return (const float *)base + off;
    }
    if (dtype == TILEATTN_F32) {
        for (int64_t r = 0; r < rows; r++)
            memcpy(buf + r * dim, (const float *)base + off + r * stride,
                   (size_t)dim * sizeof(float));
        *ld = dim;
        return buf;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < dim; c++)
            buf[r * dim + c] = ta_load_f32(base, dtype, off + r * stride + c);
    *ld = dim;
    return buf;
}

/* The bias (or boolean mask) of a tile as float32 scores to add. */
static void load_bias_tile(const tileattn_forward_args *a, const sequence *s, int64_t h, int64_t i0,
                           int64_t m, int64_t j0, int64_t n, float *tile, int64_t ld) {
    for (int64_t r = 0; r < m; r++) {
        int64_t base =
            s->b * a->bias_stride_b + h * a->bias_stride_h + (i0 + r) * a->bias_stride_q + j0;
        for (int64_t c = 0; c < n; c++) {
            if (a->bias_kind == TILEATTN_BIAS_BOOL_MASK)
                tile[r * ld + c] = ((const unsigned char *)a->bias)[base + c] ? 0.0f : -INFINITY;
            else
                tile[r * ld + c] = ta_load_f32(a->bias, a->bias_dtype, base + c);
        }
    }
}

typedef struct bwd_run {
    const bwd_plan *plan;
    const tileattn_backward_args *args;
    const ta_bwd_kernels *kernels;
    const float *delta; /* in LSE's layout */
    float *dq_acc;      /* [groups][H][rows_q][D] */
} bwd_run;

/* One (query tile, key tile) step for query head h: Algorithm 2's body. */
static void tile_step(const bwd_run *run, const sequence *s, int64_t h, int64_t i0, int64_t m,
                      int64_t j0, int64_t n, int per_element_mask, int64_t group,
                      const float *k_rows, int64_t ldk, const workspace *ws) {
    const bwd_plan *p = run->plan;
    const tileattn_forward_args *a = &run->args->fwd;
    const ta_bwd_kernels *kr = run->kernels;
    int64_t bk = p->block_k, d = p->d, dv = p->dv;

    int64_t ldq, lddo;
    const float *q = rows_as_f32(a->q.data, p->dtype, offset(p->q_stride, s->b, s->q_start + i0, h),
                                 p->q_stride[1], m, d, ws->q, &ldq);
    const float *d_o =
        rows_as_f32(run->args->d_o.data, p->dtype, offset(p->do_stride, s->b, s->q_start + i0, h),
                    p->do_stride[1], m, dv, ws->d_o, &lddo);
    int64_t row = lse_index(p, s, h, i0);

    ta_bwd_tile t = {
        .m = m,
        .n = n,
        .i0 = i0,
        .j0 = j0,
        .scale = p->scale,
        .softcap = p->softcap,
        .alibi_slope = a->alibi_slopes ? a->alibi_slopes[s->b * a->alibi_stride_b + h] : 0.0f,
        .per_element_mask = per_element_mask,
        .window = s->window,
        .bias = NULL,
        .ldb = bk,
        .lse = run->args->lse + row,
        .delta = run->delta + row,
    };
    if (a->bias_kind != TILEATTN_BIAS_NONE) {
        load_bias_tile(a, s, h, i0, m, j0, n, ws->bias, bk);
        t.bias = ws->bias;
    }

    kr->scores->qk(m, n, d, q, ldq, ws->k_panel, 1.0f, ws->s, bk);      /* S  = Q K^T  */
    kr->scores->qk(m, n, dv, d_o, lddo, ws->v_panel, 1.0f, ws->dp, bk); /* dP = dO V^T */
    kr->grad_scores(&t, ws->s, ws->dp, bk);                             /* P, dS       */
    kr->gemm(n, dv, m, ws->s, 1, bk, d_o, lddo, ws->dv, dv, 1);         /* dV += P^T dO */
    kr->gemm(n, d, m, ws->dp, 1, bk, q, ldq, ws->dk, d, 1);             /* dK += dS^T Q */
    float *dq = run->dq_acc + ((group * p->heads_q + h) * p->rows_q +
                               (p->varlen ? s->q_start : s->b * p->seqlen_q) + i0) *
                                  d;
    /* dQ += dS K through a tile in L1: accumulating into dq_acc directly
     * waited on its rows (out of L2 across the key tiles) at the start of
     * every register block, and made this the slowest of the five GEMMs
     * (2x the others); the sum below streams them instead. */
    kr->gemm(m, d, n, ws->dp, bk, 1, k_rows, ldk, ws->dq, d, 0); /* dS K */
    for (int64_t i = 0; i < m * d; i++)
        dq[i] += ws->dq[i];
}

static void store_rows(void *base, tileattn_dtype dtype, int64_t off, int64_t stride, int64_t rows,
                       int64_t dim, const float *src) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < dim; c++)
            ta_store_f32(base, dtype, off + r * stride + c, src[r * dim + c]);
}

/* Work item w: (sequence b, KV head, key-tile group). */
static void run_work_item(const bwd_run *run, int64_t w, const workspace *ws) {
    const bwd_plan *p = run->plan;
    const tileattn_backward_args *args = run->args;
    const tileattn_forward_args *a = &args->fwd;
    int64_t group = w % p->num_groups;
    int64_t kv_head = (w / p->num_groups) % p->heads_kv;
    int64_t b = w / p->num_groups / p->heads_kv;
    sequence s = sequence_of(p, a, b);
    int64_t bk = p->block_k, bq = p->block_q, d = p->d, dv = p->dv;

    for (int64_t kt = group; kt * bk < s.seqlen_k; kt += p->num_groups) {
        int64_t j0 = kt * bk, n = s.seqlen_k - j0 < bk ? s.seqlen_k - j0 : bk;
        int64_t k_off = offset(p->k_stride, b, s.k_start + j0, kv_head);
        int64_t v_off = offset(p->v_stride, b, s.k_start + j0, kv_head);
        /* K and V packed for the forward's qk (float32, whatever the
         * input dtype); K's rows as float32 for dQ. */
        const ta_ukernels *sc = run->kernels->scores;
        sc->pack_k(n, d, (const char *)a->k.data + k_off * (ptrdiff_t)p->elem, p->dtype,
                   p->k_stride[1], ws->k_panel);
        sc->pack_k(n, dv, (const char *)a->v.data + v_off * (ptrdiff_t)p->elem, p->dtype,
                   p->v_stride[1], ws->v_panel);
        int64_t ldk;
        const float *k_rows =
            rows_as_f32(a->k.data, p->dtype, k_off, p->k_stride[1], n, d, ws->k, &ldk);
        memset(ws->dk, 0, (size_t)(n * d) * sizeof(float));
        memset(ws->dv, 0, (size_t)(n * dv) * sizeof(float));

        for (int64_t h = kv_head * p->group; h < (kv_head + 1) * p->group; h++)
            for (int64_t i0 = 0; i0 < s.seqlen_q; i0 += bq) {
                int64_t m = s.seqlen_q - i0 < bq ? s.seqlen_q - i0 : bq;
                ta_tile_kind kind = ta_classify_tile(&s.window, i0, m, j0, n);
                if (kind == TA_TILE_HIDDEN) continue;
                tile_step(run, &s, h, i0, m, j0, n, kind == TA_TILE_PARTIAL, group, k_rows, ldk,
                          ws);
            }

        store_rows(args->dk.data, p->dtype, offset(p->dk_stride, b, s.k_start + j0, kv_head),
                   p->dk_stride[1], n, d, ws->dk);
        store_rows(args->dv.data, p->dtype, offset(p->dv_stride, b, s.k_start + j0, kv_head),
                   p->dv_stride[1], n, dv, ws->dv);
    }
}

/* Step 0: Delta = rowsum(dO o O), in LSE's layout, summed in double. */
static void compute_delta(const bwd_run *run, float *delta, int64_t b, int64_t h) {
    const bwd_plan *p = run->plan;
    const tileattn_backward_args *args = run->args;
    sequence s = sequence_of(p, &args->fwd, b);
    for (int64_t i = 0; i < s.seqlen_q; i++) {
        int64_t oo = offset(p->o_stride, b, s.q_start + i, h);
        int64_t od = offset(p->do_stride, b, s.q_start + i, h);
        double sum = 0.0;
        for (int64_t c = 0; c < p->dv; c++)
            sum += (double)ta_load_f32(args->o.data, p->dtype, oo + c) *
                   ta_load_f32(args->d_o.data, p->dtype, od + c);
        delta[lse_index(p, &s, h, i)] = (float)sum;
    }
}

/* Step 2: dQ of one (sequence, head) = the groups' partial sums in order. */
static void reduce_dq(const bwd_run *run, int64_t b, int64_t h) {
    const bwd_plan *p = run->plan;
    const tileattn_backward_args *args = run->args;
    sequence s = sequence_of(p, &args->fwd, b);
    int64_t first_row = p->varlen ? s.q_start : b * p->seqlen_q;
    size_t group_stride = (size_t)(p->heads_q * p->rows_q * p->d);
    for (int64_t i = 0; i < s.seqlen_q; i++) {
        const float *acc = run->dq_acc + ((h * p->rows_q) + first_row + i) * p->d;
        int64_t off = offset(p->dq_stride, b, s.q_start + i, h);
        for (int64_t c = 0; c < p->d; c++) {
            float sum = acc[c];
            for (int64_t g = 1; g < p->num_groups; g++)
                sum += acc[(size_t)g * group_stride + (size_t)c];
            ta_store_f32(args->dq.data, p->dtype, off + c, sum);
        }
    }
}

/* d sink_h = -sum over rows of exp(sink_h - LSE) Delta: the sink's
 * probability times (its dP, which is 0 as it has no value, minus Delta). */
static void compute_d_sinks(const bwd_run *run) {
    const bwd_plan *p = run->plan;
    const tileattn_backward_args *args = run->args;
    for (int64_t h = 0; h < p->heads_q; h++) {
        double sum = 0.0;
        for (int64_t b = 0; b < p->batch; b++) {
            sequence s = sequence_of(p, &args->fwd, b);
            for (int64_t i = 0; i < s.seqlen_q; i++) {
                int64_t row = lse_index(p, &s, h, i);
                sum += exp((double)args->fwd.sinks[h] - args->lse[row]) * run->delta[row];
            }
        }
        args->d_sinks[h] = (float)-sum;
    }
}

tileattn_status ta_backward_with(const tileattn_backward_args *args,
                                 const ta_bwd_kernels *kernels) {
    tileattn_status st = tileattn_validate_backward(args);
    if (st) return st;
    bwd_plan plan;
    plan_backward(args, kernels->scores, &plan);
    const char *place_reason;
    if ((st = ta_choose_placement(plan.num_threads, &plan.place_threads, &place_reason))) return st;

    /* Everything is allocated before anything is written. calloc leaves
     * the dQ groups' pages untouched until a tile adds to them. */
    size_t lse_rows = (size_t)(plan.heads_q * plan.rows_q);
    size_t acc_floats = (size_t)plan.num_groups * lse_rows * (size_t)plan.d;
    size_t ws_bytes = plan.workspace_floats * sizeof(float) * (size_t)plan.num_threads;
    float *delta = malloc((lse_rows ? lse_rows : 1) * sizeof(float));
    float *dq_acc = calloc(acc_floats ? acc_floats : 1, sizeof(float));
    float *scratch = aligned_alloc(64, ws_bytes);
    if (!delta || !dq_acc || !scratch) {
        free(delta);
        free(dq_acc);
        free(scratch);
        return TILEATTN_ERR_OUT_OF_MEMORY;
    }
    bwd_run run = {&plan, args, kernels, delta, dq_acc};
    int64_t heads = plan.batch * plan.heads_q, num_work = plan.num_work;

#if TILEATTN_HAVE_OPENMP
    int placed = ta_team_claim(plan.place_threads);
#pragma omp parallel num_threads(plan.num_threads)
    {
        ta_thread_binding binding;
        ta_thread_bind(placed, omp_get_thread_num(), &binding);
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < heads; bh++)
            compute_delta(&run, delta, bh / plan.heads_q, bh % plan.heads_q);
        workspace ws =
            carve_workspace(&plan, scratch + plan.workspace_floats * (size_t)omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < num_work; w++)
            run_work_item(&run, w, &ws);
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < heads; bh++)
            reduce_dq(&run, bh / plan.heads_q, bh % plan.heads_q);
        ta_thread_unbind(&binding);
    }
    ta_team_release(placed);
#else
    for (int64_t bh = 0; bh < heads; bh++)
        compute_delta(&run, delta, bh / plan.heads_q, bh % plan.heads_q);
    workspace ws = carve_workspace(&plan, scratch);
    for (int64_t w = 0; w < num_work; w++)
        run_work_item(&run, w, &ws);
    for (int64_t bh = 0; bh < heads; bh++)
        reduce_dq(&run, bh / plan.heads_q, bh % plan.heads_q);
#endif
    if (args->d_sinks) compute_d_sinks(&run);
    free(scratch);
    free(dq_acc);
    free(delta);
    return TILEATTN_OK;
}

tileattn_status tileattn_backward(const tileattn_backward_args *args) {
    tileattn_status st = tileattn_validate_backward(args);
    if (st) return st;
    const ta_bwd_kernels *kernels = ta_bwd_kernels_select(&st);
    if (st) return st;
    return ta_backward_with(args, kernels);
}
