/* O += P.V, float32, 12 x 32 register tile, avx512: the body is ../common/pv_f32_tmpl.h. */
#include "vec_avx512.h"
#include "../ukernels_x86.h"

#define MR      12
#define NV      2
#define PV_NAME ta_pv_f32_12x32_avx512
#define PV_CASES                                                                                   \
    PV_CASE(1)                                                                                     \
    PV_CASE(2)                                                                                     \
    PV_CASE(3) PV_CASE(4) PV_CASE(5) PV_CASE(6) PV_CASE(7) PV_CASE(8) PV_CASE(9) PV_CASE(10)       \
        PV_CASE(11) PV_CASE(12)
#include "../common/pv_f32_tmpl.h"
