/*
 * O += P.V, float32, 12 x 8 register tile, base NEON (the register plan is
 * in tile_f32_neon.h): 12 rows of O by 8 of its columns in registers,
 * accumulated over the keys. P's 12 rows are transposed into a stack buffer
 * a chunk of KC keys at a time (so any n fits in 12 KiB), then each group
 * of 8 output columns streams the chunk's rows of the V panel: O is loaded
 * and stored once per chunk, 24 vectors per 12 x 8 x KC FMAs. V comes from
 * pack_v as rows of round_up(dv, 8) floats, zero-padded columns.
 */
#include "tile_f32_neon.h"
#include "../ukernels_arm.h"

enum { KC = 256 };

void ta_pv_f32_12x8_neon(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                         const float *v_panel, float *o, int64_t ldo) {
    float pt[KC * TA_NEON_MR] __attribute__((aligned(16)));
    int64_t ldv = (dv + TA_NEON_NR - 1) / TA_NEON_NR * TA_NEON_NR;
    for (int64_t i = 0; i < m; i += TA_NEON_MR) {
        int mr = m - i < TA_NEON_MR ? (int)(m - i) : TA_NEON_MR;
        for (int64_t j0 = 0; j0 < n; j0 += KC) {
            int64_t kc = n - j0 < KC ? n - j0 : KC;
            ta_neon_transpose_a(mr, kc, p + i * ldp + j0, ldp, pt);
            for (int64_t c = 0; c < dv; c += TA_NEON_NR) {
                int64_t cols = dv - c < TA_NEON_NR ? dv - c : TA_NEON_NR;
                /* The chunk's sum starts from zero and joins O once: added
                 * to O key by key, past about 2^24 keys of similar weight O
                 * would stop growing. */
                float32x4_t acc[TA_NEON_MR][2];
                for (int r = 0; r < TA_NEON_MR; r++)
                    acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
                ta_neon_block_12x8(acc, kc, pt, v_panel + j0 * ldv + c, ldv);
                for (int r = 0; r < mr; r++) {
                    float32x4_t o0, o1;
                    ta_neon_load_row8(o + (i + r) * ldo + c, &o0, &o1, cols);
                    ta_neon_store_row8(o + (i + r) * ldo + c, vaddq_f32(o0, acc[r][0]),
                                       vaddq_f32(o1, acc[r][1]), cols);
                }
            }
        }
    }
}
