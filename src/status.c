/* Status messages, dtype sizes and argument defaults. */
#include <stdint.h>

#include "tileattn.h"

const char *tileattn_status_string(tileattn_status status) {
    switch (status) {
    case TILEATTN_OK: return "success";
    case TILEATTN_ERR_NULL_POINTER: return "a required pointer is NULL";
    case TILEATTN_ERR_BAD_SIZE: return "a size is zero, negative or out of range";
    case TILEATTN_ERR_OVERFLOW: return "a size product overflows";
    case TILEATTN_ERR_SHAPE_MISMATCH: return "shapes or strides are inconsistent";
    case TILEATTN_ERR_BAD_VALUE: return "a value is out of range (scale, softcap, window, ...)";
    case TILEATTN_ERR_BAD_DTYPE: return "unsupported dtype for this argument";
    case TILEATTN_ERR_UNSUPPORTED: return "this combination of options is not supported";
    case TILEATTN_ERR_OUT_OF_MEMORY: return "out of memory";
    case TILEATTN_ERR_BAD_ISA:
        return "TILEATTN_ISA names an unknown instruction set (scalar, avx2, avx512, avx512bf16)";
    case TILEATTN_ERR_DEVICE: return "the GPU runtime failed (see tileattn_cuda_last_error_string)";
    case TILEATTN_ERR_BAD_ENV:
        return "an environment variable has a value it does not take (TILEATTN_DECODE_PREFETCH "
               "and TILEATTN_BIND_THREADS: 0 or 1)";
    }
    return "unknown status code";
}

size_t tileattn_dtype_size(tileattn_dtype dtype) {
    switch (dtype) {
    case TILEATTN_F32: return 4;
    case TILEATTN_F16: return 2;
    case TILEATTN_BF16: return 2;
    case TILEATTN_F64: return 8;
    }
    return 0;
}

void tileattn_forward_args_init(tileattn_forward_args *args) {
    if (!args) return;
    *args = (tileattn_forward_args){0};
    args->dtype = TILEATTN_F32;
    args->window_left = -1;
    args->window_right = -1;
    args->bias_dtype = TILEATTN_F32;
}

/* Products that overflow become INT64_MAX, which validation then rejects. */
static int64_t saturating_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

tileattn_tensor tileattn_tensor_contiguous(const void *data, int64_t seqlen, int64_t heads,
                                           int64_t dim) {
    int64_t row = saturating_mul(heads, dim);
    tileattn_tensor t = {data, saturating_mul(seqlen, row), row, dim};
    return t;
}

tileattn_tensor_out tileattn_tensor_out_contiguous(void *data, int64_t seqlen, int64_t heads,
                                                   int64_t dim) {
    int64_t row = saturating_mul(heads, dim);
    tileattn_tensor_out t = {data, saturating_mul(seqlen, row), row, dim};
    return t;
}
