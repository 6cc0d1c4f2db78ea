/* The AVX-512 table (F, BW, VL, DQ + FMA, F16C): float32 kernels on 12 x 32
 * register tiles; float16 and bfloat16 are converted to float32 when packed. */
#include "../ukernels_x86.h"

const ta_ukernels ta_ukernels_avx512 = {
    .isa = "avx512",
    .mr = 12,
    .nr = 32,
    .dtypes = TA_DTYPES_ALL,
    .load_rows = ta_load_rows_f32_avx512,
    .pack_k = ta_pack_k_f32_x32_avx512,
    .packed_k_floats = ta_packed_k_floats_x32_avx512,
    .pack_v = ta_pack_v_f32_x32_avx512,
    .packed_v_floats = ta_packed_v_floats_x32_avx512,
    .qk = ta_qk_f32_12x32_avx512,
    .softmax = ta_softmax_f32_avx512,
    .pv = ta_pv_f32_12x32_avx512,
};
