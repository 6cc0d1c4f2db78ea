/* The forward kernels of head dimension 128 (see TA_CUDA_FWD_CONFIGS). */
#include "flash_fwd_launch.cuh"

cudaError_t ta_cuda_fwd_hdim128(const ta_desc &d, const tileattn_forward_args &a, cudaStream_t s) {
    return ta_cuda_fwd_dispatch<128>(d, a, s);
}
