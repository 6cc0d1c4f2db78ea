/* Inputs: a fixed-seed generator and the float32 <-> f16/bf16 conversions. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

uint64_t bench_rand_u64(uint64_t *state) {
    /* splitmix64 (Steele, Lea, Flood 2014): one add and three mixes. */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double bench_rand_uniform(uint64_t *state) {
    return (double)(bench_rand_u64(state) >> 11) * 0x1.0p-53;
}

double bench_rand_normal(uint64_t *state) {
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u = 1.0 - bench_rand_uniform(state), v = bench_rand_uniform(state);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t bench_f32_to_bf16(float x) {
    uint32_t u = float_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float bench_bf16_to_f32(uint16_t b) {
    return bits_float((uint32_t)b << 16);
}

uint16_t bench_f32_to_f16(float x) {
    uint32_t u = float_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);  /* NaN */
    if (abs >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds past 65504: inf */
    if (abs < 0x38800000u) {
        /* Below 2^-14: a subnormal half (or zero). Scale so the half's unit
         * (2^-24) lands on float's integer grid: adding 0.5 (2^-1) makes the
         * hardware round the mantissa to nearest even for us. */
        float shifted = bits_float(abs) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(float_bits(shifted) - float_bits(0.5f)));
    }
    /* Normal: rebias the exponent (127 -> 15) and round 13 mantissa bits. */
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += ((uint32_t)(15 - 127) << 23) + 0xFFFu + mant_odd;
    return (uint16_t)(sign | (uint16_t)(abs >> 13));
}

float bench_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) return bits_float(sign | 0x7F800000u | (mant << 13)); /* inf, NaN */
    if (exp == 0) {
        float mag = (float)mant * 0x1.0p-24f; /* zero or subnormal, exact */
        return sign ? -mag : mag;
    }
    return bits_float(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

void bench_fill_normal(void *dst, tileattn_dtype dtype, size_t count, double stddev,
                       uint64_t *state) {
    for (size_t i = 0; i < count; i++) {
        double x = stddev * bench_rand_normal(state);
        switch (dtype) {
        case TILEATTN_F32: ((float *)dst)[i] = (float)x; break;
        case TILEATTN_F16: ((uint16_t *)dst)[i] = bench_f32_to_f16((float)x); break;
        case TILEATTN_BF16: ((uint16_t *)dst)[i] = bench_f32_to_bf16((float)x); break;
        case TILEATTN_F64: ((double *)dst)[i] = x; break;
        }
    }
}

double bench_load_element(const void *data, tileattn_dtype dtype, size_t i) {
    switch (dtype) {
    case TILEATTN_F32: return ((const float *)data)[i];
    case TILEATTN_F16: return bench_f16_to_f32(((const uint16_t *)data)[i]);
    case TILEATTN_BF16: return bench_bf16_to_f32(((const uint16_t *)data)[i]);
    case TILEATTN_F64: return ((const double *)data)[i];
    }
    return NAN;
}

const char *bench_dtype_name(tileattn_dtype dtype) {
    switch (dtype) {
    case TILEATTN_F32: return "f32";
    case TILEATTN_F16: return "f16";
    case TILEATTN_BF16: return "bf16";
    case TILEATTN_F64: return "f64";
    }
    return "?";
}
