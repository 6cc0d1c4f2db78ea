/* S = Q.K^T, float32, 12 x 32 register tile, avx512: the body is ../common/qk_f32_tmpl.h. */
#include "vec_avx512.h"
#include "../ukernels_x86.h"

#define MR      12
#define NV      2
#define QK_NAME ta_qk_f32_12x32_avx512
#define QK_CASES                                                                                   \
    QK_CASE(1)                                                                                     \
    QK_CASE(2)                                                                                     \
    QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6) QK_CASE(7) QK_CASE(8) QK_CASE(9) QK_CASE(10)       \
        QK_CASE(11) QK_CASE(12)
#include "../common/qk_f32_tmpl.h"
