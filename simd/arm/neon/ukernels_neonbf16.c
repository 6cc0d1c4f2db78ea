/* The NEON + FEAT_BF16 table, for bfloat16 inputs only: Q.K^T with BFDOT on
 * bfloat16 Q rows and K panels (qk_bf16_12x8_neonbf16.c); softmax and P.V
 * are the base NEON float32 kernels, V widened when packed, so P is never
 * rounded to bfloat16. Other dtypes use the neonfhm or neon tables. */
#include "../ukernels_arm.h"
#include "../../scalar/ukernels_scalar.h"

const ta_ukernels ta_ukernels_neonbf16 = {
    .isa = "neonbf16",
    .mr = 12,
    .nr = 8,
    .dtypes = TA_DTYPE_BIT(TILEATTN_BF16),
    .q_native = 1,
    .load_rows = ta_load_rows_x16_scalar,
    .pack_k = ta_pack_k_bf16_x8_neonbf16,
    .packed_k_floats = ta_packed_k_floats_bf16_x8_neonbf16,
    .pack_v = ta_pack_v_f32_x8_neon,
    .packed_v_floats = ta_packed_v_floats_x8_neon,
    .qk = ta_qk_bf16_12x8_neonbf16,
    .softmax = ta_softmax_f32_neon,
    .pv = ta_pv_f32_12x8_neon,
};
