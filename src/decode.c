/*
 * Decoding with a KV cache, the flash-decoding way.
 *
 *   1. append:  write K_new/V_new into the cache (through the block table;
 *               int8: quantize, requantizing a block whose scale must grow);
 *   2. attend:  for each work item (b, head group, row tile, split) - the
 *               FlashAttention-2 inner loop over key tiles, with the
 *               group x Sq_new query rows of a KV head as one query tile
 *               and K/V rows read in place from the cache, every KV head
 *               of the group on each key tile before the next, in three
 *               phases on steps of a few keys (all heads on a step before
 *               the next step, so the cache is read in address order),
 *               where the plan asks for it while the next tile is
 *               prefetched (a share of its lines before each kernel call):
 *                   S_g = Q_g K_j^T for every head g;
 *                   masks and online softmax for each;
 *                   O_g += P_g V_j for every head g
 *   3. merge:   with split-KV, the partial (O, max, sum) of the chunks of a
 *               row are combined through their log-sum-exps:
 *                   M = max_s m_s,  L = sum_s l_s e^(m_s - M),
 *                   O = sum_s O_s e^(m_s - M) / L,  LSE = M + log L,
 *               the sink logit joining L once (it has no value).
 * Without splits, step 3 runs on the single partial in the thread's
 * workspace, so both paths finish rows with the same code.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "decode.h"
#include "mask.h"
#include "plan_util.h"
#include "threads.h"
#include "tileattn_config.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------- append */

/* The symmetric int8 range; q is finite. */
static int8_t clamp_to_int8(float q) {
    return (int8_t)(q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q);
}

/* x / scale rounded to nearest (ties to even) and clamped; 0 for a zero
 * scale (a block of zeros). A division, not a product with 1 / scale: for
 * values below about 3.7e-37 the scale is subnormal and its inverse
 * overflows to inf (every value would become +-127 and every zero
 * 0 x inf = NaN). x is finite (validated). */
static int8_t quantize(float x, float scale) {
    return scale > 0.0f ? clamp_to_int8(nearbyintf(x / scale)) : 0;
}

/* Appends sequence b's new tokens for one KV head into an int8 cache, one
 * block at a time: the block's scale grows to cover the new values
 * (requantizing the tokens already there), or starts fresh when the append
 * begins the block. */
static void append_int8(const tileattn_decode_args *a, int64_t b, int64_t kv_head,
                        const tileattn_tensor_out *cache, float *scales, const tileattn_tensor *src,
                        int64_t dim) {
    size_t es = tileattn_dtype_size(a->dtype);
    int64_t bs = a->block_size, first = a->cache_seqlens[b], end = first + a->seqlen_new;
    for (int64_t start = first; start < end;) {
        int64_t block_start = start / bs * bs;
        int64_t stop = block_start + bs < end ? block_start + bs : end;
        float *scale = &scales[ta_cache_scale_index(a, b, start, kv_head)];
        float old_scale = start == block_start ? 0.0f : *scale;

        float absmax = 0.0f;
        for (int64_t pos = start; pos < stop; pos++) {
            const char *row = (const char *)src->data +
                              (ptrdiff_t)(b * src->stride_b + (pos - first) * src->stride_s +
                                          kv_head * src->stride_h) *
                                  es;
            for (int64_t c = 0; c < dim; c++) {
                float v = fabsf(ta_load_f32(row, a->dtype, c));
                absmax = v > absmax ? v : absmax;
            }
        }
        float new_scale = absmax / 127.0f > old_scale ? absmax / 127.0f : old_scale;
        if (new_scale > old_scale && old_scale > 0.0f) {
            /* Tokens already in the block move to the larger scale. */
            float ratio = old_scale / new_scale; /* < 1 */
            for (int64_t pos = block_start; pos < start; pos++) {
                int8_t *row = (int8_t *)cache->data + ta_cache_offset(a, cache, b, pos, kv_head);
                for (int64_t c = 0; c < dim; c++)
                    row[c] = clamp_to_int8(nearbyintf((float)row[c] * ratio));
            }
        }
        for (int64_t pos = start; pos < stop; pos++) {
            const char *in = (const char *)src->data +
                             (ptrdiff_t)(b * src->stride_b + (pos - first) * src->stride_s +
                                         kv_head * src->stride_h) *
                                 es;
            int8_t *row = (int8_t *)cache->data + ta_cache_offset(a, cache, b, pos, kv_head);
            for (int64_t c = 0; c < dim; c++)
                row[c] = quantize(ta_load_f32(in, a->dtype, c), new_scale);
        }
        *scale = new_scale;
        start = stop;
    }
}

