/* The online-softmax update of the tables with p_bf16 (P rounded to
 * bfloat16 for a bfloat16 P.V): the body is ../common/softmax_f32_tmpl.h
 * with SOFTMAX_P_BF16, the exp ../common/vexp_f32.h (<= 1 ULP). Compiled
 * with -mavx512bf16: VCVTNE2PS2BF16 rounds 32 probabilities to bfloat16 in
 * one instruction (vec_avx512.h); both tables with such a twin (amx,
 * avx512bf16) run only where the CPU has AVX512_BF16. */
#include "vec_avx512.h"
#include "../ukernels_x86.h"
#include "../common/vexp_f32.h"

#define SOFTMAX_NAME   ta_softmax_pbf16_avx512bf16
#define SOFTMAX_P_BF16 1
#include "../common/softmax_f32_tmpl.h"
