/* O += P.V, float32, 6 x 16 register tile, avx2: the body is ../common/pv_f32_tmpl.h. */
#include "vec_avx2.h"
#include "../ukernels_x86.h"

#define MR       6
#define NV       2
#define PV_NAME  ta_pv_f32_6x16_avx2
#define PV_CASES PV_CASE(1) PV_CASE(2) PV_CASE(3) PV_CASE(4) PV_CASE(5) PV_CASE(6)
#include "../common/pv_f32_tmpl.h"
