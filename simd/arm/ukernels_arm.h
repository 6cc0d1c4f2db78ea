/*
 * The AArch64 microkernels (Advanced SIMD, 32 x 128-bit registers), one
 * family per file under neon/. Names carry operation, dtype, register tile
 * and ISA, as on x86.
 */
#ifndef TILEATTN_UKERNELS_ARM_H
#define TILEATTN_UKERNELS_ARM_H

#include "ukernel.h"

/* Base NEON (every ARMv8-A): float32 on 12 x 8 register tiles. */
void ta_load_rows_f32_neon(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *dst, int64_t ld_dst);
void ta_pack_k_f32_x8_neon(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *panel);
int64_t ta_packed_k_floats_x8_neon(int64_t n, int64_t d);
void ta_pack_v_f32_x8_neon(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *panel);
int64_t ta_packed_v_floats_x8_neon(int64_t n, int64_t dv);
void ta_qk_f32_12x8_neon(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                         const float *k_panel, float scale, float *s, int64_t lds);
void ta_pv_f32_12x8_neon(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                         const float *v_panel, float *o, int64_t ldo);
void ta_softmax_f32_neon(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,
                         float *row_sum, float *o, int64_t ldo, int64_t dv);
void ta_exp_f32_neon(int64_t n, const float *x, float *y);

/* FEAT_FHM (asimdfhm), float16 inputs: Q.K^T with FMLAL on 12 x 8 tiles
 * over float16 Q rows and K panels. */
void ta_pack_k_f16_x8_neonfhm(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel);
int64_t ta_packed_k_floats_f16_x8_neonfhm(int64_t n, int64_t d);
void ta_qk_f16_12x8_neonfhm(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                            const float *k_panel, float scale, float *s, int64_t lds);

/* FEAT_BF16 (bf16), bfloat16 inputs: Q.K^T with BFDOT on 12 x 8 tiles over
 * bfloat16 Q rows and K panels of pairs. */
void ta_pack_k_bf16_x8_neonbf16(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                                int64_t stride, float *panel);
int64_t ta_packed_k_floats_bf16_x8_neonbf16(int64_t n, int64_t d);
void ta_qk_bf16_12x8_neonbf16(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                              const float *k_panel, float scale, float *s, int64_t lds);

#endif /* TILEATTN_UKERNELS_ARM_H */