/* Converts sequence b's new tokens for one KV head into a float cache. */
static void append_float(const tileattn_decode_args *a, int64_t b, int64_t kv_head,
                         const tileattn_tensor_out *cache, const tileattn_tensor *src,
                         int64_t dim) {
    size_t es = tileattn_dtype_size(a->dtype), ces = ta_cache_dtype_size(a->cache_dtype);
    tileattn_dtype cache_dtype = (tileattn_dtype)a->cache_dtype; /* F32/F16/BF16 coincide */
    for (int64_t t = 0; t < a->seqlen_new; t++) {
        const char *in =
            (const char *)src->data +
            (ptrdiff_t)(b * src->stride_b + t * src->stride_s + kv_head * src->stride_h) * es;
        char *out = (char *)cache->data +
                    (ptrdiff_t)ta_cache_offset(a, cache, b, a->cache_seqlens[b] + t, kv_head) * ces;
        for (int64_t c = 0; c < dim; c++)
            ta_store_f32(out, cache_dtype, c, ta_load_f32(in, a->dtype, c));
    }
}

static void append_item(const ta_decode_desc *d, const tileattn_decode_args *a, int64_t item) {
    int64_t b = item / d->heads_kv, kv_head = item % d->heads_kv;
    if (d->cache_dtype == TILEATTN_CACHE_INT8) {
        append_int8(a, b, kv_head, &a->k_cache, a->k_scales, &a->k_new, d->head_dim);
        append_int8(a, b, kv_head, &a->v_cache, a->v_scales, &a->v_new, d->head_dim_v);
    } else {
        append_float(a, b, kv_head, &a->k_cache, &a->k_new, d->head_dim);
        append_float(a, b, kv_head, &a->v_cache, &a->v_new, d->head_dim_v);
    }
}

/* ------------------------------------------------------------- attend */

/* One thread's scratch. The accumulators (O, max, sum of the rows of each
 * head of the item) are laid out like a split's partial result, so the
 * merge reads either. */
typedef struct workspace {
    float *q; /* [heads_per_item][rows_per_tile][D], times scale */
    float *s; /* [heads_per_item] x s_floats: [rows_per_tile][block_k] scores, then
               * probabilities (times the V scale, int8) */
    float *acc;
} workspace;

/* Floats of one head's partial result: O [m][Dv], then max [m], sum [m]. */
static size_t head_part_floats(const ta_decode_desc *d) {
    return (size_t)((d->rows_per_tile * (d->head_dim_v + 2) + 15) / 16 * 16);
}

static size_t partial_floats(const ta_decode_desc *d) {
    return head_part_floats(d) * (size_t)d->heads_per_item;
}

/* Floats of one head's score tile in the workspace. */
static size_t score_tile_floats(const ta_decode_desc *d) {
    return (size_t)((d->rows_per_tile * d->block_k + 15) / 16 * 16);
}

static workspace carve_workspace(const ta_decode_desc *d, float *base) {
    int64_t rt = d->rows_per_tile;
    workspace w;
    w.q = base;
    w.s = w.q + (d->heads_per_item * rt * d->head_dim + 15) / 16 * 16;
    w.acc = w.s + d->heads_per_item * score_tile_floats(d);
    return w;
}

