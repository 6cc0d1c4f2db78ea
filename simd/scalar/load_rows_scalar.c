/* Portable: convert rows of any storage dtype to float32 rows (exact). */
#include "convert.h"
#include "ukernels_scalar.h"

void ta_load_rows_scalar(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                         int64_t stride, float *dst, int64_t ld_dst) {
    for (int64_t r = 0; r < rows; r++) {
        float *out = dst + r * ld_dst;
        for (int64_t c = 0; c < dim; c++)
            out[c] = ta_load_f32(src, dtype, r * stride + c);
        for (int64_t c = dim; c < ld_dst; c++)
            out[c] = 0.0f;
    }
}
