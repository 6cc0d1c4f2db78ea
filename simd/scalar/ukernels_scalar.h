/* The portable microkernels, one per file; the SIMD tables reuse some of
 * them (the dtype conversions of load_rows, for instance) for edge cases. */
#ifndef TILEATTN_UKERNELS_SCALAR_H
#define TILEATTN_UKERNELS_SCALAR_H

#include "ukernel.h"

void ta_load_rows_scalar(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                         int64_t stride, float *dst, int64_t ld_dst);
void ta_pack_rows_scalar(int64_t n, int64_t dim, const void *src, tileattn_dtype dtype,
                         int64_t stride, float *panel);
int64_t ta_packed_rows_floats_scalar(int64_t n, int64_t dim);
/* 16-bit inputs kept as they are (q_native tables): Q rows, and K panels
 * [ceil(n/nr)][groups][nr][width] (x16_rows_scalar.c). */
void ta_load_rows_x16_scalar(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                             int64_t stride, float *dst, int64_t ld_dst);
void ta_pack_k_x16_scalar(int64_t n, int64_t d, const void *src, int64_t stride, int64_t nr,
                          int64_t width, int64_t groups, float *panel);
void ta_qk_f32_scalar(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                      const float *k_panel, float scale, float *s, int64_t lds);
void ta_softmax_f32_scalar(int64_t m, int64_t n, float *s, int64_t lds, float *row_max,
                           float *row_sum, float *o, int64_t ldo, int64_t dv);
void ta_pv_f32_scalar(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                      const float *v_panel, float *o, int64_t ldo);

#endif /* TILEATTN_UKERNELS_SCALAR_H */
