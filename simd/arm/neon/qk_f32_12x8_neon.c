/*
 * S = scale Q.K^T, float32, 12 x 8 register tile, base NEON (the register plan is
 * in tile_f32_neon.h). Q's 12 rows are transposed once per row block into a
 * stack buffer (12 x D floats, at most 12 KiB), so each step of the head-dim
 * loop loads them as 3 vectors and feeds FMLA by element; then every panel
 * of 8 keys streams against them. The transpose costs 12 D moves per
 * 12 x n x D FMAs. K comes from pack_k as panels [ceil(n/8)][d][8],
 * zero-padded, so a prefix of the keys is a prefix of the panels.
 */
#include "tile_f32_neon.h"
#include "../ukernels_arm.h"

void ta_qk_f32_12x8_neon(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                         const float *k_panel, float scale, float *s, int64_t lds) {
    float qt[TILEATTN_MAX_HEAD_DIM * TA_NEON_MR] __attribute__((aligned(16)));
    for (int64_t i = 0; i < m; i += TA_NEON_MR) {
        int mr = m - i < TA_NEON_MR ? (int)(m - i) : TA_NEON_MR;
        ta_neon_transpose_a(mr, d, q + i * ldq, ldq, qt);
        for (int64_t j = 0; j < n; j += TA_NEON_NR) {
            const float *kp = k_panel + (j / TA_NEON_NR) * d * TA_NEON_NR;
            int64_t cols = n - j < TA_NEON_NR ? n - j : TA_NEON_NR;
            float32x4_t acc[TA_NEON_MR][2];
            for (int r = 0; r < TA_NEON_MR; r++)
                acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
            ta_neon_block_12x8(acc, d, qt, kp, TA_NEON_NR);
            /* Rows past mr hold 0 . K and are dropped. */
            for (int r = 0; r < mr; r++)
                ta_neon_store_row8(s + (i + r) * lds + j, vmulq_n_f32(acc[r][0], scale),
                                   vmulq_n_f32(acc[r][1], scale), cols);
        }
    }
}
