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

/* The two kernels: mma.sync (sm_80 and later, flash_fwd_mma_kernel.cuh)
 * and wgmma (sm_90a only: compute capability 9.0, flash_fwd_wgmma_kernel.cuh). */
typedef enum ta_cuda_engine { TA_CUDA_ENGINE_MMA = 0, TA_CUDA_ENGINE_WGMMA = 1 } ta_cuda_engine;

/* Every instantiated forward kernel, as X(head_dim, block_q, block_k, warps,
 * engine). Smaller head dimensions run on the next larger instantiation,
 * zero-padded. Only these compile (each entry is nvcc time for every
 * target, in CI on two cores); the planner picks among them and
 * TILEATTN_CUDA_TILES may force one ("BQxBKxWARPS:ENGINE", e.g.
 * "128x64x4:mma"). */
#define TA_CUDA_FWD_CONFIGS(X)                                                                     \
    X(64, 64, 64, 4, MMA)                                                                          \
    X(64, 128, 64, 4, MMA)                                                                         \
    X(64, 64, 64, 4, WGMMA)                                                                        \
    X(64, 64, 128, 4, WGMMA)                                                                       \
    X(128, 64, 64, 4, MMA)                                                                         \
    X(128, 128, 64, 4, MMA)                                                                        \
    X(128, 128, 64, 8, MMA)                                                                        \
    X(128, 64, 64, 4, WGMMA)                                                                       \
    X(128, 128, 128, 8, WGMMA)                                                                     \
    X(256, 64, 32, 4, MMA)                                                                         \
    X(256, 128, 32, 8, MMA)

/* What the planner needs to know of the GPU; zeros when unknown. */
typedef struct ta_cuda_device {
    int sm_count;
    int cc; /* compute capability, 10 x major + minor (90 for H100 and H200) */
} ta_cuda_device;

/* The instantiated head dimension that serves head dimension d (d <= 256). */
int ta_cuda_kernel_head_dim(int64_t d);

/* Shared memory one block of a configuration needs, in bytes: the query
 * tile plus two stages of K and V tiles (16-bit elements). */
size_t ta_cuda_smem_bytes(int64_t kernel_head_dim, int64_t block_q, int64_t block_k,
                          ta_cuda_engine engine);

/* Validates args (ta_validate, then what the GPU kernels support) and fills
 * desc for the device dev. Pointers in args are only
 * checked for alignment, except cu_seqlens_q/k, which must be readable on
 * the host. On failure, why (if not NULL) receives a reason. */
tileattn_status ta_plan_cuda(const tileattn_forward_args *args, ta_cuda_device dev, ta_desc *desc,
                             char *why, size_t why_len);

/* The kernel family a planned description runs on. */
static inline ta_cuda_engine ta_cuda_desc_engine(const ta_desc *desc) {
    return (ta_cuda_engine)desc->gpu_engine;
}

#ifdef __cplusplus
}
#endif

#endif /* TILEATTN_PLAN_CUDA_H */
