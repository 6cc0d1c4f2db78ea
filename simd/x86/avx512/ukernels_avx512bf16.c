/* The AVX-512 + AVX512_BF16 table. For now it runs the float32 AVX-512
 * kernels (bfloat16 inputs are widened to float32 when packed, a shift, which
 * is exact); vdpbf16ps kernels are still to come. Compiled in ta_simd_avx512bf16 with -mavx512bf16.
 */
#include "../ukernels_x86.h"

const ta_ukernels ta_ukernels_avx512bf16 = {
    .isa = "avx512bf16",
    .mr = 12,
    .nr = 32,
    .load_rows = ta_load_rows_f32_avx512,
    .pack_k = ta_pack_k_f32_x32_avx512,
    .packed_k_floats = ta_packed_k_floats_x32_avx512,
    .pack_v = ta_pack_v_f32_x32_avx512,
    .packed_v_floats = ta_packed_v_floats_x32_avx512,
    .qk = ta_qk_f32_12x32_avx512,
    .softmax = ta_softmax_f32_avx512,
    .pv = ta_pv_f32_12x32_avx512,
};
