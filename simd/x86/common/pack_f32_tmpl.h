/*
 * Loading and packing over the ISA's vocabulary: storage dtypes become
 * float32 here, once per tile (F16C's vcvtph2ps for float16, a 16-bit shift
 * for bfloat16), so the hot kernels only ever see float32.
 *
 * Layouts (NR = NV vectors, defined by the including file):
 *   Q rows:  row-major, zero-filled up to ld_dst (load_rows);
 *   K panel: [ceil(n/NR)][d][NR], keys across a panel, zero-padded (pack_k);
 *   V panel: [n][round_up(dv, NR)], zero-padded columns (pack_v).
 */
#include "convert.h"

#define NR (NV * VF_LANES)

/* dst[c] = src[off + c] for c < dim, in float32 (exact). */
static inline void row_to_f32(int64_t dim, const void *src, tileattn_dtype dtype, int64_t off,
                              float *dst) {
    int64_t c = 0;
    if (dtype == TILEATTN_F32) {
        const float *p = (const float *)src + off;
        for (; c + VF_LANES <= dim; c += VF_LANES)
            vf_store(dst + c, vf_load(p + c));
    } else if (dtype == TILEATTN_F16) {
        const uint16_t *p = (const uint16_t *)src + off;
        for (; c + VF_LANES <= dim; c += VF_LANES)
            vf_store(dst + c, vf_load_f16(p + c));
    } else if (dtype == TILEATTN_BF16) {
        const uint16_t *p = (const uint16_t *)src + off;
        for (; c + VF_LANES <= dim; c += VF_LANES)
            vf_store(dst + c, vf_load_bf16(p + c));
    }
    for (; c < dim; c++)
        dst[c] = ta_load_f32(src, dtype, off + c);
}

void LOAD_ROWS_NAME(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                    int64_t stride, float *dst, int64_t ld_dst) {
    for (int64_t r = 0; r < rows; r++) {
        row_to_f32(dim, src, dtype, r * stride, dst + r * ld_dst);
        for (int64_t c = dim; c < ld_dst; c++)
            dst[r * ld_dst + c] = 0.0f;
    }
}

int64_t PACKED_K_NAME(int64_t n, int64_t d) {
    return (n + NR - 1) / NR * NR * d;
}

/* VF_LANES keys at a time: their rows converted to float32 into a small
 * buffer, then transposed VF_LANES x VF_LANES in registers into the panel.
 * Packing runs once per K block and work item; the scalar scatter it
 * replaced cost 40 ns per key at D = 128 (8% of a 240-row item's FMAs on
 * Zen 4). */
void PACK_K_NAME(int64_t n, int64_t d, const void *src, tileattn_dtype dtype, int64_t stride,
                 float *panel) {
    float rows[VF_LANES][TILEATTN_MAX_HEAD_DIM + VF_LANES];
    int64_t padded = (n + NR - 1) / NR * NR;
    int64_t dpad = (d + VF_LANES - 1) / VF_LANES * VF_LANES;
    for (int64_t j0 = 0; j0 < padded; j0 += VF_LANES) {
        for (int64_t jj = 0; jj < VF_LANES; jj++) {
            int64_t c = 0;
            if (j0 + jj < n) {
                row_to_f32(d, src, dtype, (j0 + jj) * stride, rows[jj]);
                c = d;
            }
            for (; c < dpad; c++)
                rows[jj][c] = 0.0f;
        }
        float *dst = panel + (j0 / NR) * d * NR + j0 % NR;
        for (int64_t c0 = 0; c0 < dpad; c0 += VF_LANES) {
            vf r[VF_LANES];
            for (int jj = 0; jj < VF_LANES; jj++)
                r[jj] = vf_load(rows[jj] + c0);
            vf_transpose(r);
            int64_t cols = d - c0 < VF_LANES ? d - c0 : VF_LANES;
            for (int64_t cc = 0; cc < cols; cc++)
                vf_store(dst + (c0 + cc) * NR, r[cc]);
        }
    }
}

int64_t PACKED_V_NAME(int64_t n, int64_t dv) {
    return n * ((dv + NR - 1) / NR * NR);
}

void PACK_V_NAME(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype, int64_t stride,
                 float *panel) {
    int64_t ldv = (dv + NR - 1) / NR * NR;
    for (int64_t j = 0; j < n; j++) {
        row_to_f32(dv, src, dtype, j * stride, panel + j * ldv);
        for (int64_t c = dv; c < ldv; c++)
            panel[j * ldv + c] = 0.0f;
    }
}
