/* The AVX-512 + AVX512_BF16 table. It runs the float32 AVX-512 kernels
 * (bfloat16 inputs widened to float32 when packed, a shift, exact). A
 * Q.K^T kernel with VDPBF16PS on bfloat16 Q rows and K panels of pairs
 * (12 x 32 tile, 24 accumulators, products exact in float32) passed the
 * unit and numeric suites on the 16-core Xeon but ran at 80 GFLOP/s
 * against 160-165 for the float32 FMA kernel on the same tile (36 x 256 x
 * 128), and made bfloat16 attention 20-30% slower end to end, so it was
 * not adopted; P.V in bfloat16 would need P rounded to bfloat16 (outside
 * the float32 tolerance). Compiled in ta_simd_avx512bf16 with -mavx512bf16. */
#include "../ukernels_x86.h"

const ta_ukernels ta_ukernels_avx512bf16 = {
    .isa = "avx512bf16",
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
