/* The AVX-512 + AVX512_BF16 table, for bfloat16 inputs only: Q.K^T with
 * VDPBF16PS on bfloat16 Q rows and K panels of pairs
 * (qk_bf16_12x32_avx512bf16.c); softmax and P.V are the float32 AVX-512
 * kernels, V widened when packed (a shift, exact), so P is never rounded
 * to bfloat16. float32 and float16 inputs use the avx512 table.
 *
 * Its twin, ta_ukernels_avx512bf16_pbf16, used only when the caller allows
 * P in the input dtype, runs P.V with VDPBF16PS too: P rounded to
 * bfloat16 by the softmax, V packed as key pairs.
 *
 * Whether VDPBF16PS pays depends on the core: twice the FMA loop's FLOP/s
 * on a Zen 4, half of it on the 16-core Xeon this project measured (which
 * has AMX, chosen before this table). An earlier version of this table ran
 * the float32 kernels for every dtype, after a VDPBF16PS Q.K^T measured
 * there at 80 GFLOP/s against 160-165 for the float32 FMA kernel. Compiled
 * in ta_simd_avx512bf16 with -mavx512bf16. */
#include "../ukernels_x86.h"
#include "../../scalar/ukernels_scalar.h"

static const ta_ukernels ta_ukernels_avx512bf16_pbf16 = {
    TA_BF16_TABLE_FIELDS("avx512bf16", 12, ta_qk_bf16_12x32_avx512bf16),
    TA_P_BF16_FIELDS(ta_pv_bf16_12x32_avx512bf16),
};

const ta_ukernels ta_ukernels_avx512bf16 = {
    TA_BF16_TABLE_FIELDS("avx512bf16", 12, ta_qk_bf16_12x32_avx512bf16),
    TA_P_F32_FIELDS,
    .with_p_bf16 = &ta_ukernels_avx512bf16_pbf16,
};