/* Where one work item sits. */
typedef struct work_item {
    int64_t b, kv_head0, heads, row_tile, split; /* KV heads [kv_head0, kv_head0 + heads) */
    int64_t r0, m;          /* packed rows [r0, r0 + m): row = token * group + head in group */
    int64_t token0, tokens; /* new tokens those rows span */
    ta_window win;
} work_item;

static work_item locate(const ta_decode_desc *d, const tileattn_decode_args *a, int64_t w) {
    work_item t;
    t.split = w % d->num_splits;
    w /= d->num_splits;
    t.row_tile = w % d->num_row_tiles;
    w /= d->num_row_tiles;
    t.kv_head0 = w % d->num_head_groups * d->heads_per_item;
    t.heads =
        d->heads_kv - t.kv_head0 < d->heads_per_item ? d->heads_kv - t.kv_head0 : d->heads_per_item;
    t.b = w / d->num_head_groups;
    t.r0 = t.row_tile * d->rows_per_tile;
    t.m = d->rows - t.r0 < d->rows_per_tile ? d->rows - t.r0 : d->rows_per_tile;
    t.token0 = t.r0 / d->group;
    t.tokens = (t.r0 + t.m - 1) / d->group - t.token0 + 1;
    int64_t sk = ta_decode_seqlen_k(a, t.b);
    t.win = (ta_window){sk - d->seqlen_new, d->window_left, d->window_right, sk};
    return t;
}

/* Softcap, ALiBi and the per-element mask on an m x n score tile of one KV
 * head (column c holds key key_pos[c]), in the order the semantics define;
 * only called when one of them is active. */
static void modify_scores(const ta_decode_desc *d, const tileattn_decode_args *a,
                          const work_item *t, int64_t kv_head, const int64_t *key_pos, int64_t n,
                          int per_element_mask, float *s, int64_t lds) {
    float cap = d->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    for (int64_t r = 0; r < t->m; r++) {
        int64_t row = t->r0 + r, i = row / d->group;
        int64_t h = kv_head * d->group + row % d->group;
        float slope = d->has_alibi ? a->alibi_slopes[t->b * a->alibi_stride_b + h] : 0.0f;
        float *sr = s + r * lds;
        for (int64_t c = 0; c < n; c++) {
            int64_t j = key_pos[c];
            if (per_element_mask && !ta_key_visible(&t->win, i, j)) {
                sr[c] = -INFINITY;
                continue;
            }
            float x = sr[c];
            if (cap > 0.0f) x = cap * tanhf(x * inv_cap);
            if (d->has_alibi) x -= slope * (float)llabs(i + t->win.offset - j);
            sr[c] = x;
        }
    }
}

/* The cache rows of keys [j0, j0 + n) for the item's first KV head (head g
 * of the item is g * stride_h elements further, paged or not), the index
 * of their int8 scales (head g: + g) and the key each column holds, in the
 * plan's order (key_column). Walks the block table once per block instead
 * of dividing per key. */
typedef struct key_tile {
    int64_t j0, n;
    const char *k_rows[TA_DECODE_MAX_BLOCK_K], *v_rows[TA_DECODE_MAX_BLOCK_K];
    int64_t scale_index[TA_DECODE_MAX_BLOCK_K];
    int64_t key_pos[TA_DECODE_MAX_BLOCK_K];
} key_tile;

/* The tile column of its u-th key (of n). With the plan's interleave P > 1
 * (decode_plan.c's choose_key_interleave), a full group of P steps of keys
 * u = k P + s (k < TA_DECODE_STEP_KEYS, s < P) goes to column
 * s TA_DECODE_STEP_KEYS + k: step s of the group takes the slot-s token of
 * each of its TA_DECODE_STEP_KEYS pages. The scores and probabilities
 * follow the columns, so only the masks need the key (key_pos); keys
 * after the last full group stay in order. */
