/*
 * The library's float16/bfloat16 conversions (src/convert.h, bit tricks)
 * against the tests' own (tests/helpers.c, double arithmetic and
 * nearbyint): every half and bfloat16 value up, and float32 values down
 * including every halfway point, where round-to-nearest-even is decided.
 * The numeric suite decodes O with the tests' conversions, so the two
 * agreeing also means it reads what the library meant to write.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "helpers.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* NaN payloads may differ; a NaN must stay a NaN. */
static int same(float a, float b) {
    return (isnan(a) && isnan(b)) || bits(a) == bits(b);
}

Test(unit, convert_up_exhaustive) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = ta_f16_to_f32((uint16_t)h), b = th_f16_to_f32((uint16_t)h);
        if (!same(a, b) && bad++ < 5) fprintf(stderr, "f16 %04x: %a vs %a\n", h, a, b);
        a = ta_bf16_to_f32((uint16_t)h), b = th_bf16_to_f32((uint16_t)h);
        if (!same(a, b) && bad++ < 5) fprintf(stderr, "bf16 %04x: %a vs %a\n", h, a, b);
    }
    cr_assert_eq(bad, 0);
    /* Spot values from IEEE 754. */
    cr_expect_eq(th_f16_to_f32(0x3c00), 1.0f);
    cr_expect_eq(th_f16_to_f32(0x7bff), 65504.0f);
    cr_expect_eq(th_f16_to_f32(0x0001), 0x1.0p-24f);
    cr_expect_eq(th_f16_to_f32(0xc000), -2.0f);
    cr_expect_eq(th_bf16_to_f32(0x3f80), 1.0f);
}

static int check_down(float f) {
    uint16_t a = ta_f32_to_f16(f), b = th_f32_to_f16(f);
    int bad = 0;
    if (a != b && !(isnan(f) && (a & 0x7c00) == 0x7c00 && (a & 0x3ff))) {
        if (bad++ < 1) fprintf(stderr, "f32->f16 %a (%08x): %04x vs %04x\n", f, bits(f), a, b);
    }
    a = ta_f32_to_bf16(f), b = th_f32_to_bf16(f);
    if (a != b && !(isnan(f) && (a & 0x7f80) == 0x7f80 && (a & 0x7f))) {
        if (bad++ < 1) fprintf(stderr, "f32->bf16 %a (%08x): %04x vs %04x\n", f, bits(f), a, b);
    }
    return bad;
}

Test(unit, convert_down) {
    int bad = 0;
    /* Every half value, the halfway points on both sides and one float ULP
     * either side of them: where the rounding direction is decided. */
    for (uint32_t h = 0; h < 0x7c00 && bad < 10; h++) {
        float lo = th_f16_to_f32((uint16_t)h), hi = th_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2); /* exact */
        float pts[] = {lo, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 4; k++) {
            bad += check_down(pts[k]);
            bad += check_down(-pts[k]);
        }
    }
    /* Every bfloat16 value and its halfway points. */
    for (uint32_t b = 0; b < 0x7f80 && bad < 10; b++) {
        float mid = from_bits((b << 16) | 0x8000u);
        float pts[] = {from_bits(b << 16), mid, from_bits(bits(mid) - 1), from_bits(bits(mid) + 1)};
        for (int k = 0; k < 4; k++) {
            bad += check_down(pts[k]);
            bad += check_down(-pts[k]);
        }
    }
    /* A stride through all float32 bit patterns, specials included. */
    for (uint64_t u = 0; u <= 0xffffffffu && bad < 10; u += 4099)
        bad += check_down(from_bits((uint32_t)u));
    float specials[] = {0.0f,       -0.0f,      INFINITY,   -INFINITY, NAN,
                        65504.0f,   65519.99f,  65520.0f,   1e-8f,     3e-8f,
                        0x1.0p-25f, 0x1.8p-25f, 0x1.0p-24f, 3.4e38f,   0x1.fffffep127f};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++)
        bad += check_down(specials[k]);
    cr_assert_eq(bad, 0, "%d conversions disagree", bad);
    /* Round to nearest even, spot checks. */
    cr_expect_eq(th_f32_to_f16(1.0f + 0x1.0p-11f), 0x3c00); /* tie -> even (down) */
    cr_expect_eq(th_f32_to_f16(1.0f + 0x1.8p-10f), 0x3c02); /* tie -> even (up) */
    cr_expect_eq(th_f32_to_f16(65520.0f), 0x7c00);          /* overflows to inf */
    cr_expect_eq(th_f32_to_f16(0x1.0p-25f), 0x0000);        /* tie -> even zero */
    cr_expect_eq(th_f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);
    cr_expect_eq(th_f32_to_bf16(1.0f + 0x1.8p-7f), 0x3f82);
}
