/*
 * The vector exp of the softmax (simd/x86/common/vexp_f32.h on x86-64,
 * simd/arm/neon/vexp_f32_neon.h on AArch64, the same algorithm) against the
 * exact exponential (double exp, whose error is far below a float ULP): every
 * float in [-87.33654, 0], the whole range the softmax feeds it (x = s - max
 * <= 0; below -87.33654 = ln 2^-126 exp(x) is subnormal and the vector exp
 * flushes it to 0 by design), plus special values.
 *
 * The bound it asserts is the one the header states: |y - exp(x)| < 1 ULP of
 * exp(x) (a faithful result: y is one of the two floats around exp(x)).
 * Measured on both AVX-512 and AVX2: 0.912 ULP worst, at x = -5.8472681;
 * NEON (AArch64, run under qemu-aarch64) gives the same bits.
 *
 * On x86-64 also vf_exp_for_bf16, the exp of the softmax that rounds P to
 * bfloat16, over the same floats against its own stated bound: relative
 * error below 2^-18.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <stdlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"
#include "tileattn_config.h"

#if TILEATTN_HAVE_X86_SIMD || TILEATTN_HAVE_ARM_SIMD
#if TILEATTN_HAVE_X86_SIMD
#include "simd/x86/ukernels_x86.h"
#else
#include "simd/arm/ukernels_arm.h"
#endif

#define EXP_ULP_BOUND      1.0          /* stated in vexp_f32.h and vexp_f32_neon.h */
#define EXP_FOR_BF16_BOUND 0x1p-18      /* relative; stated in vexp_f32.h */
#define EXP_MIN_ARG        (-87.33654f) /* their TA_EXP_MIN_ARG(_NEON) */

typedef void (*vexp_fn)(int64_t n, const float *x, float *y);

/* |y - e| in units of the last place of the float nearest e (e > 0 normal). */
static double ulp_error(float y, double e) {
    int ex;
    frexp(e, &ex);
    return fabs((double)y - e) / ldexp(1.0, ex - 24);
}

/* An exp under test: the function, how its error is measured, its bound. */
typedef struct exp_under_test {
    vexp_fn fn;
    const char *name;
    double (*error)(float y, double e);
    double bound;
    const char *unit;
} exp_under_test;

/* Every float of the range natively; under emulation (qemu-aarch64 in
 * .ci/run-arm sets TILEATTN_TEST_EMULATED=1, where the whole sweep takes ten
 * minutes) every 37th float, which still visits every binade thousands of
 * times, plus the 8192 floats around x86's worst case. The algorithm and
 * constants are the same on every ISA, and x86-64 runs the whole sweep. */
static void sweep(exp_under_test t) {
    enum { CHUNK = 1 << 16 };
    static float x[CHUNK], y[CHUNK];
    float lim = EXP_MIN_ARG, hard = -5.8472681f;
    uint32_t hi, hard_bits;
    memcpy(&hi, &lim, sizeof hi);
    memcpy(&hard_bits, &hard, sizeof hard_bits);
    const char *emu = getenv("TILEATTN_TEST_EMULATED");
    uint64_t step = emu && *emu && strcmp(emu, "0") != 0 ? 37 : 1;
    double worst = 0.0;
    float worst_x = 0.0f;
    uint64_t count = 0;
    /* Negative floats: bits 0x80000000 (-0) up to bits(EXP_MIN_ARG), magnitudes up. */
    for (uint64_t b = 0x80000000u; b <= hi;) {
        int64_t k = 0;
        for (; k < CHUNK && b <= hi; k++) {
            uint32_t u = (uint32_t)b;
            memcpy(&x[k], &u, sizeof u);
            /* Inside the window around the hard case, every float. */
            b += b + 4096 >= hard_bits && b < (uint64_t)hard_bits + 4096 ? 1 : step;
        }
        t.fn(k, x, y);
        for (int64_t i = 0; i < k; i++) {
            double err = t.error(y[i], exp((double)x[i]));
            if (err > worst) worst = err, worst_x = x[i];
        }
        count += (uint64_t)k;
    }
    cr_log_info("%s: %llu floats of [-87.33654, 0], worst %.3g %s at x = %.9g", t.name,
                (unsigned long long)count, worst, t.unit, worst_x);
    cr_expect_lt(worst, t.bound, "%s: exp off by %.3g %s at x = %.9g (bound %.3g)", t.name, worst,
                 t.unit, worst_x, t.bound);
}

