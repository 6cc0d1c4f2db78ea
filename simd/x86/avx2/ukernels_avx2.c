/* The AVX2 table (AVX2 + FMA + F16C): float32 kernels on 6 x 16 register
 * tiles (12 ymm accumulators, BLIS's Haswell shape); float16 and bfloat16 are
 * converted to float32 when packed. */
#include "../ukernels_x86.h"

const ta_ukernels ta_ukernels_avx2 = {
    .isa = "avx2",
    .mr = 6,
    .nr = 16,
    .dtypes = TA_DTYPES_ALL,
    .load_rows = ta_load_rows_f32_avx2,
    .pack_k = ta_pack_k_f32_x16_avx2,
    .packed_k_floats = ta_packed_k_floats_x16_avx2,
    .pack_v = ta_pack_v_f32_x16_avx2,
    .packed_v_floats = ta_packed_v_floats_x16_avx2,
    .qk = ta_qk_f32_6x16_avx2,
    .softmax = ta_softmax_f32_avx2,
    .pv = ta_pv_f32_6x16_avx2,
};
