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

/* The fields both tables share; the P-dependent ones are the arguments. */
#define AMX_TABLE(...)                                                                             \
    {                                                                                              \
        .isa = "amx", .mr = 32, .nr = 32, .dtypes = TA_DTYPE_BIT(TILEATTN_BF16), .q_native = 1,    \
        .load_rows = ta_load_rows_x16_scalar, .pack_k = ta_pack_k_bf16_pairs_x32,                  \
        .packed_k_floats = ta_packed_k_floats_bf16_pairs_x32, .qk = ta_qk_bf16_32x32_amx,          \
        __VA_ARGS__                                                                                \
    }

static const ta_ukernels ta_ukernels_amx_pbf16 =
    AMX_TABLE(.p_bf16 = 1, .pack_v = ta_pack_v_bf16_pairs_x16,
              .packed_v_floats = ta_packed_v_floats_bf16_pairs_x16,
              .softmax = ta_softmax_pbf16_avx512, .pv = ta_pv_bf16_32x32_amx);

const ta_ukernels ta_ukernels_amx =
    AMX_TABLE(.pack_v = ta_pack_v_f32_x32_avx512, .packed_v_floats = ta_packed_v_floats_x32_avx512,
              .softmax = ta_softmax_f32_avx512, .pv = ta_pv_f32_12x32_avx512,
              .with_p_bf16 = &ta_ukernels_amx_pbf16);
