/* The AMX table (AMX-TILE + AMX-BF16, with AVX-512), for bfloat16 inputs
 * only: Q.K^T with TDPBF16PS on bfloat16 Q rows and K panels
 * (qk_bf16_32x32_amx.c); softmax and P.V are the float32 AVX-512 kernels,
 * V widened when packed, so P is never rounded to bfloat16. float32 and
 * float16 inputs use the avx512 table.
 *
 * Its twin, ta_ukernels_amx_pbf16, used only when the caller allows P in
 * the input dtype, runs P.V on AMX tiles too (pv_bf16_32x32_amx.c): P
 * rounded to bfloat16 by the softmax, V packed as key pairs. */
#include "../ukernels_x86.h"
#include "../../scalar/ukernels_scalar.h"

static const ta_ukernels ta_ukernels_amx_pbf16 = {
    TA_BF16_TABLE_FIELDS("amx", 32, ta_qk_bf16_32x32_amx),
    TA_P_BF16_FIELDS(ta_pv_bf16_32x32_amx),
};

const ta_ukernels ta_ukernels_amx = {
    TA_BF16_TABLE_FIELDS("amx", 32, ta_qk_bf16_32x32_amx),
    TA_P_F32_FIELDS,
    .with_p_bf16 = &ta_ukernels_amx_pbf16,
};
