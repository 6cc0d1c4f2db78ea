/*
 * exp(x) on 4 floats, NEON, for the softmax (arguments x <= 0): the same
 * algorithm, constants and operation order as the x86 kernels'
 * simd/x86/common/vexp_f32.h, so the two give the same bits:
 *   n = round(x log2 e) by adding 1.5 * 2^23 in one FMLA;
 *   r = x - n ln2, ln2 split in two (Cody-Waite: C1 = 0.693359375 has 9
 *   significant bits, so n * C1 is exact for |n| < 2^15), two FMLS;
 *   exp(r) = 1 + r + r^2 q(r), q of degree 4 (the x86 header's fit), by
 *   Horner as one degree-6 polynomial (6 FMLA);
 *   2^n added to the exponent field (SHL + integer ADD).
 * x < -87.33654 (ln 2^-126: exp(x) leaves the normal range and 2^n could
 * not be built by an exponent add) and -inf give +0 exactly (the compare
 * mask clears the lane); NaN stays NaN; the caller never passes x > 0.
 * All FMLA/FMLS are fused, as FMA on x86, hence the identical results.
 *
 * Error bound: below 1 ULP against the exact exp (a faithful result) over
 * every float in [-87.33654, 0]; tests/test_exp_ulp.c sweeps all 1.1e9 of
 * them against double exp and asserts it (measured worst 0.912 ULP at
 * x = -5.8472681, as on x86).
 */
#ifndef TILEATTN_VEXP_F32_NEON_H
#define TILEATTN_VEXP_F32_NEON_H

#include <arm_neon.h>

#define TA_EXP_MIN_ARG_NEON (-87.33654f) /* ln(2^-126), rounded up */

static inline float32x4_t ta_vexp_f32_neon(float32x4_t x) {
    const float32x4_t magic = vdupq_n_f32(12582912.0f); /* 1.5 * 2^23 */
    float32x4_t t = vfmaq_f32(magic, x, vdupq_n_f32(1.44269504088896341f));
    float32x4_t n = vsubq_f32(t, magic);
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.38796701739769639e-3f);
    p = vfmaq_f32(vdupq_n_f32(8.36870265306304821e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.16672270548034094e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.66665207907613054e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.99999982529664431e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* n sits in t's low mantissa bits; shifted into the exponent field the
     * magic number's own bits fall off the top. */
    int32x4_t e = vshlq_n_s32(vreinterpretq_s32_f32(t), 23);
    int32x4_t y = vaddq_s32(vreinterpretq_s32_f32(p), e);
    /* Keep lanes where !(x < min): NaN compares false, so it is kept. */
    uint32x4_t keep = vmvnq_u32(vcltq_f32(x, vdupq_n_f32(TA_EXP_MIN_ARG_NEON)));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_s32(y), keep));
}

#endif /* TILEATTN_VEXP_F32_NEON_H */
