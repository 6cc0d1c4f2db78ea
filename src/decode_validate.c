/*
 * Argument checks for decoding. A KV cache is shared state that outlives the
 * call, so a bad block table or cache length must be caught before anything
 * is read from the cache or written to it: every check below runs first,
 * and a failing call leaves O, LSE, the caches and the scales untouched.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "convert.h"
#include "decode.h"
#include "desc.h"

#define CHECK(cond, status)                                                                        \
    do {                                                                                           \
        if (!(cond)) return (status);                                                              \
    } while (0)

size_t ta_cache_dtype_size(tileattn_cache_dtype dtype) {
    switch (dtype) {
    case TILEATTN_CACHE_F32: return 4;
    case TILEATTN_CACHE_F16:
    case TILEATTN_CACHE_BF16: return 2;
    case TILEATTN_CACHE_INT8: return 1;
    }
    return 0;
}

static int is_activation_dtype(tileattn_dtype d) {
    return d == TILEATTN_F32 || d == TILEATTN_F16 || d == TILEATTN_BF16;
}

static int compare_block(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Appending writes (and, for int8, requantizes) whole blocks from one thread
 * per sequence, so a block that a sequence appends into must be its alone,
 * at one place in its table: another sequence appending into it would race
 * and mix their tokens, one reading it as a prefix would have its tokens
 * overwritten, and the same sequence listing it twice would overwrite its
 * own. Prefix blocks that no sequence appends into may be shared freely.
 * Cost: a sort of the append blocks (about B x (Sq_new / P + 1)), then a
 * binary search for each block in use, which the range check reads anyway. */
static tileattn_status check_append_blocks_owned(const tileattn_decode_args *a, int64_t stride) {
    int64_t per_seq = (a->seqlen_new + a->block_size - 1) / a->block_size + 1, count = 0;
    int64_t *appended = malloc((size_t)(a->batch * per_seq) * sizeof *appended);
    if (!appended) return TILEATTN_ERR_OUT_OF_MEMORY;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t first = a->cache_seqlens[b] / a->block_size;
        int64_t last = (a->cache_seqlens[b] + a->seqlen_new - 1) / a->block_size;
        for (int64_t k = first; k <= last; k++)
            appended[count++] = a->block_table[b * stride + k];
    }
    qsort(appended, (size_t)count, sizeof *appended, compare_block);
    tileattn_status st = TILEATTN_OK;
    for (int64_t i = 1; i < count; i++) /* two appends into one block */
        if (appended[i] == appended[i - 1]) st = TILEATTN_ERR_SHAPE_MISMATCH;
    for (int64_t b = 0; b < a->batch && st == TILEATTN_OK; b++) {
        int64_t prefix = a->cache_seqlens[b] / a->block_size; /* blocks before its appends */
        for (int64_t k = 0; k < prefix; k++) {
            int64_t block = a->block_table[b * stride + k];
            if (bsearch(&block, appended, (size_t)count, sizeof *appended, compare_block)) {
                st = TILEATTN_ERR_SHAPE_MISMATCH; /* read here, appended into elsewhere */
                break;
            }
        }
    }
    free(appended);
    return st;
}

/* Whether every element of a [batch, seqlen, heads, dim] view is finite:
 * an int8 cache has no value for inf or NaN, and one would make its
 * block's scale inf. The view was checked first. */
static int all_finite(const tileattn_tensor *t, tileattn_dtype dtype, int64_t batch, int64_t seqlen,
                      int64_t heads, int64_t dim) {
    size_t es = tileattn_dtype_size(dtype);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t s = 0; s < seqlen; s++)
            for (int64_t h = 0; h < heads; h++) {
                const char *row = (const char *)t->data +
                                  (ptrdiff_t)(b * t->stride_b + s * t->stride_s + h * t->stride_h) *
                                      (ptrdiff_t)es;
                for (int64_t c = 0; c < dim; c++)
                    if (!isfinite(ta_load_f32(row, dtype, c))) return 0;
            }
    return 1;
}

/* Cache lengths and block tables: the data-dependent checks. */
static tileattn_status check_cache_contents(const tileattn_decode_args *a, int64_t capacity) {
    int64_t appended = a->k_new.data ? a->seqlen_new : 0;
    int64_t stride = a->block_table_stride ? a->block_table_stride : a->max_blocks_per_seq;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t len = a->cache_seqlens[b];
        CHECK(len >= 0 && len <= capacity, TILEATTN_ERR_BAD_SIZE);
        CHECK(len + appended <= capacity, TILEATTN_ERR_BAD_SIZE);
        if (!a->block_table) continue;
        int64_t used_blocks = (len + appended + a->block_size - 1) / a->block_size;
        for (int64_t k = 0; k < used_blocks; k++) {
            int32_t block = a->block_table[b * stride + k];
            CHECK(block >= 0 && block < a->num_blocks, TILEATTN_ERR_BAD_SIZE);
        }
    }
    if (a->block_table && appended) return check_append_blocks_owned(a, stride);
    return TILEATTN_OK;
}