static int64_t key_column(int64_t u, int64_t n, int64_t interleave) {
    int64_t group = interleave * TA_DECODE_STEP_KEYS, g0 = u / group * group;
    if (interleave == 1 || g0 + group > n) return u;
    return g0 + (u - g0) % interleave * TA_DECODE_STEP_KEYS + (u - g0) / interleave;
}

static void gather_rows(const ta_decode_desc *d, const tileattn_decode_args *a, const work_item *t,
                        int64_t j0, int64_t n, key_tile *tile) {
    size_t ces = ta_cache_dtype_size(d->cache_dtype);
    const char *k_base = a->k_cache.data, *v_base = a->v_cache.data;
    int int8 = d->cache_dtype == TILEATTN_CACHE_INT8;
    tile->j0 = j0;
    tile->n = n;
    for (int64_t c = 0; c < n;) {
        int64_t pos = j0 + c;
        /* Keys up to the end of pos's block (or of the tile) are adjacent. */
        int64_t run = d->paged || int8 ? d->block_size - pos % d->block_size : n - c;
        if (run > n - c) run = n - c;
        int64_t k_off = ta_cache_offset(a, &a->k_cache, t->b, pos, t->kv_head0);
        int64_t v_off = ta_cache_offset(a, &a->v_cache, t->b, pos, t->kv_head0);
        int64_t idx = int8 ? ta_cache_scale_index(a, t->b, pos, t->kv_head0) : 0;
        for (int64_t u = 0; u < run; u++, c++) {
            int64_t col = key_column(c, n, d->key_interleave);
            tile->k_rows[col] = k_base + (ptrdiff_t)(k_off + u * a->k_cache.stride_s) * ces;
            tile->v_rows[col] = v_base + (ptrdiff_t)(v_off + u * a->v_cache.stride_s) * ces;
            tile->scale_index[col] = idx;
            tile->key_pos[col] = j0 + c;
        }
    }
}

/* The next tile's K and V lines, handed out a few at a time: the driver
 * asks for an equal share before each kernel call, so the requests trickle
 * out at about the pace the tile computes instead of in bursts that fill
 * the miss queue and stall the core until memory has answered them. They
 * go out in address order: with the usual [.., token, head, dim] layout
 * the heads of a token are one run of bytes, which the hardware
 * prefetchers then follow too (a paged cache jumps to an unrelated block
 * every block_size keys, which they cannot). */
typedef struct prefetch_queue {
    const key_tile *tile; /* NULL: nothing to fetch */
    int kv;               /* 0: K rows, 1: V rows, 2: done */
    int64_t key, head, heads;
    size_t off;             /* byte offset in the current run */
    size_t run_bytes[2];    /* bytes of one run: a token's heads, or one head's row */
    ptrdiff_t head_step[2]; /* bytes from one head's run to the next; 0: one run per token */
    int64_t lines;          /* lines in the whole tile */
} prefetch_queue;

static void prefetch_queue_init(prefetch_queue *pq, const ta_decode_desc *d,
                                const tileattn_decode_args *a, const work_item *t,
                                const key_tile *tile) {
    size_t ces = ta_cache_dtype_size(d->cache_dtype);
    const tileattn_tensor_out *caches[2] = {&a->k_cache, &a->v_cache};
    int64_t dims[2] = {d->head_dim, d->head_dim_v};
    *pq = (prefetch_queue){tile, tile ? 0 : 2, 0, 0, t->heads, 0, {0, 0}, {0, 0}, 0};
    for (int kv = 0; kv < 2 && tile; kv++) {
        int64_t sh = caches[kv]->stride_h, row = dims[kv];
        /* Heads one run of bytes apart (stride_h in (0, 2 row]): one span. */
        int span = t->heads == 1 || (sh > 0 && sh <= 2 * row);
        pq->run_bytes[kv] = (size_t)((span ? (t->heads - 1) * sh : 0) + row) * ces;
        pq->head_step[kv] = span ? 0 : (ptrdiff_t)sh * (ptrdiff_t)ces;
        pq->lines += (int64_t)((pq->run_bytes[kv] + 63) / 64) * (span ? 1 : t->heads) * tile->n;
    }
}

