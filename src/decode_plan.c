/*
 * The decoding planner: arguments in, decode description out, and its
 * human-readable form.
 *
 *   key tile  - block_k keys of every KV head of the work item: this tile
 *               and the next, prefetched while it computes, take at most
 *               half of L2;
 *   row tile  - all group x Sq_new rows of a KV head together (each KV byte
 *               is read once) unless their Q, S and O would not fit in half
 *               of L2; then they are cut, and KV is read once per row tile;
 *   head group - the KV heads one work item walks the keys for, together,
 *               so that it reads whole token rows (see below);
 *   split-KV  - flash-decoding: when batch x head groups x row tiles items
 *               cannot keep every thread busy in balanced waves, the keys of
 *               each item are cut into chunks (never shorter than
 *               MIN_SPLIT_KEYS) and merged afterwards;
 *   prefetch  - whether the next key tile is prefetched in software while
 *               this one computes, or left to the hardware prefetchers.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "decode.h"
#include "dispatch.h"
#include "plan_util.h"
#include "threads.h"
#include "topology.h"

enum {
    /* A chunk writes rows x (Dv + 2) floats of partial results and the merge
     * reads them back; at 256 keys of D = Dv = 128 that is below 2% of the
     * chunk's own K/V bytes for 4 rows, and a thread's chunk is long enough
     * (tens of microseconds) that scheduling is noise. */
    MIN_SPLIT_KEYS = 256,
    MAX_SPLITS = 64,
};

/* Wave efficiency below which splitting pays. FlashAttention's
 * num_splits_heuristic takes the smallest split within 85% of the best; on
 * a CPU a chunk is long (a thread's share of the cache) and the merge
 * reads a few KiB per chunk, so an idle core costs far more than another
 * split: 14 chunks on 16 cores (87.5%) read 9% (float32) and 14%
 * (bfloat16) less per second than 16 chunks on the 16-core Xeon. */
#define SPLIT_EFFICIENCY 0.95

/* Rows of `bytes` each that fill a 4 KiB page exactly; 0 when such rows
 * fill a page or more, or leave a remainder (no page order then). */
static int64_t rows_per_page(int64_t bytes) {
    if (bytes >= TA_DECODE_PAGE_BYTES || TA_DECODE_PAGE_BYTES % bytes != 0) return 0;
    return TA_DECODE_PAGE_BYTES / bytes;
}

/* The floats of half of L2 that one query row of a tile is counted for: its
 * Q and O rows, its max and sum, and its scores for `keys` keys counted
 * twice. rows_per_tile divides half of L2 by it at the usual tile width;
 * keys_beside_rows inverts it: the widest tile those rows leave room for. */
static int64_t tile_floats_per_row(int64_t dk, int64_t dv, int64_t keys) {
    return dk + dv + 2 * keys + 2;
}

static int64_t keys_beside_rows(size_t l2_bytes, int64_t rows, int64_t dk, int64_t dv) {
    int64_t half_l2_floats = (int64_t)(l2_bytes / 2 / sizeof(float));
    return (half_l2_floats / rows - tile_floats_per_row(dk, dv, 0)) / 2;
}

/* The order of the keys within a tile. A step (TA_DECODE_STEP_KEYS keys)
 * reads one head's rows of its tokens, then the next head's rows of the
 * same tokens. In the usual [.., token, head, dim] layout, where a token's
 * heads take less than a 4 KiB page, consecutive tokens share one, and in
 * key order a step walks each page back and forth (token a's head 0, token
 * a + 1's head 0, then token a's head 1, ...): the L2 streamer, which
 * follows an ascending stream within a page, prefetches little of it.
 * Taking a step's tokens one per page instead - the slot-s token of
 * TA_DECODE_STEP_KEYS consecutive pages, then slot s + 1 on the next step -
 * reads every page in ascending order, head after head. On a 2-core Ice
 * Lake (`tileattn bench --decode`: B = 1 x 32k tokens, Hk = 8, D = 128,
 * bfloat16 2 KiB per token, two per page; medians of 9 and 5 runs
 * alternating with key order), bfloat16 read 0.66 -> 0.80 of the read
 * bandwidth on two threads (paged by 16: 0.54 -> 0.78) and 0.59 -> 0.78 on
 * one (docs/perf/icelake-2core-bench-decode-key-order.txt); float32 (a
 * page per token) stays in key order. The order changes the order of the
 * sums, so it is set by the shapes (the bytes of a token's heads of the
 * item, as that layout stores them), never by the strides: paged,
 * contiguous and any strided view give bitwise the same results. Returns
 * P, the tokens per page, at most TA_DECODE_TILE_KEYS /
 * TA_DECODE_STEP_KEYS (the order is decode.c's key_column).
 *
 * A work item of one KV head (MQA, or rows that leave L2 room for one head
 * only) reads one head's rows, which in [.., head, token, dim] - PyTorch's
 * layout, and any layout when Hk = 1 - are adjacent, 16 to a page in
 * bfloat16 at D = 128. In key order a step then reads one or two pages
 * from their start, and every page is a new stream the prefetchers must
 * first detect. The same order as above on the head's rows - P = the
 * rows per page, so a step takes one token from each of
 * TA_DECODE_STEP_KEYS pages - on the 2-core Ice Lake (`tileattn bench
 * --decode --heads 4 --heads-kv 1 --seqlen 262144`, three rounds
 * alternating with key order; docs/perf/icelake-2core-bench-decode-
 * one-head.txt) took one thread of bf16 from 0.47-0.57 of the read
 * bandwidth to 0.65-0.70 (paged by 16: 0.41-0.44 to 0.56-0.66), two from
 * 0.45-0.55 to 0.66-0.80, and f32 from 0.67-0.74 to 0.94-0.97 on one
 * thread, 0.62-0.73 to 0.87-0.88 on two. Such groups are up to
 * TA_DECODE_MAX_BLOCK_K keys, so P is bounded by the score tile that
 * fits beside the item's rows in half of L2 (rows_per_tile is set). */
static int64_t choose_key_interleave(const ta_decode_desc *d, const char **reason) {
    int64_t es = (int64_t)ta_cache_dtype_size(d->cache_dtype);
    if (d->heads_per_item < 2) {
        int64_t dim = d->head_dim > d->head_dim_v ? d->head_dim : d->head_dim_v;
        int64_t p = rows_per_page(dim * es);
        if (p == 0) {
            *reason = "in key order (one KV head per item, whose rows do not divide a page)";
            return 1;
        }
        int64_t keys_fit =
            keys_beside_rows(d->l2_bytes, d->rows_per_tile, d->head_dim, d->head_dim_v);
        int64_t most = TA_DECODE_MAX_BLOCK_K / TA_DECODE_STEP_KEYS;
        if (keys_fit / TA_DECODE_STEP_KEYS < most) most = keys_fit / TA_DECODE_STEP_KEYS;
        if (p > most) p = most;
        if (p < 2) {
            *reason = "in key order (one KV head per item, too many rows for wider tiles)";
            return 1;
        }
        *reason = "one token per 4 KiB page of the head's rows in each step, so that every page "
                  "is read in ascending order";
        return p;
    }
    int64_t token_bytes = d->heads_per_item * d->head_dim * es;
    int64_t p = rows_per_page(token_bytes);
    if (p == 0) {
        *reason = token_bytes >= TA_DECODE_PAGE_BYTES
                      ? "in key order (a token's heads fill a page)"
                      : "in key order (a token's heads do not divide a page)";
        return 1;
    }
    *reason = "one token per 4 KiB page in each step, so that every page is read in "
              "ascending order";
    int64_t most = TA_DECODE_TILE_KEYS / TA_DECODE_STEP_KEYS;
    return p < most ? p : most;
}