tileattn_status ta_validate_decode(const tileattn_decode_args *a, int allow_no_output) {
    tileattn_status st;
    CHECK(a != NULL, TILEATTN_ERR_NULL_POINTER);
    CHECK(a->q.data && a->k_cache.data && a->v_cache.data && a->cache_seqlens,
          TILEATTN_ERR_NULL_POINTER);
    CHECK(allow_no_output || a->o.data, TILEATTN_ERR_NULL_POINTER);
    { /* with an append the caches and their scales are written too */
        int append = a->k_new.data != NULL;
        const ta_buffer bufs[11] = {{a->q.data, 0},
                                    {a->k_new.data, 0},
                                    {a->v_new.data, 0},
                                    {a->cache_seqlens, 0},
                                    {a->block_table, 0},
                                    {a->k_cache.data, append},
                                    {a->v_cache.data, append},
                                    {a->k_scales, append},
                                    {a->v_scales, append},
                                    {a->o.data, 1},
                                    {a->lse, 1}};
        CHECK(ta_no_buffer_passed_twice(bufs, 11), TILEATTN_ERR_SHAPE_MISMATCH);
    }
    CHECK(!a->k_new.data == !a->v_new.data, TILEATTN_ERR_NULL_POINTER);
    CHECK(is_activation_dtype(a->dtype), TILEATTN_ERR_BAD_DTYPE);
    size_t es = tileattn_dtype_size(a->dtype), ces = ta_cache_dtype_size(a->cache_dtype);
    CHECK(ces != 0, TILEATTN_ERR_BAD_DTYPE);
    int int8 = a->cache_dtype == TILEATTN_CACHE_INT8;
    CHECK(!int8 || (a->k_scales && a->v_scales), TILEATTN_ERR_NULL_POINTER);

    CHECK(a->batch >= 1 && a->batch <= INT32_MAX, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->seqlen_new >= 1 && a->seqlen_new <= INT32_MAX, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->heads_q >= 1 && a->heads_kv >= 1 && a->heads_q <= INT32_MAX, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->heads_q % a->heads_kv == 0, TILEATTN_ERR_SHAPE_MISMATCH);
    CHECK(a->head_dim >= 1 && a->head_dim <= TILEATTN_MAX_HEAD_DIM, TILEATTN_ERR_BAD_SIZE);
    CHECK(a->head_dim_v >= 0 && a->head_dim_v <= TILEATTN_MAX_HEAD_DIM, TILEATTN_ERR_BAD_SIZE);
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;

    CHECK(isfinite(a->scale) && a->scale >= 0.0f, TILEATTN_ERR_BAD_VALUE);
    CHECK(isfinite(a->softcap) && a->softcap >= 0.0f, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->window_left >= -1 && a->window_right >= -1, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->causal == 0 || a->causal == 1, TILEATTN_ERR_BAD_VALUE);
    CHECK(a->num_threads >= 0, TILEATTN_ERR_BAD_VALUE);

    /* The cache's geometry and capacity. */
    int64_t capacity, cache_n[3];
    if (a->block_table) {
        CHECK(a->block_size >= 1 && a->num_blocks >= 1 && a->max_blocks_per_seq >= 1,
              TILEATTN_ERR_BAD_SIZE);
        CHECK(a->num_blocks <= (int64_t)INT32_MAX + 1, TILEATTN_ERR_BAD_SIZE);
        CHECK(a->block_table_stride == 0 || a->block_table_stride >= a->max_blocks_per_seq,
              TILEATTN_ERR_SHAPE_MISMATCH);
        int64_t stride = a->block_table_stride ? a->block_table_stride : a->max_blocks_per_seq;
        int64_t table_extent;
        CHECK(!__builtin_mul_overflow(a->batch - 1, stride, &table_extent), TILEATTN_ERR_OVERFLOW);
        CHECK(!__builtin_add_overflow(table_extent, a->max_blocks_per_seq, &table_extent),
              TILEATTN_ERR_OVERFLOW);
        CHECK(table_extent <= PTRDIFF_MAX / 4, TILEATTN_ERR_OVERFLOW);
        CHECK(!__builtin_mul_overflow(a->max_blocks_per_seq, a->block_size, &capacity),
              TILEATTN_ERR_OVERFLOW);
        cache_n[0] = a->num_blocks, cache_n[1] = a->block_size;
    } else {
        CHECK(a->max_seqlen_cache >= 1, TILEATTN_ERR_BAD_SIZE);
        CHECK(!int8 || a->block_size >= 1, TILEATTN_ERR_BAD_SIZE);
        capacity = a->max_seqlen_cache;
        cache_n[0] = a->batch, cache_n[1] = a->max_seqlen_cache;
    }
    cache_n[2] = a->heads_kv;
    /* Positions are formed as cache length + Sq_new and compared in int64. */
    CHECK(capacity <= INT64_MAX / 4, TILEATTN_ERR_OVERFLOW);

    int64_t nq[3] = {a->batch, a->seqlen_new, a->heads_q};
    int64_t nkv[3] = {a->batch, a->seqlen_new, a->heads_kv};
    int64_t qs[3] = {a->q.stride_b, a->q.stride_s, a->q.stride_h};
    int64_t os[3] = {a->o.stride_b, a->o.stride_s, a->o.stride_h};
    int64_t kcs[3] = {a->k_cache.stride_b, a->k_cache.stride_s, a->k_cache.stride_h};
    int64_t vcs[3] = {a->v_cache.stride_b, a->v_cache.stride_s, a->v_cache.stride_h};
    if ((st = ta_check_view(nq, qs, a->head_dim, es))) return st;
    if ((st = ta_check_view(nq, os, dv, es))) return st;
    if (a->o.data) CHECK(ta_view_is_injective(nq, os, dv), TILEATTN_ERR_SHAPE_MISMATCH);
    if ((st = ta_check_view(cache_n, kcs, a->head_dim, ces))) return st;
    if ((st = ta_check_view(cache_n, vcs, dv, ces))) return st;
    if (a->k_new.data) {
        int64_t kns[3] = {a->k_new.stride_b, a->k_new.stride_s, a->k_new.stride_h};
        int64_t vns[3] = {a->v_new.stride_b, a->v_new.stride_s, a->v_new.stride_h};
        if ((st = ta_check_view(nkv, kns, a->head_dim, es))) return st;
        if ((st = ta_check_view(nkv, vns, dv, es))) return st;
        /* Appends write the caches: two tokens must not share an element. */
        CHECK(ta_view_is_injective(cache_n, kcs, a->head_dim), TILEATTN_ERR_SHAPE_MISMATCH);
        CHECK(ta_view_is_injective(cache_n, vcs, dv), TILEATTN_ERR_SHAPE_MISMATCH);
    }
    if (int8) { /* the scale arrays' extents */
        int64_t blocks = a->block_table ? a->num_blocks
                                        : (a->max_seqlen_cache + a->block_size - 1) / a->block_size;
        int64_t n;
        if (!a->block_table)
            CHECK(!__builtin_mul_overflow(blocks, a->batch, &blocks), TILEATTN_ERR_OVERFLOW);
        CHECK(!__builtin_mul_overflow(blocks, a->heads_kv, &n), TILEATTN_ERR_OVERFLOW);
        CHECK(n <= PTRDIFF_MAX / 4, TILEATTN_ERR_OVERFLOW);
    }

    /* Products the driver forms: rows of LSE and O, the partial results of
     * the split-KV merge (bounded by B * H * Sq_new * capacity-sized splits). */
    int64_t rows, tmp;
    CHECK(!__builtin_mul_overflow(a->batch, a->heads_q, &rows), TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(rows, a->seqlen_new, &rows), TILEATTN_ERR_OVERFLOW);
    CHECK(
        !__builtin_mul_overflow(rows, (int64_t)sizeof(double) * (TILEATTN_MAX_HEAD_DIM + 2), &tmp),
        TILEATTN_ERR_OVERFLOW);
    CHECK(!__builtin_mul_overflow(a->seqlen_new, a->heads_q / a->heads_kv, &tmp),
          TILEATTN_ERR_OVERFLOW);

    if ((st = ta_check_alibi_and_sinks(a->alibi_slopes, a->alibi_stride_b, a->batch, a->heads_q,
                                       a->sinks)))
        return st;
    if (int8 && a->k_new.data)
        CHECK(all_finite(&a->k_new, a->dtype, a->batch, a->seqlen_new, a->heads_kv, a->head_dim) &&
                  all_finite(&a->v_new, a->dtype, a->batch, a->seqlen_new, a->heads_kv, dv),
              TILEATTN_ERR_BAD_VALUE);
    return check_cache_contents(a, capacity);
}

tileattn_status tileattn_validate_decode(const tileattn_decode_args *args) {
    return ta_validate_decode(args, 0);
}

void tileattn_decode_args_init(tileattn_decode_args *args) {
    if (!args) return;
    *args = (tileattn_decode_args){0};
    args->dtype = TILEATTN_F32;
    args->cache_dtype = TILEATTN_CACHE_F32;
    args->window_left = -1;
    args->window_right = -1;
}
