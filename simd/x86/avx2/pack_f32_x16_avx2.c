/* Q rows, K and V panels (16-wide) in float32, converted from any dtype, avx2:
 * the body is ../common/pack_f32_tmpl.h. */
#include "vec_avx2.h"
#include "../ukernels_x86.h"

#define NV             2
#define LOAD_ROWS_NAME ta_load_rows_f32_avx2
#define PACK_K_NAME    ta_pack_k_f32_x16_avx2
#define PACKED_K_NAME  ta_packed_k_floats_x16_avx2
#define PACK_V_NAME    ta_pack_v_f32_x16_avx2
#define PACKED_V_NAME  ta_packed_v_floats_x16_avx2
#include "../common/pack_f32_tmpl.h"
