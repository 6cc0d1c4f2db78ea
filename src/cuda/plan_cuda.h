/*
 * The GPU planner: arguments in, the shared kernel description (src/desc.h)
 * out, with the "how" half chosen for a GPU instead of for CPU caches.
 *
 * On the GPU the how-half means: block_q query rows per thread block (each
 * warp owns 16 or 32 of them), block_k keys per K/V tile in shared memory,
 * num_threads threads per block, num_q_tiles blocks along the grid's x axis
 * (the grid is query tiles x heads x batch, as in FlashAttention-2).
 */
#ifndef TILEATTN_PLAN_CUDA_H
#define TILEATTN_PLAN_CUDA_H

#include <stddef.h>

#include "desc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every instantiated forward kernel, as X(head_dim, block_q, block_k, warps).
 * Smaller head dimensions run on the next larger instantiation, zero-padded.
 * Only these compile (CI builds them on two cores, so each entry costs
 * minutes); the planner picks among them and TILEATTN_CUDA_TILES may force
 * one ("BQxBKxWARPS", e.g. "128x64x4"). */
#define TA_CUDA_FWD_CONFIGS(X)                                                                     \
    X(64, 64, 64, 4)                                                                               \
    X(64, 128, 64, 4)                                                                              \
    X(128, 64, 64, 4)                                                                              \
    X(128, 128, 64, 4)                                                                             \
    X(128, 128, 64, 8)                                                                             \
    X(256, 64, 32, 4)                                                                              \
    X(256, 128, 32, 8)

/* The instantiated head dimension that serves head dimension d (d <= 256). */
int ta_cuda_kernel_head_dim(int64_t d);

/* Shared memory one block of a configuration needs, in bytes: the query
 * tile plus two stages of K and V tiles (16-bit elements). */
size_t ta_cuda_smem_bytes(int64_t kernel_head_dim, int64_t block_q, int64_t block_k);

/* Validates args (ta_validate, then what the GPU kernels support) and fills
 * desc for a device with sm_count multiprocessors. Pointers in args are only
 * checked for alignment, except cu_seqlens_q/k, which must be readable on
 * the host. On failure, why (if not NULL) receives a reason. */
tileattn_status ta_plan_cuda(const tileattn_forward_args *args, int sm_count, ta_desc *desc,
                             char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif /* TILEATTN_PLAN_CUDA_H */
