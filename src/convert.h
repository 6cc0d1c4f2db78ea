/*
 * Scalar conversions between the storage dtypes and float32, bit-exact and
 * portable (no F16C needed): round-to-nearest-even on the way down, as the
 * hardware instructions do, so every ISA writes the same bits.
 */
#ifndef TILEATTN_CONVERT_H
#define TILEATTN_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "tileattn.h"

static inline float ta_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t ta_bits_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float ta_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return ta_f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return ta_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0) return ta_f32_from_bits(sign);
    /* Subnormal half: value = man * 2^-24, exact in float32. */
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
}

static inline uint16_t ta_f32_to_f16(float f) {
    uint32_t u = ta_bits_from_f32(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* inf or NaN (keep NaN quiet) */
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (abs < 0x38800000u) {                                   /* below the normal range */
        /* Subnormal or zero: add a magic number so the FPU rounds to 2^-24. */
        float v = ta_f32_from_bits(abs) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(ta_bits_from_f32(v) - 0x3f000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (uint16_t)(abs >> 13));
}

static inline float ta_bf16_to_f32(uint16_t b) {
    return ta_f32_from_bits((uint32_t)b << 16);
}

static inline uint16_t ta_f32_to_bf16(float f) {
    uint32_t u = ta_bits_from_f32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Element idx of an array of the given dtype, as float (F64 is narrowed). */
static inline float ta_load_f32(const void *p, tileattn_dtype dtype, int64_t idx) {
    switch (dtype) {
    case TILEATTN_F32: return ((const float *)p)[idx];
    case TILEATTN_F16: return ta_f16_to_f32(((const uint16_t *)p)[idx]);
    case TILEATTN_BF16: return ta_bf16_to_f32(((const uint16_t *)p)[idx]);
    case TILEATTN_F64: return (float)((const double *)p)[idx];
    }
    return 0.0f;
}

/* Element idx as double, exactly (every storage dtype is exact in double). */
static inline double ta_load_f64(const void *p, tileattn_dtype dtype, int64_t idx) {
    if (dtype == TILEATTN_F64) return ((const double *)p)[idx];
    return (double)ta_load_f32(p, dtype, idx);
}

static inline void ta_store_f32(void *p, tileattn_dtype dtype, int64_t idx, float v) {
    switch (dtype) {
    case TILEATTN_F32: ((float *)p)[idx] = v; break;
    case TILEATTN_F16: ((uint16_t *)p)[idx] = ta_f32_to_f16(v); break;
    case TILEATTN_BF16: ((uint16_t *)p)[idx] = ta_f32_to_bf16(v); break;
    case TILEATTN_F64: ((double *)p)[idx] = v; break;
    }
}

#endif /* TILEATTN_CONVERT_H */
