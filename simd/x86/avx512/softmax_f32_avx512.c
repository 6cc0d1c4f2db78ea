/* The online-softmax update with the vector exp, avx512: the body is
 * ../common/softmax_f32_tmpl.h, the exp ../common/vexp_f32.h (<= 1 ULP). */
#include "vec_avx512.h"
#include "../ukernels_x86.h"
#include "../common/vexp_f32.h"

#define SOFTMAX_NAME ta_softmax_f32_avx512
#define EXP_NAME     ta_exp_f32_avx512
#include "../common/softmax_f32_tmpl.h"
