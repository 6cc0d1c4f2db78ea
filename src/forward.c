/*
 * The FlashAttention-2 forward on a CPU: the loops around the microkernels.
 *
 * For each work item (batch, head, query tile) - Algorithm 1 of the paper:
 *   load the query tile Q_i (scaled) into L1/L2-resident workspace
 *   m_i = -inf, l_i = 0, O_i = 0                      (running max, sum, output)
 *   for each key tile j that the mask does not hide completely:
 *       pack K_j, V_j
 *       S  = Q_i K_j^T                                 (qk microkernel)
 *       S  = score modifications, mask on boundary tiles only
 *       P  = exp(S - m_new); l_i, m_i updated; O_i rescaled   (softmax microkernel)
 *       O_i += P V_j                                   (pv microkernel)
 *   O_i /= l_i;  LSE_i = m_i + log(l_i)
 * The Sq x Sk score matrix never exists: only one Br x Bc tile per thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "desc.h"
#include "mask.h"
#include "tileattn_config.h"
#include "ukernel.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif

/* One thread's scratch, carved from a single cache-line-aligned block. */
typedef struct workspace {
    float *q;       /* [block_q][D], already multiplied by scale */
    float *s;       /* [block_q][block_k] scores, then probabilities */
    float *o;       /* [block_q][Dv] unnormalised accumulator */
    float *row_max; /* [block_q] */
    float *row_sum; /* [block_q] */
    float *k_panel; /* packed K tile */
    float *v_panel; /* packed V tile */
} workspace;

static float *carve(float **cursor, int64_t floats) {
    float *p = *cursor;
    *cursor += (floats + 15) / 16 * 16;
    return p;
}

static workspace carve_workspace(const ta_desc *d, float *base) {
    workspace w;
    float *cur = base;
    w.q = carve(&cur, d->block_q * d->head_dim);
    w.s = carve(&cur, d->block_q * d->block_k);
    w.o = carve(&cur, d->block_q * d->head_dim_v);
    w.row_max = carve(&cur, d->block_q);
    w.row_sum = carve(&cur, d->block_q);
    w.k_panel = carve(&cur, d->uk->packed_k_floats(d->block_k, d->head_dim));
    w.v_panel = carve(&cur, d->uk->packed_v_floats(d->block_k, d->head_dim_v));
    return w;
}

/* Where one work item sits: its sequence and its query rows. */
typedef struct tile_position {
    int64_t b, h, kv_head;
    int64_t q_start, k_start; /* first token of the sequence on the token axis */
    int64_t seqlen_q, seqlen_k;
    int64_t i0, m; /* query rows [i0, i0 + m) of the sequence */
} tile_position;

/* Work items are numbered so that the longest rows come first: with a
 * causal mask the last query tiles see the most keys, and a dynamic
 * schedule then fills the tail with the short ones (FlashAttention-2's
 * balancing). */
static int locate_work_item(const ta_desc *d, const tileattn_forward_args *a, int64_t w,
                            tile_position *t) {
    int64_t heads = d->batch * d->heads_q;
    int64_t qt = d->num_q_tiles - 1 - w / heads;
    t->b = (w % heads) / d->heads_q;
    t->h = (w % heads) % d->heads_q;
    t->kv_head = t->h / d->group;
    if (d->varlen) {
        t->q_start = a->cu_seqlens_q[t->b];
        t->k_start = a->cu_seqlens_k[t->b];
        t->seqlen_q = a->cu_seqlens_q[t->b + 1] - t->q_start;
        t->seqlen_k = a->cu_seqlens_k[t->b + 1] - t->k_start;
    } else {
        t->q_start = t->k_start = 0;
        t->seqlen_q = d->seqlen_q;
        t->seqlen_k = d->seqlen_k;
    }
    t->i0 = qt * d->block_q;
    if (t->i0 >= t->seqlen_q) return 0; /* a short sequence of a varlen batch */
    t->m = t->seqlen_q - t->i0 < d->block_q ? t->seqlen_q - t->i0 : d->block_q;
    return 1;
}

