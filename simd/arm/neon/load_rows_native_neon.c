/*
 * Q rows kept in their 16-bit input dtype (float16 or bfloat16), for the
 * tables whose Q.K^T multiplies 16-bit values (q_native in ukernel.h):
 * row r at dst + r * ld_dst floats, its dim elements, then zeros up to the
 * 2 ld_dst elements of the row (a pair kernel reads (q, 0) for an odd dim).
 */
#include <string.h>

#include "../ukernels_arm.h"

void ta_load_rows_x16_neon(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *dst, int64_t ld_dst) {
    (void)dtype; /* both 16-bit dtypes are copied as bits */
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *out = (uint16_t *)(dst + r * ld_dst);
        memcpy(out, (const uint16_t *)src + r * stride, (size_t)dim * sizeof(uint16_t));
        memset(out + dim, 0, (size_t)(2 * ld_dst - dim) * sizeof(uint16_t));
    }
}
