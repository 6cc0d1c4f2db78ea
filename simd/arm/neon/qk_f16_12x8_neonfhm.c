/*
 * S = scale Q.K^T for float16 inputs with FMLAL/FMLAL2 (FEAT_FHM), 12 x 8
 * register tile. Compiled with +fp16fml; the neonfhm table is chosen only
 * where HWCAP lists asimdfhm.
 *
 * FMLAL multiplies float16 lanes and adds the product to float32 lanes:
 * the product of two float16 values is exact in float32 and the sum is
 * rounded once, as an FMA does, so S is what the float32 kernels compute
 * from the widened inputs, without widening K (half the panel bytes) and
 * without converting Q. (The FP16 arithmetic of plain ASIMDHP, FMLA on
 * float16 lanes, would accumulate in float16: not accurate enough.) The
 * scale multiplies S once, in float32, so Q is never rounded again.
 *
 * Layouts:
 *   Q rows:  float16 (ta_load_rows_x16_scalar), transposed here per row block
 *            into [d][16] halves, rows 12..15 zero;
 *   K panel: [ceil(n/8)][d][8 keys] float16, zero-padded past n.
 * Register plan as in tile_f32_neon.h: 24 float32 accumulators (12 rows x
 * keys 0-3 and 4-7), one K vector of 8 keys, two Q vectors (rows 0-7 in
 * one, 8-11 in half of another): FMLAL takes keys 0-3 from the low half of
 * the K vector, FMLAL2 keys 4-7 from the high half, the row's value from a
 * lane of a Q vector.
 */
#include <arm_neon.h>
#include <string.h>

#include "tile_f32_neon.h"
#include "../ukernels_arm.h"
#include "../../scalar/ukernels_scalar.h"

enum { MR = TA_NEON_MR, NR = TA_NEON_NR, QT = 16 };

int64_t ta_packed_k_floats_f16_x8_neonfhm(int64_t n, int64_t d) {
    return ((n + NR - 1) / NR * NR * d + 1) / 2;
}

void ta_pack_k_f16_x8_neonfhm(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                              int64_t stride, float *panel) {
    (void)dtype; /* float16 only */
    ta_pack_k_x16_scalar(n, d, src, stride, NR, 1, d, panel);
}

#define ROW_LO(r)                                                                                  \
    acc[r][0] = vfmlalq_laneq_low_f16(acc[r][0], kv, q_lo, r);                                     \
    acc[r][1] = vfmlalq_laneq_high_f16(acc[r][1], kv, q_lo, r);
#define ROW_HI(r)                                                                                  \
    acc[8 + r][0] = vfmlalq_lane_low_f16(acc[8 + r][0], kv, q_hi, r);                              \
    acc[8 + r][1] = vfmlalq_lane_high_f16(acc[8 + r][1], kv, q_hi, r);

void ta_qk_f16_12x8_neonfhm(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                            const float *k_panel, float scale, float *s, int64_t lds) {
    uint16_t qt[TILEATTN_MAX_HEAD_DIM * QT] __attribute__((aligned(16)));
    const uint16_t *kpanel = (const uint16_t *)k_panel;
    for (int64_t i = 0; i < m; i += MR) {
        int mr = m - i < MR ? (int)(m - i) : MR;
        memset(qt, 0, (size_t)(d * QT) * sizeof(uint16_t));
        for (int r = 0; r < mr; r++) {
            const uint16_t *row = (const uint16_t *)(q + (i + r) * ldq);
            for (int64_t c = 0; c < d; c++)
                qt[c * QT + r] = row[c];
        }
        for (int64_t j = 0; j < n; j += NR) {
            const uint16_t *kp = kpanel + j * d;
            int64_t cols = n - j < NR ? n - j : NR;
            float32x4_t acc[MR][2];
            for (int r = 0; r < MR; r++)
                acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
            for (int64_t c = 0; c < d; c++) {
                float16x8_t kv = vreinterpretq_f16_u16(vld1q_u16(kp + c * NR));
                float16x8_t q_lo = vreinterpretq_f16_u16(vld1q_u16(qt + c * QT));
                float16x4_t q_hi = vreinterpret_f16_u16(vld1_u16(qt + c * QT + 8));
                ROW_LO(0)
                ROW_LO(1)
                ROW_LO(2) ROW_LO(3) ROW_LO(4) ROW_LO(5) ROW_LO(6) ROW_LO(7) ROW_HI(0) ROW_HI(1)
                    ROW_HI(2) ROW_HI(3)
            }
            for (int r = 0; r < mr; r++)
                ta_neon_store_row8(s + (i + r) * lds + j, vmulq_n_f32(acc[r][0], scale),
                                   vmulq_n_f32(acc[r][1], scale), cols);
        }
    }
}
