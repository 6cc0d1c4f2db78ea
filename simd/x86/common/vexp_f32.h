/*
 * exp(x) on a vector of floats, for the softmax (arguments x <= 0), written
 * once over the ISA's vocabulary (vec_<isa>.h must be included first).
 *
 * The reduction Cephes' expf and SLEEF use, with a polynomial one degree
 * shorter:
 *   n = round(x log2 e);  r = x - n ln2 with ln2 split in two (Cody-Waite:
 *   C1 = 0.693359375 has 9 significant bits, so n * C1 is exact for |n| < 2^15);
 *   exp(r) = 1 + r + r^2 q(r), q of degree 4 fitted here for the least
 *   relative error on |r| <= ln2/2 (3.7e-9 there, 0.06 ULP: the rounding
 *   of the evaluation is the rest of the error), evaluated by Horner as one
 *   degree-6 polynomial (6 FMAs; Cephes' degree-7 one, 7 FMAs, measured
 *   0.889 ULP worst, the same bound);
 *   the result is scaled by 2^n (vf_scale_pow2_or_zero: an add to the
 *   exponent field, or VSCALEFPS on AVX-512).
 * 12 vector operations in all on AVX-512 and 14 on AVX2, where Cephes'
 * polynomial with the exponent add took 14 and 15.
 * x < -87.33654 (ln 2^-126, where exp(x) leaves the normal range and 2^n
 * could not be built by an exponent add) and -inf give 0 exactly;
 * the caller never passes x > 0 (x = s - max), and NaN stays NaN.
 *
 * Error bound: below 1 ULP against the exact exp (a faithful result: one of
 * the two floats around exp(x)) over every float in [-87.33654, 0]; measured
 * worst 0.912 ULP (x = -5.8472681) on AVX-512 and AVX2 by
 * tests/test_exp_ulp.c, which sweeps all 1.1e9 floats of that range against
 * double exp and asserts the bound.
 */
#ifndef TILEATTN_VEXP_F32_H
#define TILEATTN_VEXP_F32_H

#define TA_EXP_MIN_ARG                                                                             \
    (-87.33654f) /* ln(2^-126), rounded up: below it exp is subnormal, flushed to 0 */

TA_VEC_FN vf vf_exp(vf x) {
    /* t = x log2 e + 1.5 * 2^23 rounds x log2 e to the nearest integer n in
     * t's low mantissa bits (one FMA instead of a round and a convert). */
    const vf magic = vf_set1(12582912.0f);
    vf t = vf_fma(x, vf_set1(1.44269504088896341f), magic);
    vf n = vf_sub(t, magic);
    vf r = vf_fnma(n, vf_set1(0.693359375f), x);
    r = vf_fnma(n, vf_set1(-2.12194440e-4f), r);
    /* 1 + r + r^2 q(r) by Horner: q's coefficients, then 1, 1. */
    vf p = vf_set1(1.38796701739769639e-3f);
    p = vf_fma(p, r, vf_set1(8.36870265306304821e-3f));
    p = vf_fma(p, r, vf_set1(4.16672270548034094e-2f));
    p = vf_fma(p, r, vf_set1(1.66665207907613054e-1f));
    p = vf_fma(p, r, vf_set1(4.99999982529664431e-1f));
    p = vf_fma(p, r, vf_set1(1.0f));
    p = vf_fma(p, r, vf_set1(1.0f));
    return vf_scale_pow2_or_zero(p, n, t, x, vf_set1(TA_EXP_MIN_ARG));
}

/*
 * exp(x) for probabilities that are rounded to bfloat16 (8 significant
 * bits) right after, by the softmax of the tables that round P: the same
 * reduction with ln2 in one piece (n ln2 off by at most 126 x 1.9e-9), and
 * 1 + r q(r) with q of degree 3 (4 FMAs instead of 6), fitted here for the
 * least relative error on [-ln2/2, ln2/2] (2.83e-6 there) with exp(0) = 1
 * exactly. 9 vector operations instead of vf_exp's 12 (on AVX-512).
 *
 * Error bound: relative error below 2^-18 (3.8e-6) over every float in
 * [-87.33654, 0]; measured worst 3.12e-6 by tests/test_exp_ulp.c. Rounding
 * to bfloat16 costs up to 2^-9, so P moves by one bfloat16 step only where
 * exp(x) lies within 2^-18 of a rounding midpoint; the row sums, kept in
 * float32, carry the 2^-18. Same range and special values as vf_exp.
 */
TA_VEC_FN vf vf_exp_for_bf16(vf x) {
    const vf magic = vf_set1(12582912.0f);
    vf t = vf_fma(x, vf_set1(1.44269504088896341f), magic);
    vf n = vf_sub(t, magic);
    vf r = vf_fnma(n, vf_set1(0.693147182f), x);
    vf q = vf_set1(4.151351749897003e-2f);
    q = vf_fma(q, r, vf_set1(1.6787709295749664e-1f));
    q = vf_fma(q, r, vf_set1(5.000302791595459e-1f));
    q = vf_fma(q, r, vf_set1(9.999666810035706e-1f));
    vf p = vf_fma(q, r, vf_set1(1.0f));
    return vf_scale_pow2_or_zero(p, n, t, x, vf_set1(TA_EXP_MIN_ARG));
}

#endif /* TILEATTN_VEXP_F32_H */
