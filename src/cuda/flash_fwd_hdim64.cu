/* The forward kernels of head dimension 64 (see TA_CUDA_FWD_CONFIGS). */
#include "flash_fwd_launch.cuh"

cudaError_t ta_cuda_fwd_hdim64(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s) {
    return ta_cuda_fwd_dispatch<64>(d, a, s);
}