static void describe_problem(const tileattn_decode_args *a, ta_decode_desc *d) {
    d->batch = a->batch;
    d->seqlen_new = a->seqlen_new;
    d->heads_q = a->heads_q;
    d->heads_kv = a->heads_kv;
    d->group = a->heads_q / a->heads_kv;
    d->head_dim = a->head_dim;
    d->head_dim_v = a->head_dim_v ? a->head_dim_v : a->head_dim;
    d->dtype = a->dtype;
    d->cache_dtype = a->cache_dtype;
    d->paged = a->block_table != NULL;
    d->append = a->k_new.data != NULL;
    d->block_size = a->block_size;
    d->capacity = d->paged ? a->max_blocks_per_seq * a->block_size : a->max_seqlen_cache;
    d->table_stride = a->block_table_stride ? a->block_table_stride : a->max_blocks_per_seq;
    d->scale_blocks = !d->paged && a->block_size > 0
                          ? (a->max_seqlen_cache + a->block_size - 1) / a->block_size
                          : 0;
    d->longest_k = d->total_keys = 0;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t sk = ta_decode_seqlen_k(a, b);
        d->total_keys += sk;
        if (sk > d->longest_k) d->longest_k = sk;
    }
    d->scale = a->scale > 0.0f ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    d->softcap = a->softcap;
    d->window_left = a->window_left;
    d->window_right = a->causal ? 0 : a->window_right;
    d->has_alibi = a->alibi_slopes != NULL;
    d->has_sinks = a->sinks != NULL;
}

/* The number of chunks per work item: the smallest count whose waves of
 * work fill the threads to SPLIT_EFFICIENCY of the best count's, keeping
 * every chunk at least MIN_SPLIT_KEYS long. */
static int64_t choose_splits(int64_t items, int threads, int64_t longest_k, const char **why) {
    if (threads <= 1) {
        *why = "one thread";
        return 1;
    }
    int64_t max_splits = longest_k / MIN_SPLIT_KEYS;
    if (max_splits > MAX_SPLITS) max_splits = MAX_SPLITS;
    if (max_splits <= 1) {
        *why = "keys too few to split (chunks would be under 256 keys)";
        return 1;
    }
    double best = 0.0, efficiency[MAX_SPLITS + 1];
    for (int64_t s = 1; s <= max_splits; s++) {
        int64_t tasks = items * s;
        int64_t waves = (tasks + threads - 1) / threads;
        efficiency[s] = (double)tasks / (double)(waves * threads);
        if (efficiency[s] > best) best = efficiency[s];
    }
    for (int64_t s = 1; s <= max_splits; s++)
        if (efficiency[s] >= SPLIT_EFFICIENCY * best) {
            *why = s == 1 ? "the work items already fill the threads"
                          : "the work items leave threads idle";
            return s;
        }
    *why = "best wave efficiency";
    return max_splits;
}

/* Software prefetch of the next key tile (decode.c's prefetch queue), or
 * none. The kernels read the cache in address order either way, which the
 * hardware prefetchers follow; what differs is whether the extra
 * instructions pay. On the AMD cores we measured they were needed: a Zen 4
 * core read 7.5 GB/s of a bf16 cache without them and 14-15 with them, and
 * a Zen 3 lost without them in bf16. On the Intel cores they cost more
 * than they bring (likely: each holds a fill buffer that the demand loads
 * need too, while the L2 streamer fetches the same lines on its own; we
 * had no counters to check). On a 2-core Ice Lake server (B = 2 x 32k,
 * H = 32, Hk = 8, D = 128, medians of three runs) f32 read 0.97-1.05
 * of the read bandwidth without them against 0.66-0.67 with, bf16
 * 0.61-0.62 against 0.51-0.52; on the 16-core Xeon (B = 8 x 32k, medians
 * of four runs) 16 threads read 0.82 in f32 without them against 0.67
 * with, bf16 0.67 against 0.60, while one thread of bf16 lost (0.45
 * against 0.55; f32 0.67 against 0.68). The rule is for the many-threaded
 * case that serving runs. Cores of other vendors get the AMD choice. TILEATTN_DECODE_PREFETCH=0 or
 * 1 decides instead (forced, if nonzero, before it). */
static tileattn_status choose_prefetch(int forced, ta_decode_desc *d) {
    if (forced) {
        d->prefetch_next_tile = forced > 0;
        d->prefetch_reason = "forced";
        return TILEATTN_OK;
    }
    int asked;
    tileattn_status st = ta_env_switch("TILEATTN_DECODE_PREFETCH", &asked);
    if (st) return st;
    if (asked >= 0) {
        d->prefetch_next_tile = asked;
        d->prefetch_reason = "TILEATTN_DECODE_PREFETCH";
        return TILEATTN_OK;
    }
    int intel = ta_cpu_features_get()->intel;
    d->prefetch_next_tile = !intel;
    d->prefetch_reason =
        intel ? "an Intel core: its L2 streamer follows the reads"
              : "not an Intel core; on the AMD ones measured the hardware alone fell short";
    return TILEATTN_OK;
}

