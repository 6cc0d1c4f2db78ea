/*
 * The FlashAttention-2 forward on a CPU: the loops around the microkernels.
 *
 * For each work item (batch, head, block of block_q query rows) - Algorithm 1
 * of the paper, with the K/V loop hoisted over the item's query sub-tiles:
 *   load the item's queries Q into L2-resident workspace (the table's layout)
 *   m = -inf, l = 0, O = 0                      (running max, sum, output)
 *   for each K/V block j (block_k keys) that the mask does not hide:
 *       pack K_j, V_j once                       (shared by every sub-tile)
 *       for each sub-tile Q_i (block_r rows) that sees some of block j:
 *           S  = scale Q_i K_j^T                 (qk microkernel)
 *           S  = score modifications; the mask per element on boundary tiles only
 *           P  = exp(S - m_new); l_i, m_i updated; O_i rescaled   (softmax microkernel)
 *           O_i += P V_j                         (pv microkernel)
 *   O /= l;  LSE = m + log(l)
 * The Sq x Sk score matrix never exists: only one block_r x block_k tile per
 * thread. Why two levels: packing K_j (a transpose) and V_j costs about as
 * much per key as a dozen query rows of FMAs, so a packed block must serve
 * many rows (block_q, sized to L2), while S stays small (block_r, sized to
 * L1) so that qk, softmax and pv hand it to each other in L1.
 * On the mask's boundary the sub-tile is cut into register blocks of mr rows
 * and each one stops at its own last visible key, so a causal diagonal wastes
 * about mr/2 keys per row instead of block_k/2.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "desc.h"
#include "mask.h"
#include "threads.h"
#include "tileattn_config.h"
#include "ukernel.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif

/* One thread's scratch, carved from a single cache-line-aligned block. */
typedef struct workspace {
    float *q;       /* [block_q][D]: Q rows as the table's load_rows writes them */
    float *s;       /* [block_r][block_k] scores, then probabilities */
    float *o;       /* [block_q][Dv] unnormalised accumulator */
    float *row_max; /* [block_q] */
    float *row_sum; /* [block_q] */
    float *k_panel; /* packed K block */
    float *v_panel; /* packed V block */
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
    w.s = carve(&cur, d->block_r * d->block_k);
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

/* Softcap, ALiBi and bias, applied to an m x n score tile for queries
 * [i0, i0+m) and keys [j0, j0+n) in the order the semantics define. Called
 * only when at least one of them is active. */
static void modify_scores(const ta_desc *d, const tileattn_forward_args *a, const tile_position *t,
                          const ta_window *win, int64_t i0, int64_t m, int64_t j0, int64_t n,
                          float *s, int64_t lds) {
    float cap = d->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    float slope = d->has_alibi ? a->alibi_slopes[t->b * d->alibi_stride_b + t->h] : 0.0f;
    const char *bias = NULL;
    size_t bias_elem =
        d->bias_kind == TILEATTN_BIAS_BOOL_MASK ? 1 : tileattn_dtype_size(d->bias_dtype);
    if (d->bias_kind != TILEATTN_BIAS_NONE)
        bias = (const char *)a->bias +
               (ptrdiff_t)(t->b * d->bias_stride[0] + t->h * d->bias_stride[1]) * bias_elem;
    for (int64_t r = 0; r < m; r++) {
        int64_t i = i0 + r;
        float *row = s + r * lds;
        const char *bias_row =
            bias ? bias + (ptrdiff_t)(i * d->bias_stride[2] + j0) * bias_elem : NULL;
        for (int64_t c = 0; c < n; c++) {
            int64_t j = j0 + c;
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

/* The window mask on a boundary tile: each row's visible keys form one
 * interval, so the hidden ones are two runs set to -inf (exp gives 0). */
static void mask_scores(const ta_window *win, int64_t i0, int64_t m, int64_t j0, int64_t n,
                        float *s, int64_t lds) {
    for (int64_t r = 0; r < m; r++) {
        float *row = s + r * lds;
        int64_t lo = ta_first_key(win, i0 + r) - j0, hi = ta_last_key(win, i0 + r) - j0;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
        if (hi < lo) lo = hi = n; /* nothing visible: hide the whole row */
        for (int64_t c = 0; c < lo; c++)
            row[c] = -INFINITY;
        for (int64_t c = hi + 1; c < n; c++)
            row[c] = -INFINITY;
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
        if (d->dtype == TILEATTN_F32) { /* a loop the compiler vectorizes */
            float *out = (float *)a->o.data + o_off;
            for (int64_t c = 0; c < dv; c++)
                out[c] = acc[c] * inv;
        } else {
            for (int64_t c = 0; c < dv; c++)
                ta_store_f32(a->o.data, d->dtype, o_off + c, acc[c] * inv);
        }
        if (a->lse) {
            float lse = sum > 0.0f ? ws->row_max[r] + logf(sum) : -INFINITY;
            int64_t lse_off = d->varlen ? t->h * a->cu_seqlens_q[d->batch] + token
                                        : (t->b * d->heads_q + t->h) * d->seqlen_q + token;
            a->lse[lse_off] = lse;
        }
    }
}

/* What one (query rows x K/V block) update needs besides its rows. */
typedef struct block_ctx {
    const ta_desc *d;
    const tileattn_forward_args *a;
    const tile_position *t;
    const ta_window *win;
    const workspace *ws;
    int has_score_mods;
    int64_t j0; /* first key of the packed block */
} block_ctx;

/* Lines 8-10 of Algorithm 1 for rows [r0, r0+m) of the item (0-based in the
 * item) against the first n keys of the packed block. */
static void update_rows(const block_ctx *x, int64_t r0, int64_t m, int64_t n, int mask) {
    const ta_desc *d = x->d;
    const ta_ukernels *uk = d->uk;
    const workspace *ws = x->ws;
    int64_t dk = d->head_dim, dv = d->head_dim_v, lds = d->block_k;
    int64_t i0 = x->t->i0 + r0; /* first query row, in the sequence */
    uk->qk(m, n, dk, ws->q + r0 * dk, dk, ws->k_panel, d->scale, ws->s, lds);
    if (x->has_score_mods) modify_scores(d, x->a, x->t, x->win, i0, m, x->j0, n, ws->s, lds);
    if (mask) mask_scores(x->win, i0, m, x->j0, n, ws->s, lds);
    uk->softmax(m, n, ws->s, lds, ws->row_max + r0, ws->row_sum + r0, ws->o + r0 * dv, dv, dv);
    uk->pv(m, n, dv, ws->s, lds, ws->v_panel, ws->o + r0 * dv, dv);
}

/* A sub-tile on the mask's boundary, one register block (mr rows) at a
 * time: each block stops at the last key its last row sees, so only the
 * keys a block really straddles go through the per-element mask. */
static void update_boundary_rows(const block_ctx *x, int64_t r0, int64_t m, int64_t n) {
    int64_t mr = x->d->uk->mr, i_base = x->t->i0, j0 = x->j0;
    for (int64_t r = r0; r < r0 + m; r += mr) {
        int64_t rows = r0 + m - r < mr ? r0 + m - r : mr;
        int64_t last = ta_last_key(x->win, i_base + r + rows - 1) - j0 + 1;
        int64_t cols = last < n ? last : n; /* a prefix of the packed keys */
        if (cols <= 0) continue;
        ta_tile_kind kind = ta_classify_tile(x->win, i_base + r, rows, j0, cols);
        if (kind == TA_TILE_HIDDEN) continue;
        update_rows(x, r, rows, cols, kind == TA_TILE_PARTIAL);
    }
}

/* Asks for rows [r0, r1) of a K or V block to be brought into L2 (a hint;
 * __builtin_prefetch names no ISA). The source rows are strided (by H x D
 * elements in the usual layout), which the hardware prefetchers follow
 * poorly: without this, packing waited on memory for 8% of the time
 * (perf, Zen 4, D = 128, Sq = Sk = 2048, H = 8). */
static void prefetch_rows(const char *base, int64_t stride_bytes, int64_t r0, int64_t r1,
                          int64_t row_bytes) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t b = 0; b < row_bytes; b += 64)
            __builtin_prefetch(base + r * stride_bytes + b, 0, 2);
}

static void run_work_item(const ta_desc *d, const tileattn_forward_args *a, int64_t w,
                          const workspace *ws) {
    const ta_ukernels *uk = d->uk;
    tile_position t;
    if (!locate_work_item(d, a, w, &t)) return;
    ta_window win = window_of(d, &t);
    size_t es = tileattn_dtype_size(d->dtype);
    int64_t dk = d->head_dim, dv = d->head_dim_v, bk = d->block_k, br = d->block_r;

    const char *q = (const char *)a->q.data +
                    (ptrdiff_t)(t.b * d->q_stride[0] + (t.q_start + t.i0) * d->q_stride[1] +
                                t.h * d->q_stride[2]) *
                        es;
    uk->load_rows(t.m, dk, q, d->dtype, d->q_stride[1], ws->q, dk);

    /* A sink joins the softmax as one more logit with no value: start the
     * running max at it with a sum of exp(sink - sink) = 1. */
    float sink = d->has_sinks ? a->sinks[t.h] : -INFINITY;
    for (int64_t r = 0; r < t.m; r++) {
        ws->row_max[r] = sink;
        ws->row_sum[r] = d->has_sinks ? 1.0f : 0.0f;
    }
    memset(ws->o, 0, (size_t)(t.m * dv) * sizeof(float));

    block_ctx x = {d, a, &t, &win, ws, 0, 0};
    x.has_score_mods = d->softcap > 0.0f || d->has_alibi || d->bias_kind != TILEATTN_BIAS_NONE;
    int64_t first = ta_first_key(&win, t.i0), last = ta_last_key(&win, t.i0 + t.m - 1);
    const char *k_head =
        (const char *)a->k.data + (ptrdiff_t)(t.b * d->k_stride[0] + t.k_start * d->k_stride[1] +
                                              t.kv_head * d->k_stride[2]) *
                                      es;
    const char *v_head =
        (const char *)a->v.data + (ptrdiff_t)(t.b * d->v_stride[0] + t.k_start * d->v_stride[1] +
                                              t.kv_head * d->v_stride[2]) *
                                      es;
    for (int64_t j0 = first; j0 <= last; j0 += bk) {
        int64_t n = last + 1 - j0 < bk ? last + 1 - j0 : bk;
        if (ta_classify_tile(&win, t.i0, t.m, j0, n) == TA_TILE_HIDDEN) continue;
        x.j0 = j0;
        int packed = 0;
        /* The next block's rows, spread over this block's sub-tiles. */
        int64_t next = j0 + bk, next_n = last + 1 - next < bk ? last + 1 - next : bk;
        int64_t subtiles = (t.m + br - 1) / br;
        for (int64_t r0 = 0; r0 < t.m; r0 += br) {
            int64_t m = t.m - r0 < br ? t.m - r0 : br;
            if (next_n > 0) {
                int64_t sub = r0 / br, p0 = next_n * sub / subtiles,
                        p1 = next_n * (sub + 1) / subtiles;
                prefetch_rows(k_head + (ptrdiff_t)(next * d->k_stride[1]) * es,
                              d->k_stride[1] * (int64_t)es, p0, p1, dk * (int64_t)es);
                prefetch_rows(v_head + (ptrdiff_t)(next * d->v_stride[1]) * es,
                              d->v_stride[1] * (int64_t)es, p0, p1, dv * (int64_t)es);
            }
            ta_tile_kind kind = ta_classify_tile(&win, t.i0 + r0, m, j0, n);
            if (kind == TA_TILE_HIDDEN) continue;
            if (!packed) { /* once per block, and only for a block some sub-tile sees */
                uk->pack_k(n, dk, k_head + (ptrdiff_t)(j0 * d->k_stride[1]) * es, d->dtype,
                           d->k_stride[1], ws->k_panel);
                uk->pack_v(n, dv, v_head + (ptrdiff_t)(j0 * d->v_stride[1]) * es, d->dtype,
                           d->v_stride[1], ws->v_panel);
                packed = 1;
            }
            if (kind == TA_TILE_FULL)
                update_rows(&x, r0, m, n, 0);
            else
                update_boundary_rows(&x, r0, m, n);
        }
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
    int placed = ta_team_claim(d->place_threads);
#pragma omp parallel num_threads(d->num_threads)
    {
        ta_thread_binding binding;
        ta_thread_bind(placed, omp_get_thread_num(), &binding);
        workspace ws = carve_workspace(d, scratch + per_thread * (size_t)omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < num_work; w++)
            run_work_item(d, a, w, &ws);
        ta_thread_unbind(&binding);
    }
    ta_team_release(placed);
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