/* Asks for the next `lines` lines of the queue into L2. The state lives in
 * locals while it runs: kept in *pq, each line's update would go through
 * memory and chain the loop on store-to-load forwarding. */
static void prefetch_queue_issue(prefetch_queue *pq, int64_t lines) {
    int kv = pq->kv;
    int64_t key = pq->key, head = pq->head;
    size_t off = pq->off;
    while (lines > 0 && kv < 2) {
        const char *run =
            (kv ? pq->tile->v_rows[key] : pq->tile->k_rows[key]) + head * pq->head_step[kv];
        size_t run_bytes = pq->run_bytes[kv];
        for (; off < run_bytes && lines > 0; off += 64, lines--)
            __builtin_prefetch(run + off, 0, 2);
        if (off < run_bytes) break;
        off = 0;
        if (pq->head_step[kv] && ++head < pq->heads) continue;
        head = 0;
        if (++key < pq->tile->n) continue;
        key = 0;
        kv++;
    }
    pq->kv = kv, pq->key = key, pq->head = head, pq->off = off;
}

/* One head's rows of `step` tokens: each token's row (its first head of the
 * item) moved `shift` bytes on, to that head. */
static void head_rows(const char *const *token_rows, int64_t step, ptrdiff_t shift,
                      const void **rows) {
    for (int64_t i = 0; i < step; i++)
        rows[i] = token_rows[i] + shift;
}

/* Step 2 for one work item: each head's rows' unnormalised O, max and sum
 * go to acc, head after head (head_part_floats apart): rows x Dv, then the
 * rows' maxima, then their sums. */