static void specials(exp_under_test t) {
    const char *isa = t.name; /* for the messages */
    const float x[] = {-INFINITY, -1e30f, -1000.0f, -103.0f, -88.0f, -87.3366f,
                       0.0f,      -0.0f,  -1e-30f,  -1.0f,   NAN,    -FLT_MIN};
    enum { N = sizeof x / sizeof x[0] };
    float y[N];
    t.fn(N, x, y);
    for (int i = 0; i < 6; i++) /* below ln 2^-126 and -inf: exactly 0 */
        cr_expect(y[i] == 0.0f && !signbit(y[i]), "%s: exp(%g) = %g, want +0", isa, x[i], y[i]);
    cr_expect_eq(y[6], 1.0f, "%s: exp(0) = %.9g", isa, y[6]);
    cr_expect_eq(y[7], 1.0f, "%s: exp(-0) = %.9g", isa, y[7]);
    cr_expect_eq(y[8], 1.0f, "%s: exp(-1e-30) = %.9g", isa, y[8]);
    cr_expect_lt(t.error(y[9], exp(-1.0)), t.bound, "%s: exp(-1) = %.9g", isa, y[9]);
    cr_expect(isnan(y[10]), "%s: exp(NaN) = %g, want NaN", isa, y[10]);
    cr_expect_eq(y[11], 1.0f, "%s: exp(-FLT_MIN) = %.9g", isa, y[11]);
}

#endif /* the sweep and the special values, for either ISA */

#if TILEATTN_HAVE_X86_SIMD
/* vf_exp_for_bf16's bound is relative (x86-64 only: it serves the
 * AVX512_BF16 softmax). */
static double relative_error(float y, double e) {
    return fabs((double)y - e) / e;
}

Test(exp_ulp, avx512) {
    if (!ta_cpu_runs_isa("avx512")) cr_skip_test("this CPU has no AVX-512");
    exp_under_test t = {ta_exp_f32_avx512, "avx512", ulp_error, EXP_ULP_BOUND, "ULP"};
    specials(t);
    sweep(t);
}

Test(exp_ulp, for_bf16_avx512) {
    if (!ta_cpu_runs_isa("avx512")) cr_skip_test("this CPU has no AVX-512");
    exp_under_test t = {ta_exp_for_bf16_avx512, "avx512 exp for bf16", relative_error,
                        EXP_FOR_BF16_BOUND, "relative"};
    specials(t);
    sweep(t);
}

Test(exp_ulp, avx2) {
    if (!ta_cpu_runs_isa("avx2")) cr_skip_test("this CPU has no AVX2 + FMA");
    exp_under_test t = {ta_exp_f32_avx2, "avx2", ulp_error, EXP_ULP_BOUND, "ULP"};
    specials(t);
    sweep(t);
}
#elif TILEATTN_HAVE_ARM_SIMD
Test(exp_ulp, neon) {
    if (!ta_cpu_runs_isa("neon")) cr_skip_test("this CPU has no Advanced SIMD");
    exp_under_test t = {ta_exp_f32_neon, "neon", ulp_error, EXP_ULP_BOUND, "ULP"};
    specials(t);
    sweep(t);
}
#else
Test(exp_ulp, none) {
    cr_skip_test("no vector exp in this build (neither x86-64 nor AArch64)");
}
#endif
