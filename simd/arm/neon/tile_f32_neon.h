/*
 * What the base NEON kernels share: storage dtype -> float32 conversion of
 * a row, partial loads and stores, and the 12 x 8 register block of qk and
 * pv.
 *
 * Register blocking (32 vector registers of 4 floats): a 12 x 8 block of
 * the result is 24 accumulators (12 rows x 2 vectors); each step of the
 * reduction loads the 12 left-hand values as 3 vectors (a column of Q or P,
 * transposed beforehand) and the 8 right-hand values as 2 vectors (a row of
 * the K or V panel), then issues 24 FMLA-by-element, one per accumulator,
 * taking its row's value from a lane of the 3 vectors. 24 + 3 + 2 = 29
 * registers, none spilled, 5 loads per 24 FMAs. 8 x 12 would need as many;
 * 12 x 8 keeps the panels 8 wide, a divisor of every common head dim, so pv
 * wastes no columns at D = 64 or 128.
 */
#ifndef TILEATTN_TILE_F32_NEON_H
#define TILEATTN_TILE_F32_NEON_H

#include <arm_neon.h>
#include <stdint.h>

#include "convert.h"

#define TA_NEON_MR 12 /* rows of the register block */
#define TA_NEON_NR 8  /* columns: keys for qk, output columns for pv */

/* dst[c] = src[off + c] for c < dim, in float32: FCVTL widens float16
 * (exact), a 16-bit shift widens bfloat16 (exact). */
static inline void ta_neon_row_to_f32(int64_t dim, const void *src, tileattn_dtype dtype,
                                      int64_t off, float *dst) {
    int64_t c = 0;
    if (dtype == TILEATTN_F32) {
        const float *p = (const float *)src + off;
        for (; c + 4 <= dim; c += 4)
            vst1q_f32(dst + c, vld1q_f32(p + c));
    } else if (dtype == TILEATTN_F16) {
        const uint16_t *p = (const uint16_t *)src + off;
        for (; c + 4 <= dim; c += 4)
            vst1q_f32(dst + c, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + c))));
    } else if (dtype == TILEATTN_BF16) {
        const uint16_t *p = (const uint16_t *)src + off;
        for (; c + 4 <= dim; c += 4)
            vst1q_f32(dst + c, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p + c), 16)));
    }
    for (; c < dim; c++)
        dst[c] = ta_load_f32(src, dtype, off + c);
}

/* The first n (< 4) floats at p, the other lanes `fill`; memory past n is
 * not read (it may be a guard or the end of a page). */
static inline float32x4_t ta_neon_load_n(const float *p, int64_t n, float fill) {
    float buf[4] = {fill, fill, fill, fill};
    for (int64_t i = 0; i < n; i++)
        buf[i] = p[i];
    return vld1q_f32(buf);
}

static inline void ta_neon_store_n(float *p, float32x4_t v, int64_t n) {
    float buf[4];
    vst1q_f32(buf, v);
    for (int64_t i = 0; i < n; i++)
        p[i] = buf[i];
}

/* cols (0..8) of one accumulator row pair. */
static inline void ta_neon_store_row8(float *p, float32x4_t lo, float32x4_t hi, int64_t cols) {
    if (cols >= 8) {
        vst1q_f32(p, lo);
        vst1q_f32(p + 4, hi);
    } else if (cols > 4) {
        vst1q_f32(p, lo);
        ta_neon_store_n(p + 4, hi, cols - 4);
    } else if (cols == 4) {
        vst1q_f32(p, lo);
    } else if (cols > 0) {
        ta_neon_store_n(p, lo, cols);
    }
}

static inline void ta_neon_load_row8(const float *p, float32x4_t *lo, float32x4_t *hi,
                                     int64_t cols) {
    *lo = cols >= 4 ? vld1q_f32(p) : ta_neon_load_n(p, cols, 0.0f);
    *hi = cols >= 8  ? vld1q_f32(p + 4)
          : cols > 4 ? ta_neon_load_n(p + 4, cols - 4, 0.0f)
                     : vdupq_n_f32(0.0f);
}

/* Copies rows [0, mr) x columns [0, len) of a row-major A (lda) into at,
 * column after column, TA_NEON_MR floats per column, rows mr.. zero: the
 * left-hand operand as the register block reads it. */
static inline void ta_neon_transpose_a(int mr, int64_t len, const float *a, int64_t lda,
                                       float *at) {
    for (int64_t c = 0; c < len; c++) {
        for (int r = 0; r < mr; r++)
            at[c * TA_NEON_MR + r] = a[r * lda + c];
        for (int r = mr; r < TA_NEON_MR; r++)
            at[c * TA_NEON_MR + r] = 0.0f;
    }
}

/* acc[12][2] += at[c][0..12) (x) b[c * ldb + 0..8) over c < len: the inner
 * loop of both qk and pv (see the register plan above). */
#define TA_NEON_ROW(r, av, lane)                                                                   \
    acc[r][0] = vfmaq_laneq_f32(acc[r][0], b0, av, lane);                                          \
    acc[r][1] = vfmaq_laneq_f32(acc[r][1], b1, av, lane);

static inline __attribute__((always_inline)) void ta_neon_block_12x8(float32x4_t acc[TA_NEON_MR][2],
                                                                     int64_t len, const float *at,
                                                                     const float *b, int64_t ldb) {
    for (int64_t c = 0; c < len; c++) {
        float32x4_t a0 = vld1q_f32(at + c * TA_NEON_MR);
        float32x4_t a1 = vld1q_f32(at + c * TA_NEON_MR + 4);
        float32x4_t a2 = vld1q_f32(at + c * TA_NEON_MR + 8);
        float32x4_t b0 = vld1q_f32(b + c * ldb);
        float32x4_t b1 = vld1q_f32(b + c * ldb + 4);
        TA_NEON_ROW(0, a0, 0)
        TA_NEON_ROW(1, a0, 1)
        TA_NEON_ROW(2, a0, 2)
        TA_NEON_ROW(3, a0, 3)
        TA_NEON_ROW(4, a1, 0)
        TA_NEON_ROW(5, a1, 1)
        TA_NEON_ROW(6, a1, 2)
        TA_NEON_ROW(7, a1, 3)
        TA_NEON_ROW(8, a2, 0)
        TA_NEON_ROW(9, a2, 1)
        TA_NEON_ROW(10, a2, 2)
        TA_NEON_ROW(11, a2, 3)
    }
}

#endif /* TILEATTN_TILE_F32_NEON_H */
