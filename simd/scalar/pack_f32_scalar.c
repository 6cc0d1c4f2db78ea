/* Portable packing: K and V tiles become plain row-major float32 panels. */
#include "ukernels_scalar.h"

/* Panel layout: n rows of dim floats, row after row. */
void ta_pack_rows_scalar(int64_t n, int64_t dim, const void *src, tileattn_dtype dtype,
                         int64_t stride, float *panel) {
    ta_load_rows_scalar(n, dim, src, dtype, stride, panel, dim);
}

int64_t ta_packed_rows_floats_scalar(int64_t n, int64_t dim) {
    return n * dim;
}
