/*
 * The kernel description: what the planner hands to every backend.
 *
 * Two halves, as FlashAttention's kernel traits plus its params struct:
 *   what - shapes, strides, dtypes, scale and mask, copied from the call's
 *          arguments and normalised (causal becomes window_right = 0, Dv = 0
 *          becomes D, scale = 0 becomes 1/sqrt(D));
 *   how  - tile sizes, the chosen microkernels, the work split and the
 *          cache sizes they were derived from.
 * Call-time pointers live in tileattn_forward_args, so a description can be
 * planned once and reused. The struct holds plain values only, so the same
 * bytes can be passed by value to a CUDA kernel.
 */
#ifndef TILEATTN_DESC_H
#define TILEATTN_DESC_H

#include <stddef.h>
#include <stdint.h>

#include "tileattn.h"

struct ta_ukernels;

typedef struct ta_desc {
    /* --- what --- */
    int64_t batch;
    int64_t seqlen_q; /* for varlen: the longest sequence of Q */
    int64_t seqlen_k; /* for varlen: the longest sequence of K */
    int64_t heads_q;
    int64_t heads_kv;
    int64_t group; /* heads_q / heads_kv */
    int64_t head_dim;
    int64_t head_dim_v;
    tileattn_dtype dtype;
    int64_t q_stride[3]; /* b, s, h in elements */
    int64_t k_stride[3];
    int64_t v_stride[3];
    int64_t o_stride[3];
    float scale;
    float softcap;        /* 0 = off */
    int64_t window_left;  /* -1 = unbounded */
    int64_t window_right; /* -1 = unbounded; causal sets 0 */
    int top_left;         /* align the diagonal to the top left (offset 0) */
    int varlen;
    int has_alibi;
    int64_t alibi_stride_b;
    tileattn_bias_kind bias_kind;
    tileattn_dtype bias_dtype;
    int64_t bias_stride[3]; /* b, h, q */
    int has_sinks;
    int has_lse;

    /* --- how --- */
    int64_t block_q;     /* query rows per work item; its packed K/V blocks are shared */
    int64_t block_r;     /* query rows per sub-tile (Br): S is block_r x block_k */
    int64_t block_k;     /* keys per K/V block (Bc) */
    int64_t num_q_tiles; /* ceil(seqlen_q / block_q) */
    int64_t num_work;    /* batch * heads_q * num_q_tiles work items */
    int num_threads;
    int place_threads;        /* bind the team one thread per core (threads.h) */
    const char *place_reason; /* why, or why not */
    int gpu_engine;           /* CUDA: the kernel family (ta_cuda_engine, src/cuda/plan_cuda.h) */
    size_t workspace_floats;  /* per thread, padded to a cache line */
    size_t l1d_bytes;         /* the cache sizes the tiles were derived from */
    size_t l2_bytes;
    size_t l3_bytes;
    const struct ta_ukernels *uk;
} ta_desc;

/* Fills the "what" half of desc from valid args (describe_problem.c),
 * for every backend's planner. */
void ta_describe_problem(const tileattn_forward_args *args, ta_desc *desc);

/* Validates args (see tileattn_validate) and fills desc. */
tileattn_status ta_plan(const tileattn_forward_args *args, ta_desc *desc);

/* Argument checks shared by every entry point. The reference admits F64
 * inputs and writes its own arrays, so it skips the checks on args->o. */
typedef enum ta_validate_mode { TA_VALIDATE_KERNEL, TA_VALIDATE_REFERENCE } ta_validate_mode;
tileattn_status ta_validate(const tileattn_forward_args *args, ta_validate_mode mode);

/* Checks that every offset of a [n0, n1, n2, dim] view (strides in
 * elements, any sign) fits in ptrdiff_t, in elements and in bytes. */
tileattn_status ta_check_view(const int64_t n[3], const int64_t stride[3], int64_t dim,
                              size_t elem_size);

/* Whether no two elements of a [n0, n1, n2, dim] view share an address
 * (an output must not be written twice). Call after ta_check_view. */
int ta_view_is_injective(const int64_t n[3], const int64_t stride[3], int64_t dim);

/* A buffer an entry point was given, and whether it writes there. */
typedef struct ta_buffer {
    const void *data;
    int written;
} ta_buffer;

/* 0 when a written buffer starts where another one starts (their first
 * elements are one: the same buffer passed twice), else 1. NULL entries
 * are skipped; read-only buffers may share; interleaved views that share
 * no element (a packed dQKV) start apart and pass. */
int ta_no_buffer_passed_twice(const ta_buffer *bufs, int n);

/* ALiBi slopes (batch rows of heads at stride_b, 0 = one row): stride_b
 * 0 or >= heads, the last index in range, every slope finite; sinks
 * (heads) may be -inf (no sink) but not +inf or NaN. Either NULL to skip. */
tileattn_status ta_check_alibi_and_sinks(const float *slopes, int64_t stride_b, int64_t batch,
                                         int64_t heads, const float *sinks);

#endif /* TILEATTN_DESC_H */
