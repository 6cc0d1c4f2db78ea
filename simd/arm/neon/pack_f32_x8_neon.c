/*
 * Q rows, K and V panels (8 wide) in float32, converted from any storage
 * dtype once per tile, base NEON; the hot kernels only ever see float32.
 *   Q rows:  row-major, zero-filled up to ld_dst (load_rows);
 *   K panel: [ceil(n/8)][d][8], keys across a panel, zero-padded (pack_k);
 *   V panel: [n][round_up(dv, 8)], zero-padded columns (pack_v).
 */
#include "tile_f32_neon.h"
#include "../ukernels_arm.h"

void ta_load_rows_f32_neon(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *dst, int64_t ld_dst) {
    for (int64_t r = 0; r < rows; r++) {
        ta_neon_row_to_f32(dim, src, dtype, r * stride, dst + r * ld_dst);
        for (int64_t c = dim; c < ld_dst; c++)
            dst[r * ld_dst + c] = 0.0f;
    }
}

int64_t ta_packed_k_floats_x8_neon(int64_t n, int64_t d) {
    return (n + TA_NEON_NR - 1) / TA_NEON_NR * TA_NEON_NR * d;
}

/* 8 keys at a time: their rows converted into a small buffer, then
 * transposed 4 x 4 in registers (TRN1/TRN2 on 32- then 64-bit lanes) into
 * the panel, 4 head-dim columns of 4 keys per step. */
void ta_pack_k_f32_x8_neon(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *panel) {
    enum { NR = TA_NEON_NR };
    float rows[NR][TILEATTN_MAX_HEAD_DIM + 4] __attribute__((aligned(16)));
    int64_t padded = (n + NR - 1) / NR * NR;
    int64_t dpad = (d + 3) / 4 * 4;
    for (int64_t j0 = 0; j0 < padded; j0 += NR) {
        for (int64_t jj = 0; jj < NR; jj++) {
            int64_t c = 0;
            if (j0 + jj < n) {
                ta_neon_row_to_f32(d, src, dtype, (j0 + jj) * stride, rows[jj]);
                c = d;
            }
            for (; c < dpad; c++)
                rows[jj][c] = 0.0f;
        }
        float *dst = panel + (j0 / NR) * d * NR;
        for (int64_t c0 = 0; c0 < dpad; c0 += 4) {
            int64_t ncols = d - c0 < 4 ? d - c0 : 4;
            for (int h = 0; h < NR; h += 4) {
                float32x4_t r0 = vld1q_f32(rows[h] + c0), r1 = vld1q_f32(rows[h + 1] + c0);
                float32x4_t r2 = vld1q_f32(rows[h + 2] + c0), r3 = vld1q_f32(rows[h + 3] + c0);
                float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
                float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
                float32x4_t col[4];
                col[0] = vreinterpretq_f32_f64(
                    vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
                col[1] = vreinterpretq_f32_f64(
                    vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
                col[2] = vreinterpretq_f32_f64(
                    vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
                col[3] = vreinterpretq_f32_f64(
                    vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
                for (int64_t cc = 0; cc < ncols; cc++)
                    vst1q_f32(dst + (c0 + cc) * NR + h, col[cc]);
            }
        }
    }
}

int64_t ta_packed_v_floats_x8_neon(int64_t n, int64_t dv) {
    return n * ((dv + TA_NEON_NR - 1) / TA_NEON_NR * TA_NEON_NR);
}

void ta_pack_v_f32_x8_neon(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype,
                           int64_t stride, float *panel) {
    int64_t ldv = (dv + TA_NEON_NR - 1) / TA_NEON_NR * TA_NEON_NR;
    for (int64_t j = 0; j < n; j++) {
        ta_neon_row_to_f32(dv, src, dtype, j * stride, panel + j * ldv);
        for (int64_t c = dv; c < ldv; c++)
            panel[j * ldv + c] = 0.0f;
    }
}
