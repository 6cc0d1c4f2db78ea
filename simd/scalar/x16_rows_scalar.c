/*
 * Portable: 16-bit inputs kept as they are, for the tables whose Q.K^T
 * multiplies float16 or bfloat16 values (q_native in ukernel.h: neonfhm,
 * neonbf16, amx). Copies only, so one portable version serves every ISA.
 */
#include <string.h>

#include "ukernels_scalar.h"

/* Q rows: row r at dst + r * ld_dst floats, its dim elements, then zeros up
 * to the 2 ld_dst elements of the row (a pair kernel reads (q, 0) for an odd
 * dim). */
void ta_load_rows_x16_scalar(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                             int64_t stride, float *dst, int64_t ld_dst) {
    (void)dtype; /* both 16-bit dtypes are copied as bits */
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *out = (uint16_t *)(dst + r * ld_dst);
        memcpy(out, (const uint16_t *)src + r * stride, (size_t)dim * sizeof(uint16_t));
        memset(out + dim, 0, (size_t)(2 * ld_dst - dim) * sizeof(uint16_t));
    }
}

/* K panels [ceil(n/nr)][groups][nr keys][width]: head-dim column c of key j
 * goes to group c / width, slot c % width (width 1: keys across, as FMLAL
 * reads them; width 2: pairs, as BFDOT and TDPBF16PS read them); keys past
 * n and columns past d are zero, and so are groups past the data. */
void ta_pack_k_x16_scalar(int64_t n, int64_t d, const void *src, int64_t stride, int64_t nr,
                          int64_t width, int64_t groups, float *panel) {
    const uint16_t *k = src;
    uint16_t *out = (uint16_t *)panel;
    int64_t padded = (n + nr - 1) / nr * nr;
    for (int64_t j0 = 0; j0 < padded; j0 += nr) {
        uint16_t *dst = out + j0 * groups * width;
        for (int64_t jj = 0; jj < nr; jj++) {
            const uint16_t *row = j0 + jj < n ? k + (j0 + jj) * stride : NULL;
            for (int64_t c = 0; c < groups * width; c++)
                dst[(c / width) * nr * width + jj * width + c % width] = row && c < d ? row[c] : 0;
        }
    }
}
