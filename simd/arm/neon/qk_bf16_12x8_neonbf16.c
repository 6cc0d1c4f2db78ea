/*
 * S = scale Q.K^T for bfloat16 inputs with BFDOT (FEAT_BF16), 12 x 8
 * register tile. Compiled with +bf16; the neonbf16 table is chosen only
 * where HWCAP2 lists bf16.
 *
 * BFDOT adds to each float32 lane the products of a pair of bfloat16
 * values from each operand: acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1]. A
 * product of two bfloat16 values is exact in float32 (8 x 8 significand
 * bits); the instruction rounds the pair's sum (to odd) and flushes
 * subnormals, so S is a float32 sum of exact products with up to two
 * roundings per pair of terms, at twice the products per instruction of
 * float32 FMLA. The scale multiplies S once, in float32.
 *
 * Layouts:
 *   Q rows:  bfloat16 (ta_load_rows_x16_scalar), zero past d; transposed here
 *            per row block into [ceil(d/2)][12 rows][2] (3 vectors per pair
 *            step: rows 0-3, 4-7, 8-11), rows past m zero;
 *   K panel: [ceil(n/8)][ceil(d/2)][8 keys][2] bfloat16, zero-padded past n
 *            and past d (2 vectors per pair step: keys 0-3, keys 4-7).
 * Registers: 24 float32 accumulators, 2 K vectors, 3 Q vectors: 29 of 32.
 */
#include <arm_neon.h>
#include <string.h>

#include "tile_f32_neon.h"
#include "../ukernels_arm.h"
#include "../../scalar/ukernels_scalar.h"

enum { MR = TA_NEON_MR, NR = TA_NEON_NR };

int64_t ta_packed_k_floats_bf16_x8_neonbf16(int64_t n, int64_t d) {
    return (n + NR - 1) / NR * NR * ((d + 1) / 2);
}

void ta_pack_k_bf16_x8_neonbf16(int64_t n, int64_t d, const void *src, tileattn_dtype dtype,
                                int64_t stride, float *panel) {
    (void)dtype; /* bfloat16 only */
    ta_pack_k_x16_scalar(n, d, src, stride, NR, 2, (d + 1) / 2, panel);
}

#define ROW(r, qv, lane)                                                                           \
    acc[r][0] = vbfdotq_laneq_f32(acc[r][0], k0, qv, lane);                                        \
    acc[r][1] = vbfdotq_laneq_f32(acc[r][1], k1, qv, lane);

void ta_qk_bf16_12x8_neonbf16(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                              const float *k_panel, float scale, float *s, int64_t lds) {
    uint16_t qt[(TILEATTN_MAX_HEAD_DIM / 2) * MR * 2] __attribute__((aligned(16)));
    const uint16_t *kpanel = (const uint16_t *)k_panel;
    int64_t pairs = (d + 1) / 2;
    for (int64_t i = 0; i < m; i += MR) {
        int mr = m - i < MR ? (int)(m - i) : MR;
        memset(qt, 0, (size_t)(pairs * MR * 2) * sizeof(uint16_t));
        for (int r = 0; r < mr; r++) {
            const uint16_t *row = (const uint16_t *)(q + (i + r) * ldq);
            for (int64_t c = 0; c < 2 * pairs; c++) /* row[d] is load_rows' zero */
                qt[(c / 2) * MR * 2 + r * 2 + c % 2] = row[c];
        }
        for (int64_t j = 0; j < n; j += NR) {
            const uint16_t *kp = kpanel + j * pairs * 2;
            int64_t cols = n - j < NR ? n - j : NR;
            float32x4_t acc[MR][2];
            for (int r = 0; r < MR; r++)
                acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
            for (int64_t p = 0; p < pairs; p++) {
                bfloat16x8_t k0 = vreinterpretq_bf16_u16(vld1q_u16(kp + p * NR * 2));
                bfloat16x8_t k1 = vreinterpretq_bf16_u16(vld1q_u16(kp + p * NR * 2 + 8));
                const uint16_t *qp = qt + p * MR * 2;
                bfloat16x8_t q0 = vreinterpretq_bf16_u16(vld1q_u16(qp));
                bfloat16x8_t q1 = vreinterpretq_bf16_u16(vld1q_u16(qp + 8));
                bfloat16x8_t q2 = vreinterpretq_bf16_u16(vld1q_u16(qp + 16));
                ROW(0, q0, 0)
                ROW(1, q0, 1)
                ROW(2, q0, 2) ROW(3, q0, 3) ROW(4, q1, 0) ROW(5, q1, 1) ROW(6, q1, 2) ROW(7, q1, 3)
                    ROW(8, q2, 0) ROW(9, q2, 1) ROW(10, q2, 2) ROW(11, q2, 3)
            }
            for (int r = 0; r < mr; r++)
                ta_neon_store_row8(s + (i + r) * lds + j, vmulq_n_f32(acc[r][0], scale),
                                   vmulq_n_f32(acc[r][1], scale), cols);
        }
    }
}