static ta_window window_of(const ta_desc *d, const tile_position *t) {
    ta_window w = {d->top_left ? 0 : t->seqlen_k - t->seqlen_q, d->window_left, d->window_right,
                   t->seqlen_k};
    return w;
}

/* Softcap, ALiBi, bias and the per-element mask, applied to an m x n score
 * tile for queries [i0, i0+m) and keys [j0, j0+n) in the order the
 * semantics define. Called only when at least one of them is active. */
static void modify_scores(const ta_desc *d, const tileattn_forward_args *a, const tile_position *t,
                          const ta_window *win, int64_t j0, int64_t n, int per_element_mask,
                          float *s, int64_t lds) {
    float cap = d->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    float slope = d->has_alibi ? a->alibi_slopes[t->b * d->alibi_stride_b + t->h] : 0.0f;
    const char *bias = NULL;
    size_t bias_elem =
        d->bias_kind == TILEATTN_BIAS_BOOL_MASK ? 1 : tileattn_dtype_size(d->bias_dtype);
    if (d->bias_kind != TILEATTN_BIAS_NONE)
        bias = (const char *)a->bias +
               (size_t)(t->b * d->bias_stride[0] + t->h * d->bias_stride[1]) * bias_elem;
    for (int64_t r = 0; r < t->m; r++) {
        int64_t i = t->i0 + r;
        float *row = s + r * lds;
        const char *bias_row =
            bias ? bias + (size_t)(i * d->bias_stride[2] + j0) * bias_elem : NULL;
        for (int64_t c = 0; c < n; c++) {
            int64_t j = j0 + c;
            if (per_element_mask && !ta_key_visible(win, i, j)) {
                row[c] = -INFINITY;
                continue;
            }
            float x = row[c];
            if (cap > 0.0f) x = cap * tanhf(x * inv_cap);
            if (d->has_alibi) x -= slope * (float)llabs(i + win->offset - j);
            if (d->bias_kind == TILEATTN_BIAS_ADDITIVE)
                x += ta_load_f32(bias_row, d->bias_dtype, c);
            else if (d->bias_kind == TILEATTN_BIAS_BOOL_MASK && !bias_row[c])
                x = -INFINITY;
            row[c] = x;
        }
    }
}

/* Divides by the row sum, writes O in the output dtype and LSE. */
static void write_output(const ta_desc *d, const tileattn_forward_args *a, const tile_position *t,
                         const workspace *ws) {
    int64_t dv = d->head_dim_v;
    for (int64_t r = 0; r < t->m; r++) {
        int64_t token = t->q_start + t->i0 + r;
        int64_t o_off = t->b * d->o_stride[0] + token * d->o_stride[1] + t->h * d->o_stride[2];
        float sum = ws->row_sum[r];
        /* A row that saw no key has nothing to average: O = 0 (a sink alone
         * contributes no value), LSE = log of the denominator (or -inf). */
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const float *acc = ws->o + r * dv;
        for (int64_t c = 0; c < dv; c++)
            ta_store_f32(a->o.data, d->dtype, o_off + c, acc[c] * inv);
        if (a->lse) {
            float lse = sum > 0.0f ? ws->row_max[r] + logf(sum) : -INFINITY;
            int64_t lse_off = d->varlen ? t->h * a->cu_seqlens_q[d->batch] + token
                                        : (t->b * d->heads_q + t->h) * d->seqlen_q + token;
            a->lse[lse_off] = lse;
        }
    }
}

