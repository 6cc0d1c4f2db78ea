/*
 * Launching one instantiation, and the per-head-dimension dispatch that the
 * flash_fwd_hdim*.cu files instantiate (one file per head dimension, so a
 * parallel build compiles them side by side).
 */
#ifndef TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH
#define TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH

#include <cuda_runtime.h>

#include "flash_fwd_mma_kernel.cuh"
#include "flash_fwd_wgmma_kernel.cuh"
#include "plan_cuda.h"

/* The per-head-dimension entry points (flash_fwd_hdim{64,128,256}.cu).
 * They return cudaErrorInvalidValue for a tile configuration that is not
 * instantiated (the planner never asks for one). */
cudaError_t ta_cuda_fwd_hdim64(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);
cudaError_t ta_cuda_fwd_hdim128(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);
cudaError_t ta_cuda_fwd_hdim256(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);

/* The kernel template of each engine, and its traits. */
template <ta_cuda_engine kEngine, int kHd, int kBq, int kBk, int kWarps, typename Element>
struct ta_cuda_kernel_of;
template <int kHd, int kBq, int kBk, int kWarps, typename Element>
struct ta_cuda_kernel_of<TA_CUDA_ENGINE_MMA, kHd, kBq, kBk, kWarps, Element> {
    using Traits = ta_cuda_fwd_traits<kHd, kBq, kBk, kWarps, Element>;
    static constexpr auto kernel = ta_cuda_fwd_mma_kernel<Traits>;
};
template <int kHd, int kBq, int kBk, int kWarps, typename Element>
struct ta_cuda_kernel_of<TA_CUDA_ENGINE_WGMMA, kHd, kBq, kBk, kWarps, Element> {
    using Traits = ta_cuda_wgmma_traits<kHd, kBq, kBk, kWarps, Element>;
    static constexpr auto kernel = ta_cuda_fwd_wgmma_kernel<Traits>;
};

template <typename Kernel>
cudaError_t ta_cuda_launch(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t stream) {
    using Traits = typename Kernel::Traits;
    auto kernel = Kernel::kernel;
    /* The planner states the block's shared memory in the description from
     * its own formula (ta_cuda_smem_bytes, C); the kernel carves the traits'
     * layout. Refuse to run if the two ever disagree (the suite forces
     * every configuration, so it would catch that). */
    if ((size_t)Traits::kSmemBytes != d.l1d_bytes) return cudaErrorInvalidConfiguration;
    /* More than 48 KB of dynamic shared memory must be asked for. */
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           Traits::kSmemBytes);
    if (err != cudaSuccess) return err;
    dim3 grid((unsigned)d.num_q_tiles, (unsigned)d.heads_q, (unsigned)d.batch);
    kernel<<<grid, Traits::kNThreads, Traits::kSmemBytes, stream>>>(d, a);
    return cudaGetLastError();
}

/* Dispatches to the configurations of TA_CUDA_FWD_CONFIGS with head dim kHd. */
template <int kHd>
cudaError_t ta_cuda_fwd_dispatch(const ta_desc &d, const tileattn_forward_args &a,
                                 cudaStream_t stream) {
#define TA_CUDA_LAUNCH_IF(hd, bq, bk, w, e)                                                        \
    if constexpr (hd == kHd) {                                                                     \
        if (d.block_q == bq && d.block_k == bk && d.num_threads == 32 * w &&                       \
            d.gpu_engine == TA_CUDA_ENGINE_##e) {                                                  \
            if (d.dtype == TILEATTN_BF16)                                                          \
                return ta_cuda_launch<                                                             \
                    ta_cuda_kernel_of<TA_CUDA_ENGINE_##e, hd, bq, bk, w, __nv_bfloat16>>(d, a,     \
                                                                                         stream);  \
            return ta_cuda_launch<ta_cuda_kernel_of<TA_CUDA_ENGINE_##e, hd, bq, bk, w, __half>>(   \
                d, a, stream);                                                                     \
        }                                                                                          \
    }
    TA_CUDA_FWD_CONFIGS(TA_CUDA_LAUNCH_IF)
#undef TA_CUDA_LAUNCH_IF
    return cudaErrorInvalidValue;
}

#endif /* TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH */
