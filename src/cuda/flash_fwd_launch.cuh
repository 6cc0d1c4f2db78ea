/*
 * Launching one instantiation, and the per-head-dimension dispatch that the
 * flash_fwd_hdim*.cu files instantiate (one file per head dimension, so a
 * parallel build compiles them side by side).
 */
#ifndef TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH
#define TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH

#include <cuda_runtime.h>

#include "flash_fwd_kernel.cuh"
#include "plan_cuda.h"

/* The per-head-dimension entry points (flash_fwd_hdim{64,128,256}.cu).
 * They return cudaErrorInvalidValue for a tile configuration that is not
 * instantiated (the planner never asks for one). */
cudaError_t ta_cuda_fwd_hdim64(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);
cudaError_t ta_cuda_fwd_hdim128(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);
cudaError_t ta_cuda_fwd_hdim256(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s);

template <typename Traits>
cudaError_t ta_cuda_launch(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t stream) {
    auto kernel = ta_cuda_fwd_kernel<Traits>;
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
#define TA_CUDA_LAUNCH_IF(hd, bq, bk, w)                                                           \
    if constexpr (hd == kHd) {                                                                     \
        if (d.block_q == bq && d.block_k == bk && d.num_threads == 32 * w) {                       \
            if (d.dtype == TILEATTN_BF16)                                                          \
                return ta_cuda_launch<ta_cuda_fwd_traits<hd, bq, bk, w, __nv_bfloat16>>(d, a,      \
                                                                                        stream);   \
            return ta_cuda_launch<ta_cuda_fwd_traits<hd, bq, bk, w, __half>>(d, a, stream);        \
        }                                                                                          \
    }
    TA_CUDA_FWD_CONFIGS(TA_CUDA_LAUNCH_IF)
#undef TA_CUDA_LAUNCH_IF
    return cudaErrorInvalidValue;
}

#endif /* TILEATTN_CUDA_FLASH_FWD_LAUNCH_CUH */
