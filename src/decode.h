/*
 * Decoding with a KV cache: the internal description and the kernels.
 *
 * One work item is (sequence b, head group, row tile, split): for each KV
 * head of the group, the row tile packs the group = H / Hk query heads
 * that share it, times the Sq_new new tokens (row r = token * group + head
 * within the group), so each K and V row is read from memory once and used
 * by every row of the tile (GQA packing); the heads of the group walk the
 * keys together, so the item reads whole token rows of the cache. The keys of the item are visited
 * in tiles of block_k keys; a tile is described by one pointer per key, which is all that differs
 * between a contiguous and a paged cache, so both run the same kernels on the same tiles and give
 * bitwise the same results.
 *
 * Per key tile (FlashAttention-2's inner loop, with the K/V rows read
 * straight from the cache instead of a packed panel):
 *   qk:      S[r][j] = q_r . k_j            (Q already multiplied by scale)
 *   driver:  int8 K scale, softcap, ALiBi, mask on boundary tiles
 *   softmax: online-softmax update (the contract of ta_ukernels.softmax)
 *   pv:      O[r] += sum_j P[r][j] v_j      (P times the int8 V scale)
 */
#ifndef TILEATTN_DECODE_H
#define TILEATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "tileattn.h"

/* Keys per tile: the usual bound (what the planner's L2 rule may reach),
 * and the widest tile, which only a work item of one KV head takes, to
 * hold whole groups of its key order (decode_plan.c). The widest sets the
 * per-key pointer arrays the driver keeps on the stack. */
#define TA_DECODE_TILE_KEYS   64
#define TA_DECODE_MAX_BLOCK_K 256

/* Keys per kernel call within a tile: the driver runs every head of the
 * work item on one step before the next step (decode.c). */
#define TA_DECODE_STEP_KEYS 16

/* The span the hardware prefetchers track a stream in: none crosses a
 * 4 KiB page. */
#define TA_DECODE_PAGE_BYTES 4096

/* Runs CALL(dt) with dt the cache dtype as a compile-time constant, so
 * that an always_inline kernel body is compiled once per dtype, with the
 * conversion inside its vector loop and no branch there. */
#define TA_DECODE_SWITCH_DTYPE(dtype, CALL)                                                        \
    do {                                                                                           \
        switch (dtype) {                                                                           \
        case TILEATTN_CACHE_F32: CALL(TILEATTN_CACHE_F32); break;                                  \
        case TILEATTN_CACHE_F16: CALL(TILEATTN_CACHE_F16); break;                                  \
        case TILEATTN_CACHE_BF16: CALL(TILEATTN_CACHE_BF16); break;                                \
        case TILEATTN_CACHE_INT8: CALL(TILEATTN_CACHE_INT8); break;                                \
        }                                                                                          \
    } while (0)

typedef struct ta_decode_kernels {
    const char *isa; /* "scalar", "avx2", "avx512" */

    /* S[r*lds + j] = sum_c q[r*ldq + c] * k_rows[j][c] for r < rows, j < n,
     * k_rows[j] pointing at d elements of dtype (int8: the raw integers). */
    void (*qk)(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
               const void *const *k_rows, tileattn_cache_dtype dtype, float *s, int64_t lds);

    /* The online-softmax update: the forward's ta_ukernels.softmax of the
     * same instruction set (for each row, raise row_max, turn S into
     * exp(S - max) in place, update row_sum and rescale the row of O when
     * the max moved; exp(-inf) is exactly 0). */
    void (*softmax)(int64_t rows, int64_t n, float *s, int64_t lds, float *row_max, float *row_sum,
                    float *o, int64_t ldo, int64_t dv);

    /* O[r*ldo + c] += sum_j p[r*ldp + j] * v_rows[j][c] for r < rows, c < dv. */
    void (*pv)(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
               const void *const *v_rows, tileattn_cache_dtype dtype, float *o, int64_t ldo);

    /* Optional (NULL: Q and O are plain rows). A table whose kernels want
     * another column order for some cache dtype permutes each Q row in place
     * before a work item's first qk, and each O row back after its last pv;
     * in between qk, pv and the softmax's row rescale see the permuted rows
     * (the rescale is per element, so any order serves it). */
    void (*permute_q)(int64_t rows, int64_t d, float *q, int64_t ldq, tileattn_cache_dtype dtype);
    void (*unpermute_o)(int64_t rows, int64_t dv, float *o, int64_t ldo,
                        tileattn_cache_dtype dtype);
} ta_decode_kernels;

/* The column order of the bf16 split loads (decode_kernels_avx512.c in
 * chunks of 32 columns, decode_kernels_avx2.c in chunks of 16): in each
 * full chunk of each row, the even columns first, then the odd ones; the
 * columns after the last full chunk stay. The second function undoes the
 * first. chunk <= 64. */
void ta_decode_split_columns(int64_t rows, int64_t cols, float *x, int64_t ld, int chunk);
void ta_decode_merge_columns(int64_t rows, int64_t cols, float *x, int64_t ld, int chunk);

extern const ta_decode_kernels ta_decode_kernels_scalar;
extern const ta_decode_kernels ta_decode_kernels_avx2;
extern const ta_decode_kernels ta_decode_kernels_avx512;

/* The kernels tileattn_decode uses: the best this CPU runs, lowered to what
 * tileattn_isa_name() reports when TILEATTN_ISA is set (so
 * TILEATTN_ISA=scalar forces the portable path). NULL with *status set when
 * TILEATTN_ISA is invalid. */
const ta_decode_kernels *ta_decode_kernels_select(tileattn_status *status);

/* Every kernel table this CPU runs, portable first. Returns the count. */
int ta_decode_kernels_all(const ta_decode_kernels **list, int max);

/* Bytes per element of a cache dtype (INT8: 1), 0 if unknown. */
size_t ta_cache_dtype_size(tileattn_cache_dtype dtype);

typedef struct ta_decode_desc {
    /* --- what --- */
    int64_t batch;
    int64_t seqlen_new;
    int64_t heads_q;
    int64_t heads_kv;
    int64_t group; /* heads_q / heads_kv */
    int64_t head_dim;
    int64_t head_dim_v;
    tileattn_dtype dtype;
    tileattn_cache_dtype cache_dtype;
    int paged;
    int append;
    int64_t block_size;   /* paged block, or the int8 scale group of a contiguous cache */
    int64_t capacity;     /* tokens a sequence's cache holds */
    int64_t table_stride; /* block_table row stride */
    int64_t scale_blocks; /* contiguous int8: ceil(S_max / block_size) */
    int64_t longest_k;    /* max over b of Sk_b */
    int64_t total_keys;   /* sum over b of Sk_b (for bandwidth accounting) */
    float scale;
    float softcap;
    int64_t window_left;
    int64_t window_right; /* causal sets 0 */
    int has_alibi;
    int has_sinks;

    /* --- how --- */
    int64_t rows;          /* group * seqlen_new: the packed query rows of one KV head */
    int64_t rows_per_tile; /* rows of one work item (all of them unless L2 is too small) */
    int64_t num_row_tiles;
    int64_t heads_per_item;  /* KV heads one work item attends for together */
    int64_t num_head_groups; /* ceil(Hk / heads_per_item) */
    int64_t block_k;         /* keys per tile, from L2; a multiple of the key group */
    int64_t key_interleave;  /* P: tokens taken one per page in a step (1: key order) */
    const char *key_order_reason;
    int64_t num_splits; /* split-KV chunks per (b, head group, row tile) */
    int64_t split_keys; /* keys per chunk, a multiple of block_k */
    int64_t num_work;   /* batch * num_head_groups * num_row_tiles * num_splits */
    int num_threads;
    size_t workspace_floats; /* per thread, padded */
    size_t l1d_bytes, l2_bytes, l3_bytes;
    const char *split_reason;
    int place_threads;        /* bind the team one thread per core (threads.h) */
    const char *place_reason; /* why, or why not */
    int prefetch_next_tile;   /* software prefetch of the next key tile */
    const char *prefetch_reason;
    const ta_decode_kernels *kernels;
} ta_decode_desc;

/* Argument checks (tileattn_validate_decode); allow_no_output lets the
 * reference and the describer run without O. */
tileattn_status ta_validate_decode(const tileattn_decode_args *args, int allow_no_output);

/* Planner choices a caller may impose (tests use them to exercise the
 * merge, the head groups and both prefetch paths); 0 leaves one to the
 * planner. */
typedef struct ta_decode_overrides {
    int64_t splits;
    int64_t heads_per_item;
    int prefetch; /* 1: software prefetch of the next tile, -1: none */
} ta_decode_overrides;

/* Validates and plans. forced may be NULL; kernels NULL = selected. */
tileattn_status ta_plan_decode(const tileattn_decode_args *args, const ta_decode_overrides *forced,
                               const ta_decode_kernels *kernels, ta_decode_desc *desc);

/* tileattn_decode with the planner's choices overridden (see ta_plan_decode). */
tileattn_status ta_decode_run(const tileattn_decode_args *args, const ta_decode_overrides *forced,
                              const ta_decode_kernels *kernels);

/* Keys sequence b attends to: cache_seqlens[b] (+ Sq_new with an append). */
static inline int64_t ta_decode_seqlen_k(const tileattn_decode_args *a, int64_t b) {
    return (int64_t)a->cache_seqlens[b] + (a->k_new.data ? a->seqlen_new : 0);
}

/* Element offset of (sequence b, token pos, KV head) in a cache tensor,
 * through the block table when paged. pos must be inside the validated
 * length. */
static inline int64_t ta_cache_offset(const tileattn_decode_args *a,
                                      const tileattn_tensor_out *cache, int64_t b, int64_t pos,
                                      int64_t kv_head) {
    if (!a->block_table)
        return b * cache->stride_b + pos * cache->stride_s + kv_head * cache->stride_h;
    int64_t stride = a->block_table_stride ? a->block_table_stride : a->max_blocks_per_seq;
    int64_t block = a->block_table[b * stride + pos / a->block_size];
    return block * cache->stride_b + (pos % a->block_size) * cache->stride_s +
           kv_head * cache->stride_h;
}

/* Index into k_scales / v_scales of the int8 scale that covers (b, pos, KV head). */
static inline int64_t ta_cache_scale_index(const tileattn_decode_args *a, int64_t b, int64_t pos,
                                           int64_t kv_head) {
    int64_t logical = pos / a->block_size;
    if (a->block_table) {
        int64_t stride = a->block_table_stride ? a->block_table_stride : a->max_blocks_per_seq;
        return (int64_t)a->block_table[b * stride + logical] * a->heads_kv + kv_head;
    }
    int64_t blocks = (a->max_seqlen_cache + a->block_size - 1) / a->block_size;
    return (b * blocks + logical) * a->heads_kv + kv_head;
}

/* A cache element as float32 (int8: the raw integer, unscaled). */
float ta_cache_load_f32(const void *row, tileattn_cache_dtype dtype, int64_t idx);

#endif /* TILEATTN_DECODE_H */
