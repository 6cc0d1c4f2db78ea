/* The online-softmax update with the vector exp, avx512: the body is
 * ../common/softmax_f32_tmpl.h, the exp ../common/vexp_f32.h (<= 1 ULP).
 * Also vf_exp_for_bf16 alone, for its test (the P-rounding softmax, which
 * uses it, needs AVX512_BF16). */
#include "vec_avx512.h"
#include "../ukernels_x86.h"
#include "../common/vexp_f32.h"

#define SOFTMAX_NAME      ta_softmax_f32_avx512
#define EXP_NAME          ta_exp_f32_avx512
#define EXP_FOR_BF16_NAME ta_exp_for_bf16_avx512
#include "../common/softmax_f32_tmpl.h"
