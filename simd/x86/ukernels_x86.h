/*
 * The x86-64 microkernels, one family per file under avx512/ and avx2/, each
 * body shared through the ../common/ templates over the ISA's vector vocabulary
 * (vec_<isa>.h). Names carry operation, dtype, register tile and ISA.
 */
#ifndef TILEATTN_UKERNELS_X86_H
#define TILEATTN_UKERNELS_X86_H

#include "ukernel.h"

#define TA_X86_DECLARE(isa, tile)                                                                  \
    void ta_load_rows_f32_##isa(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,  \
                                int64_t stride, float *dst, int64_t ld_dst);                       \
    void ta_pack_k_f32_##tile##_##isa(int64_t n, int64_t d, const void *src, tileattn_dtype dtype, \
                                      int64_t stride, float *panel);                               \
    int64_t ta_packed_k_floats_##tile##_##isa(int64_t n, int64_t d);                               \
    void ta_pack_v_f32_##tile##_##isa(int64_t n, int64_t dv, const void *src,                      \
                                      tileattn_dtype dtype, int64_t stride, float *panel);         \
    int64_t ta_packed_v_floats_##tile##_##isa(int64_t n, int64_t dv);                              \
    void ta_softmax_f32_##isa(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,         \
                              float *row_sum, float *o, int64_t ldo, int64_t dv);                  \
    void ta_exp_f32_##isa(int64_t n, const float *x, float *y);

/* AVX-512: 12 x 32 register tiles (24 zmm accumulators of 32). */
TA_X86_DECLARE(avx512, x32)
void ta_qk_f32_12x32_avx512(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                            const float *k_panel, float scale, float *s, int64_t lds);
void ta_exp_for_bf16_avx512(int64_t n, const float *x, float *y); /* for its test */
void ta_pv_f32_12x32_avx512(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                            const float *v_panel, float *o, int64_t ldo);

/* K panels of bfloat16 pairs, 32 keys wide (pack_k_bf16_pairs_x32_avx512.c),
 * for the two kernels below; pairs per key padded to a multiple of 16. */
int64_t ta_bf16_pairs_padded(int64_t d);
void ta_pack_k_bf16_pairs_x32(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel);
int64_t ta_packed_k_floats_bf16_pairs_x32(int64_t n, int64_t d);

/* AVX512_BF16 (VDPBF16PS), bfloat16 inputs: Q.K^T on 12 x 32 register
 * tiles over bfloat16 Q rows and those panels. */
void ta_qk_bf16_12x32_avx512bf16(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                                 const float *k_panel, float scale, float *s, int64_t lds);

/* AMX (TDPBF16PS), bfloat16 inputs: Q.K^T on 32 x 32 blocks of 16 x 16
 * tiles over bfloat16 Q rows and those panels. */
void ta_qk_bf16_32x32_amx(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                          const float *k_panel, float scale, float *s, int64_t lds);

/* P rounded to bfloat16 for a bfloat16 P.V (the twins of the two tables
 * above, ukernel.h's with_p_bf16): the softmax that writes P so
 * (softmax_pbf16_avx512bf16.c, AVX512_BF16), V panels of key pairs, 16
 * columns per strip (pack_v_bf16_pairs_x16_avx512.c), and the two P.V
 * kernels. */
void ta_softmax_pbf16_avx512bf16(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,
                                 float *row_sum, float *o, int64_t ldo, int64_t dv);
void ta_pack_v_bf16_pairs_x16(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel);
int64_t ta_packed_v_floats_bf16_pairs_x16(int64_t n, int64_t dv);
void ta_pv_bf16_12x32_avx512bf16(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                 const float *v_panel, float *o, int64_t ldo);
void ta_pv_bf16_32x32_amx(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                          const float *v_panel, float *o, int64_t ldo);

/* The fields of the bfloat16 tables (amx, avx512bf16), as initializer
 * lists: each takes bfloat16 Q rows and K panels of pairs and has its own
 * Q.K^T; with float32 P its softmax and P.V are the avx512 ones over V
 * widened when packed, and its twin (with_p_bf16) rounds P to bfloat16
 * for a P.V of its own over V packed as key pairs. */
#define TA_BF16_TABLE_FIELDS(isa_, mr_, qk_)                                                       \
    .isa = isa_, .mr = mr_, .nr = 32, .dtypes = TA_DTYPE_BIT(TILEATTN_BF16), .q_native = 1,        \
    .load_rows = ta_load_rows_x16_scalar, .pack_k = ta_pack_k_bf16_pairs_x32,                      \
    .packed_k_floats = ta_packed_k_floats_bf16_pairs_x32, .qk = qk_
#define TA_P_F32_FIELDS                                                                            \
    .pack_v = ta_pack_v_f32_x32_avx512, .packed_v_floats = ta_packed_v_floats_x32_avx512,          \
    .softmax = ta_softmax_f32_avx512, .pv = ta_pv_f32_12x32_avx512
#define TA_P_BF16_FIELDS(pv_)                                                                      \
    .p_bf16 = 1, .pack_v = ta_pack_v_bf16_pairs_x16,                                               \
    .packed_v_floats = ta_packed_v_floats_bf16_pairs_x16, .softmax = ta_softmax_pbf16_avx512bf16,  \
    .pv = pv_

/* AVX2 + FMA: 6 x 16 register tiles (12 ymm accumulators of 16). */
TA_X86_DECLARE(avx2, x16)
void ta_qk_f32_6x16_avx2(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                         const float *k_panel, float scale, float *s, int64_t lds);
void ta_pv_f32_6x16_avx2(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                         const float *v_panel, float *o, int64_t ldo);

#endif /* TILEATTN_UKERNELS_X86_H */
