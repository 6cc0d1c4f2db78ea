/* The base NEON table (every ARMv8-A CPU): float32 kernels on 12 x 8
 * register tiles; float16 (FCVTL) and bfloat16 (a shift) are widened to
 * float32 when packed, exactly. */
#include "../ukernels_arm.h"

const ta_ukernels ta_ukernels_neon = {
    .isa = "neon",
    .mr = 12,
    .nr = 8,
    .dtypes = TA_DTYPES_ALL,
    .load_rows = ta_load_rows_f32_neon,
    .pack_k = ta_pack_k_f32_x8_neon,
    .packed_k_floats = ta_packed_k_floats_x8_neon,
    .pack_v = ta_pack_v_f32_x8_neon,
    .packed_v_floats = ta_packed_v_floats_x8_neon,
    .qk = ta_qk_f32_12x8_neon,
    .softmax = ta_softmax_f32_neon,
    .pv = ta_pv_f32_12x8_neon,
};