tileattn_status ta_plan_decode(const tileattn_decode_args *args, const ta_decode_overrides *forced,
                               const ta_decode_kernels *kernels, ta_decode_desc *desc) {
    ta_decode_overrides none = {0, 0, 0};
    if (!forced) forced = &none;
    tileattn_status st = ta_validate_decode(args, 1);
    if (st) return st;
    if (!kernels) {
        kernels = ta_decode_kernels_select(&st);
        if (st) return st;
    }
    ta_decode_desc *d = desc;
    *d = (ta_decode_desc){0};
    describe_problem(args, d);
    d->kernels = kernels;
    st = choose_prefetch(forced->prefetch, d);
    if (st) return st;

    const ta_topology *topo = ta_topology_get();
    d->l1d_bytes = topo->l1d_bytes;
    d->l2_bytes = topo->l2_bytes;
    d->l3_bytes = topo->l3_bytes;

    int64_t dk = d->head_dim, dv = d->head_dim_v;
    int64_t row_bytes = (dk + dv) * (int64_t)ta_cache_dtype_size(d->cache_dtype);

    d->rows = d->group * d->seqlen_new;
    /* Counted at the usual widest key tile: block_k, chosen below,
     * depends on the heads per item (choose_key_interleave widens it only
     * where the rows leave room). */
    int64_t fit = (int64_t)(topo->l2_bytes / 2 / sizeof(float)) /
                  tile_floats_per_row(dk, dv, TA_DECODE_TILE_KEYS);
    if (fit < 8) fit = 8;
    d->rows_per_tile = d->rows < fit ? d->rows : fit;
    d->num_row_tiles = (d->rows + d->rows_per_tile - 1) / d->rows_per_tile;

    /* Head groups: one item walks the keys once for several KV heads, so
     * it reads whole token rows of the cache ([.., token, head, dim]) in
     * address order, not one head's slice of every row. A slice is a few
     * hundred bytes every Hk x D elements: the hardware prefetchers lose
     * the stream and every page yields a few rows per TLB miss, which
     * measured 2-3x below the machine's read bandwidth. Their Q rows and
     * accumulators stay within a quarter of L2, and so do the next tile's
     * K/V rows of all of them, prefetched while this one computes. */
    int64_t per_head = d->rows_per_tile * (dk + dv + 2);
    int64_t heads = (int64_t)(topo->l2_bytes / 4 / sizeof(float)) / per_head;
    d->heads_per_item =
        ta_clamp(forced->heads_per_item > 0 ? forced->heads_per_item : heads, 1, d->heads_kv);
    d->num_head_groups = (d->heads_kv + d->heads_per_item - 1) / d->heads_per_item;
    /* Tiles of a quarter of L2 over all the item's heads, at most
     * TA_DECODE_TILE_KEYS keys or one key group: this tile and the next, fetched while
     * this one computes, take half of L2. The kernels run on steps of a
     * few keys, each step preceded by its share of the next tile's lines
     * when the prefetch is in software (decode.c), so a long tile does
     * not mean long bursts of requests; what it buys
     * is fewer softmax calls, whose cost is per row and call (its maxima,
     * sums and rescale). On the 16-core Xeon (2 MiB L2; B = 8 x 32k tokens,
     * one thread) 64-key tiles read 0.61-0.63 of the read bandwidth in
     * bf16 and 0.66-0.69 in f32, against 0.50-0.52 and 0.57-0.62 with
     * the 2 x L1d tiles before (24 bf16 keys, 8 f32) in one call per head;
     * 128 keys lost on 16 threads. */
    int64_t tile_keys = (int64_t)(topo->l2_bytes / 4) / (row_bytes * d->heads_per_item) / 16 * 16;
    d->key_interleave = choose_key_interleave(d, &d->key_order_reason);
    /* Whole key groups per tile, so that every full tile is read in page order. */
    int64_t group_keys = d->key_interleave * TA_DECODE_STEP_KEYS;
    int64_t widest = group_keys > TA_DECODE_TILE_KEYS ? group_keys : TA_DECODE_TILE_KEYS;
    d->block_k = ta_clamp(ta_round_down(tile_keys, group_keys), group_keys, widest);

    d->num_threads = ta_team_size(args->num_threads);
    int64_t items = d->batch * d->num_head_groups * d->num_row_tiles;
    if (forced->splits > 0) {
        d->num_splits = forced->splits;
        d->split_reason = "forced";
    } else {
        d->num_splits = choose_splits(items, d->num_threads, d->longest_k, &d->split_reason);
    }
    int64_t longest = d->longest_k > 0 ? d->longest_k : 1;
    d->split_keys = ta_round_up((longest + d->num_splits - 1) / d->num_splits, d->block_k);
    d->num_work = items * d->num_splits;
    if (d->num_work < d->num_threads) d->num_threads = (int)d->num_work;

    int64_t rt = d->rows_per_tile;
    d->workspace_floats = ta_pad_floats(d->heads_per_item * rt * dk) +
                          d->heads_per_item * ta_pad_floats(rt * d->block_k) +
                          d->heads_per_item * ta_pad_floats(rt * (dv + 2));
    return ta_choose_placement(d->num_threads, &d->place_threads, &d->place_reason);
}