static void attend(const ta_decode_desc *d, const tileattn_decode_args *a, const work_item *t,
                   const workspace *ws, float *acc) {
    const ta_decode_kernels *k = d->kernels;
    int64_t dk = d->head_dim, dv = d->head_dim_v, bk = d->block_k, m = t->m;
    size_t part = head_part_floats(d), ces = ta_cache_dtype_size(d->cache_dtype);
    size_t s_floats = score_tile_floats(d);
    for (int64_t g = 0; g < t->heads; g++) {
        float *o = acc + g * part, *row_max = o + m * dv, *row_sum = row_max + m;
        for (int64_t r = 0; r < m; r++) {
            row_max[r] = -INFINITY;
            row_sum[r] = 0.0f;
        }
        memset(o, 0, (size_t)(m * dv) * sizeof(float));
    }

    int64_t first = ta_first_key(&t->win, t->token0);
    /* Tiles start on a page boundary (a multiple of P = key_interleave
     * tokens), so that each group of P steps takes its tokens from whole
     * pages, as the key order assumes; the at most P - 1 keys before
     * `first` this brings in are masked on the first tile. */
    first = ta_round_down(first, d->key_interleave);
    int64_t last = ta_last_key(&t->win, t->token0 + t->tokens - 1);
    int64_t c0 = first + t->split * d->split_keys;
    int64_t c1 = c0 + d->split_keys - 1 < last ? c0 + d->split_keys - 1 : last;
    if (c0 > c1) return; /* an empty chunk (short sequence) or a fully masked row tile */

    size_t es = tileattn_dtype_size(d->dtype);
    for (int64_t g = 0; g < t->heads; g++)
        for (int64_t r = 0; r < m; r++) {
            int64_t row = t->r0 + r, i = row / d->group;
            int64_t h = (t->kv_head0 + g) * d->group + row % d->group;
            const char *q =
                (const char *)a->q.data +
                (ptrdiff_t)(t->b * a->q.stride_b + i * a->q.stride_s + h * a->q.stride_h) * es;
            float *qr = ws->q + (g * d->rows_per_tile + r) * dk;
            for (int64_t c = 0; c < dk; c++)
                qr[c] = ta_load_f32(q, d->dtype, c) * d->scale;
        }
    if (k->permute_q)
        for (int64_t g = 0; g < t->heads; g++)
            k->permute_q(m, dk, ws->q + g * d->rows_per_tile * dk, dk, d->cache_dtype);

    int int8 = d->cache_dtype == TILEATTN_CACHE_INT8;
    int has_score_mods = d->softcap > 0.0f || d->has_alibi;
    key_tile tiles[2];
    tiles[0].j0 = tiles[1].j0 = -1;
    int cur = 0;
    for (int64_t j0 = c0; j0 <= c1; j0 += bk) {
        int64_t n = c1 + 1 - j0 < bk ? c1 + 1 - j0 : bk;
        ta_tile_kind kind = ta_classify_tile(&t->win, t->token0, t->tokens, j0, n);
        if (kind == TA_TILE_HIDDEN) continue;
        key_tile *tile = &tiles[cur], *next = &tiles[1 - cur];
        if (tile->j0 != j0) gather_rows(d, a, t, j0, n, tile);
        next->j0 = -1;
        if (j0 + bk <= c1) /* fetched while this tile computes */
            gather_rows(d, a, t, j0 + bk, c1 + 1 - (j0 + bk) < bk ? c1 + 1 - (j0 + bk) : bk, next);
        /* Three phases over the item's heads (Q K^T for all, then the
         * softmax of each, then P V for all). The first and the last run
         * on steps of TA_DECODE_STEP_KEYS keys, every head on a step before
         * the next step: the rows are read in address order (a token's
         * heads are adjacent in [.., token, head, dim]), the one stream
         * the hardware prefetchers follow; head after head over the whole
         * tile read a few hundred bytes every Hk x D elements, which on a
         * 2-core Ice Lake read 0.52 of the read bandwidth in bf16 against
         * 0.61 (B = 2 x 32k, two threads, no software prefetch, medians of
         * three runs). When the plan asks for it, each kernel call is
         * preceded by its share of the next tile's lines: the tile can be
         * long, so that the softmax and the kernels' set-up are paid
         * rarely, while the prefetches still go out a few dozen lines at
         * a time. */
        prefetch_queue pq;
        prefetch_queue_init(&pq, d, a, t, d->prefetch_next_tile && next->j0 >= 0 ? next : NULL);
        int64_t steps = 2 * t->heads * ((n + TA_DECODE_STEP_KEYS - 1) / TA_DECODE_STEP_KEYS);
        int64_t share = (pq.lines + steps - 1) / steps;
        const void *rows[TA_DECODE_MAX_BLOCK_K];
        for (int64_t c = 0; c < n; c += TA_DECODE_STEP_KEYS) {
            int64_t step = n - c < TA_DECODE_STEP_KEYS ? n - c : TA_DECODE_STEP_KEYS;
            for (int64_t g = 0; g < t->heads; g++) {
                head_rows(tile->k_rows + c, step,
                          (ptrdiff_t)(g * a->k_cache.stride_h) * (ptrdiff_t)ces, rows);
                prefetch_queue_issue(&pq, share);
                k->qk(m, step, dk, ws->q + g * d->rows_per_tile * dk, dk, rows, d->cache_dtype,
                      ws->s + g * s_floats + c, bk);
            }
        }
        for (int64_t g = 0; g < t->heads; g++) {
            float *o = acc + g * part, *row_max = o + m * dv, *row_sum = row_max + m;
            float *s = ws->s + g * s_floats;
            if (int8)
                for (int64_t r = 0; r < m; r++)
                    for (int64_t c = 0; c < n; c++)
                        s[r * bk + c] *= a->k_scales[tile->scale_index[c] + g];
            if (has_score_mods || kind == TA_TILE_PARTIAL)
                modify_scores(d, a, t, t->kv_head0 + g, tile->key_pos, n, kind == TA_TILE_PARTIAL,
                              s, bk);
            k->softmax(m, n, s, bk, row_max, row_sum, o, dv, dv);
            if (int8) /* fold V's scale into the weights; row_sum keeps the plain ones */
                for (int64_t r = 0; r < m; r++)
                    for (int64_t c = 0; c < n; c++)
                        s[r * bk + c] *= a->v_scales[tile->scale_index[c] + g];
        }
        for (int64_t c = 0; c < n; c += TA_DECODE_STEP_KEYS) {
            int64_t step = n - c < TA_DECODE_STEP_KEYS ? n - c : TA_DECODE_STEP_KEYS;
            for (int64_t g = 0; g < t->heads; g++) {
                head_rows(tile->v_rows + c, step,
                          (ptrdiff_t)(g * a->v_cache.stride_h) * (ptrdiff_t)ces, rows);
                prefetch_queue_issue(&pq, share);
                k->pv(m, step, dv, ws->s + g * s_floats + c, bk, rows, d->cache_dtype,
                      acc + g * part, dv);
            }
        }
        prefetch_queue_issue(&pq, pq.lines); /* whatever rounding left */
        cur = 1 - cur;
    }
    if (k->unpermute_o)
        for (int64_t g = 0; g < t->heads; g++)
            k->unpermute_o(m, dv, acc + g * part, dv, d->cache_dtype);
}

