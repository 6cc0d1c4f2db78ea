/* The portable microkernel table: plain C, every CPU, the reference for the
 * SIMD tables' tests. */
#include "ukernels_scalar.h"

const ta_ukernels ta_ukernels_scalar = {
    .isa = "scalar",
    .mr = 1,
    .nr = 1,
    .dtypes = TA_DTYPES_ALL,
    .load_rows = ta_load_rows_scalar,
    .pack_k = ta_pack_rows_scalar,
    .packed_k_floats = ta_packed_rows_floats_scalar,
    .pack_v = ta_pack_rows_scalar,
    .packed_v_floats = ta_packed_rows_floats_scalar,
    .qk = ta_qk_f32_scalar,
    .softmax = ta_softmax_f32_scalar,
    .pv = ta_pv_f32_scalar,
};
