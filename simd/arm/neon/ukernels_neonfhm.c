/* The NEON + FEAT_FHM table, for float16 inputs only: Q.K^T with FMLAL on
 * float16 Q rows and K panels (qk_f16_12x8_neonfhm.c); softmax and P.V are
 * the base NEON float32 kernels, V widened when packed, so P is never
 * rounded to float16. Other dtypes use the neon table. */
#include "../ukernels_arm.h"
#include "../../scalar/ukernels_scalar.h"

const ta_ukernels ta_ukernels_neonfhm = {
    .isa = "neonfhm",
    .mr = 12,
    .nr = 8,
    .dtypes = TA_DTYPE_BIT(TILEATTN_F16),
    .q_native = 1,
    .load_rows = ta_load_rows_x16_scalar,
    .pack_k = ta_pack_k_f16_x8_neonfhm,
    .packed_k_floats = ta_packed_k_floats_f16_x8_neonfhm,
    .pack_v = ta_pack_v_f32_x8_neon,
    .packed_v_floats = ta_packed_v_floats_x8_neon,
    .qk = ta_qk_f16_12x8_neonfhm,
    .softmax = ta_softmax_f32_neon,
    .pv = ta_pv_f32_12x8_neon,
};