static void run_work_item(const ta_desc *d, const tileattn_forward_args *a, int64_t w,
                          const workspace *ws) {
    const ta_ukernels *uk = d->uk;
    tile_position t;
    if (!locate_work_item(d, a, w, &t)) return;
    ta_window win = window_of(d, &t);
    size_t es = tileattn_dtype_size(d->dtype);
    int64_t dk = d->head_dim, dv = d->head_dim_v, bk = d->block_k;

    const char *q = (const char *)a->q.data +
                    (size_t)(t.b * d->q_stride[0] + (t.q_start + t.i0) * d->q_stride[1] +
                             t.h * d->q_stride[2]) *
                        es;
    uk->load_rows(t.m, dk, q, d->dtype, d->q_stride[1], d->scale, ws->q, dk);

    /* A sink joins the softmax as one more logit with no value: start the
     * running max at it with a sum of exp(sink - sink) = 1. */
    float sink = d->has_sinks ? a->sinks[t.h] : -INFINITY;
    for (int64_t r = 0; r < t.m; r++) {
        ws->row_max[r] = sink;
        ws->row_sum[r] = d->has_sinks ? 1.0f : 0.0f;
    }
    memset(ws->o, 0, (size_t)(t.m * dv) * sizeof(float));

    int has_score_mods = d->softcap > 0.0f || d->has_alibi || d->bias_kind != TILEATTN_BIAS_NONE;
    int64_t first = ta_first_key(&win, t.i0), last = ta_last_key(&win, t.i0 + t.m - 1);
    const char *k_head =
        (const char *)a->k.data +
        (size_t)(t.b * d->k_stride[0] + t.k_start * d->k_stride[1] + t.kv_head * d->k_stride[2]) *
            es;
    const char *v_head =
        (const char *)a->v.data +
        (size_t)(t.b * d->v_stride[0] + t.k_start * d->v_stride[1] + t.kv_head * d->v_stride[2]) *
            es;
    for (int64_t j0 = first; j0 <= last; j0 += bk) {
        int64_t n = last + 1 - j0 < bk ? last + 1 - j0 : bk;
        ta_tile_kind kind = ta_classify_tile(&win, t.i0, t.m, j0, n);
        if (kind == TA_TILE_HIDDEN) continue;
        uk->pack_k(n, dk, k_head + (size_t)(j0 * d->k_stride[1]) * es, d->dtype, d->k_stride[1],
                   ws->k_panel);
        uk->pack_v(n, dv, v_head + (size_t)(j0 * d->v_stride[1]) * es, d->dtype, d->v_stride[1],
                   ws->v_panel);
        uk->qk(t.m, n, dk, ws->q, dk, ws->k_panel, ws->s, bk);
        if (has_score_mods || kind == TA_TILE_PARTIAL)
            modify_scores(d, a, &t, &win, j0, n, kind == TA_TILE_PARTIAL, ws->s, bk);
        uk->softmax(t.m, n, ws->s, bk, ws->row_max, ws->row_sum, ws->o, dv, dv);
        uk->pv(t.m, n, dv, ws->s, bk, ws->v_panel, ws->o, dv);
    }
    write_output(d, a, &t, ws);
}

/* Runs a planned description. Split from tileattn_forward so that a plan
 * can be made once and run many times. */
static tileattn_status run_forward(const ta_desc *d, const tileattn_forward_args *a) {
    size_t per_thread = d->workspace_floats;
    size_t bytes = per_thread * sizeof(float) * (size_t)d->num_threads;
    float *scratch = aligned_alloc(64, bytes ? bytes : 64);
    if (!scratch) return TILEATTN_ERR_OUT_OF_MEMORY;
    int64_t num_work = d->num_work;
#if TILEATTN_HAVE_OPENMP
#pragma omp parallel num_threads(d->num_threads)
    {
        workspace ws = carve_workspace(d, scratch + per_thread * (size_t)omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < num_work; w++)
            run_work_item(d, a, w, &ws);
    }
#else
    workspace ws = carve_workspace(d, scratch);
    for (int64_t w = 0; w < num_work; w++)
        run_work_item(d, a, w, &ws);
#endif
    free(scratch);
    return TILEATTN_OK;
}

tileattn_status tileattn_forward(const tileattn_forward_args *args) {
    tileattn_status st = tileattn_validate(args);
    if (st) return st;
    ta_desc desc;
    if ((st = ta_plan(args, &desc))) return st;
    return run_forward(&desc, args);
}
