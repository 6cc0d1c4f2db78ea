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

/* The fields both tables share; the P-dependent ones are the arguments. */
#define AVX512BF16_TABLE(...)                                                                      \
    {                                                                                              \
        .isa = "avx512bf16", .mr = 12, .nr = 32, .dtypes = TA_DTYPE_BIT(TILEATTN_BF16),            \
        .q_native = 1, .load_rows = ta_load_rows_x16_scalar, .pack_k = ta_pack_k_bf16_pairs_x32,   \
        .packed_k_floats = ta_packed_k_floats_bf16_pairs_x32, .qk = ta_qk_bf16_12x32_avx512bf16,   \
        __VA_ARGS__                                                                                \
    }

static const ta_ukernels ta_ukernels_avx512bf16_pbf16 =
    AVX512BF16_TABLE(.p_bf16 = 1, .pack_v = ta_pack_v_bf16_pairs_x16,
                     .packed_v_floats = ta_packed_v_floats_bf16_pairs_x16,
                     .softmax = ta_softmax_pbf16_avx512, .pv = ta_pv_bf16_12x32_avx512bf16);

const ta_ukernels ta_ukernels_avx512bf16 =
    AVX512BF16_TABLE(.pack_v = ta_pack_v_f32_x32_avx512,
                     .packed_v_floats = ta_packed_v_floats_x32_avx512,
                     .softmax = ta_softmax_f32_avx512, .pv = ta_pv_f32_12x32_avx512,
                     .with_p_bf16 = &ta_ukernels_avx512bf16_pbf16);