/* Step 3: combines the partials of rows [r0, r0 + m) of one KV head and
 * writes O and LSE. part(s) = parts + s * part_stride. */
static void finish_rows(const ta_decode_desc *d, const tileattn_decode_args *a, const work_item *t,
                        int64_t kv_head, const float *parts, int64_t num_parts,
                        size_t part_stride) {
    int64_t dv = d->head_dim_v, m = t->m;
    size_t es = tileattn_dtype_size(d->dtype);
    float out[TILEATTN_MAX_HEAD_DIM];
    for (int64_t r = 0; r < m; r++) {
        int64_t row = t->r0 + r, i = row / d->group;
        int64_t h = kv_head * d->group + row % d->group;
        float sink = d->has_sinks ? a->sinks[h] : -INFINITY;
        float max = sink;
        for (int64_t s = 0; s < num_parts; s++) {
            float ms = parts[s * part_stride + (size_t)(m * dv + r)];
            max = ms > max ? ms : max;
        }
        for (int64_t c = 0; c < dv; c++)
            out[c] = 0.0f;
        float sum = 0.0f;
        if (max != -INFINITY) {
            sum = d->has_sinks ? expf(sink - max) : 0.0f;
            for (int64_t s = 0; s < num_parts; s++) {
                const float *part = parts + s * part_stride;
                float ms = part[m * dv + r];
                if (ms == -INFINITY) continue; /* an empty chunk */
                float weight = expf(ms - max);
                sum += part[m * dv + m + r] * weight;
                for (int64_t c = 0; c < dv; c++)
                    out[c] += part[r * dv + c] * weight;
            }
        }
        /* A row that saw no key has nothing to average: O = 0 (a sink alone
         * contributes no value), LSE = log of the denominator, or -inf. */
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        char *o = (char *)a->o.data +
                  (ptrdiff_t)(t->b * a->o.stride_b + i * a->o.stride_s + h * a->o.stride_h) * es;
        for (int64_t c = 0; c < dv; c++)
            ta_store_f32(o, d->dtype, c, out[c] * inv);
        if (a->lse)
            a->lse[(t->b * d->heads_q + h) * d->seqlen_new + i] =
                sum > 0.0f ? max + logf(sum) : -INFINITY;
    }
}

/* Finishes every head of an item from its partials (split s of head g at
 * parts + s * split_stride + g * head_part_floats). */