static void append(char *buf, size_t len, size_t *used, const char *fmt, ...) {
    if (*used >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

static const char *cache_dtype_name(tileattn_cache_dtype t) {
    switch (t) {
    case TILEATTN_CACHE_F32: return "float32";
    case TILEATTN_CACHE_F16: return "float16";
    case TILEATTN_CACHE_BF16: return "bfloat16";
    case TILEATTN_CACHE_INT8: return "int8 (per-block scales)";
    }
    return "?";
}

tileattn_status tileattn_describe_decode(const tileattn_decode_args *args, char *buf, size_t len) {
    if (!buf || len == 0) return TILEATTN_ERR_NULL_POINTER;
    ta_decode_desc d;
    tileattn_status st = ta_plan_decode(args, NULL, NULL, &d);
    if (st) return st;
    size_t used = 0;
    buf[0] = '\0';
    append(buf, len, &used,
           "decode: B=%lld Sq_new=%lld H=%lld Hk=%lld D=%lld Dv=%lld, cache %s %s "
           "(capacity %lld tokens), longest Sk=%lld%s\n",
           (long long)d.batch, (long long)d.seqlen_new, (long long)d.heads_q, (long long)d.heads_kv,
           (long long)d.head_dim, (long long)d.head_dim_v, d.paged ? "paged" : "contiguous",
           cache_dtype_name(d.cache_dtype), (long long)d.capacity, (long long)d.longest_k,
           d.append ? ", appending" : "");
    if (d.paged) append(buf, len, &used, "block size %lld\n", (long long)d.block_size);
    append(buf, len, &used, "kernels: %s\n", d.kernels->isa);
    append(buf, len, &used,
           "query tile: %lld rows (%lld heads per KV head x %lld new tokens) in %lld row "
           "tile(s); %lld KV head(s) per work item; key tile %lld keys (L1d %zu KiB, L2 %zu "
           "KiB)\n",
           (long long)d.rows_per_tile, (long long)d.group, (long long)d.seqlen_new,
           (long long)d.num_row_tiles, (long long)d.heads_per_item, (long long)d.block_k,
           d.l1d_bytes / 1024, d.l2_bytes / 1024);
    append(buf, len, &used,
           "split-KV: %lld chunk(s) of up to %lld keys (%s); %lld work items on %d thread(s)\n",
           (long long)d.num_splits, (long long)d.split_keys, d.split_reason, (long long)d.num_work,
           d.num_threads);
    if (d.key_interleave > 1)
        append(buf, len, &used, "keys in a tile: groups of %lld steps of %d tokens, %s\n",
               (long long)d.key_interleave, TA_DECODE_STEP_KEYS, d.key_order_reason);
    else
        append(buf, len, &used, "keys in a tile: %s\n", d.key_order_reason);
    append(buf, len, &used, "threads: %s\n", d.place_reason);
    append(buf, len, &used, "prefetch of the next key tile: %s (%s)\n",
           d.prefetch_next_tile ? "software" : "hardware only", d.prefetch_reason);
    return TILEATTN_OK;
}
