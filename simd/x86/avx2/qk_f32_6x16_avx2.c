/* S = Q.K^T, float32, 6 x 16 register tile, avx2: the body is ../common/qk_f32_tmpl.h. */
#include "vec_avx2.h"
#include "../ukernels_x86.h"

#define MR       6
#define NV       2
#define QK_NAME  ta_qk_f32_6x16_avx2
#define QK_CASES QK_CASE(1) QK_CASE(2) QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6)
#include "../common/qk_f32_tmpl.h"