static void finish_item(const ta_decode_desc *d, const tileattn_decode_args *a, const work_item *t,
                        const float *parts, int64_t num_parts, size_t split_stride) {
    for (int64_t g = 0; g < t->heads; g++)
        finish_rows(d, a, t, t->kv_head0 + g, parts + g * head_part_floats(d), num_parts,
                    split_stride);
}

static void run_work_item(const ta_decode_desc *d, const tileattn_decode_args *a, int64_t w,
                          const workspace *ws, float *partials) {
    work_item t = locate(d, a, w);
    if (d->num_splits == 1) {
        attend(d, a, &t, ws, ws->acc);
        finish_item(d, a, &t, ws->acc, 1, 0);
    } else {
        attend(d, a, &t, ws, partials + (size_t)w * partial_floats(d));
    }
}

static void merge_item(const ta_decode_desc *d, const tileattn_decode_args *a, int64_t item,
                       const float *partials) {
    int64_t w = item * d->num_splits;
    work_item t = locate(d, a, w);
    size_t stride = partial_floats(d);
    finish_item(d, a, &t, partials + (size_t)w * stride, d->num_splits, stride);
}

static tileattn_status run_decode(const ta_decode_desc *d, const tileattn_decode_args *a) {
    size_t per_thread = d->workspace_floats + partial_floats(d);
    size_t bytes = per_thread * sizeof(float) * (size_t)d->num_threads;
    float *scratch = aligned_alloc(64, (bytes + 63) / 64 * 64);
    float *partials = NULL;
    if (scratch && d->num_splits > 1) {
        size_t pbytes = partial_floats(d) * sizeof(float) * (size_t)d->num_work;
        partials = aligned_alloc(64, (pbytes + 63) / 64 * 64);
    }
    if (!scratch || (d->num_splits > 1 && !partials)) {
        free(scratch);
        return TILEATTN_ERR_OUT_OF_MEMORY;
    }
    int64_t appends = d->append ? d->batch * d->heads_kv : 0;
    int64_t items = d->num_work / d->num_splits;
#if TILEATTN_HAVE_OPENMP
    int placed = ta_team_claim(d->place_threads);
#pragma omp parallel num_threads(d->num_threads)
    {
        ta_thread_binding binding;
        ta_thread_bind(placed, omp_get_thread_num(), &binding);
        workspace ws = carve_workspace(d, scratch + per_thread * (size_t)omp_get_thread_num());
#pragma omp for schedule(static)
        for (int64_t i = 0; i < appends; i++)
            append_item(d, a, i);
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < d->num_work; w++)
            run_work_item(d, a, w, &ws, partials);
        if (d->num_splits > 1) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < items; i++)
                merge_item(d, a, i, partials);
        }
        ta_thread_unbind(&binding);
    }
    ta_team_release(placed);
#else
    workspace ws = carve_workspace(d, scratch);
    for (int64_t i = 0; i < appends; i++)
        append_item(d, a, i);
    for (int64_t w = 0; w < d->num_work; w++)
        run_work_item(d, a, w, &ws, partials);
    if (d->num_splits > 1)
        for (int64_t i = 0; i < items; i++)
            merge_item(d, a, i, partials);
#endif
    free(partials);
    free(scratch);
    return TILEATTN_OK;
}

tileattn_status ta_decode_run(const tileattn_decode_args *args, const ta_decode_overrides *forced,
                              const ta_decode_kernels *kernels) {
    /* ta_plan_decode validates everything but the presence of O. */
    if (args && !args->o.data) return TILEATTN_ERR_NULL_POINTER;
    ta_decode_desc desc;
    tileattn_status st = ta_plan_decode(args, forced, kernels, &desc);
    if (st) return st;
    return run_decode(&desc, args);
}

tileattn_status tileattn_decode(const tileattn_decode_args *args) {
    return ta_decode_run(args, NULL, NULL);
}
