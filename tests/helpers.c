#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void th_rng_seed(th_rng *r, uint64_t seed) {
    r->state = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
}

uint64_t th_rng_u64(th_rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double th_rng_uniform(th_rng *r) {
    return (double)(th_rng_u64(r) >> 11) * 0x1.0p-53;
}

double th_rng_range(th_rng *r, double lo, double hi) {
    return lo + (hi - lo) * th_rng_uniform(r);
}

int64_t th_rng_int(th_rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(th_rng_u64(r) % (uint64_t)(hi - lo + 1));
}

double th_rng_normal(th_rng *r) {
    double u1 = th_rng_uniform(r), u2 = th_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Rounds |x| (finite, > 0) to a binary format with `mant` stored mantissa
 * bits and smallest normal exponent emin, to nearest even (nearbyint under
 * the default rounding mode). x / quantum is exact in double. */
static double round_binary(double x, int mant, int emin) {
    int e = ilogb(x);
    if (e < emin) e = emin;
    double quantum = ldexp(1.0, e - mant);
    return nearbyint(x / quantum) * quantum;
}

uint16_t th_f32_to_f16(float f) {
    uint16_t sign = signbit(f) ? 0x8000u : 0;
    if (isnan(f)) return (uint16_t)(sign | 0x7e00u);
    double x = fabs((double)f);
    if (x == 0.0) return sign;
    if (isinf(x)) return (uint16_t)(sign | 0x7c00u);
    double r = round_binary(x, 10, -14);
    if (r > 65504.0) return (uint16_t)(sign | 0x7c00u);
    if (r == 0.0) return sign;
    if (r < 0x1.0p-14) return (uint16_t)(sign | (uint16_t)(r * 0x1.0p24)); /* subnormal */
    int e = ilogb(r);
    uint16_t man = (uint16_t)(ldexp(r, 10 - e) - 1024.0);
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | man);
}

float th_f16_to_f32(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24);
    else
        v = ldexp((double)(m + 1024), e - 25);
    return (float)((h & 0x8000u) ? -v : v);
}

uint16_t th_f32_to_bf16(float f) {
    uint16_t sign = signbit(f) ? 0x8000u : 0;
    if (isnan(f)) return (uint16_t)(sign | 0x7fc0u);
    double x = fabs((double)f);
    if (x == 0.0) return sign;
    if (isinf(x)) return (uint16_t)(sign | 0x7f80u);
    double r = round_binary(x, 7, -126);
    if (r > 0x1.fep127) return (uint16_t)(sign | 0x7f80u);
    float rf = (float)r; /* exact: r has at most 8 significant bits */
    uint32_t u;
    memcpy(&u, &rf, sizeof u);
    return (uint16_t)(sign | (uint16_t)(u >> 16));
}

float th_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float th_round_to(tileattn_dtype dtype, float f) {
    switch (dtype) {
    case TILEATTN_F16: return th_f16_to_f32(th_f32_to_f16(f));
    case TILEATTN_BF16: return th_bf16_to_f32(th_f32_to_bf16(f));
    default: return f;
    }
}

double th_load(const void *p, tileattn_dtype dtype, int64_t idx) {
    switch (dtype) {
    case TILEATTN_F32: return ((const float *)p)[idx];
    case TILEATTN_F16: return th_f16_to_f32(((const uint16_t *)p)[idx]);
    case TILEATTN_BF16: return th_bf16_to_f32(((const uint16_t *)p)[idx]);
    case TILEATTN_F64: return ((const double *)p)[idx];
    }
    abort();
}

void th_store(void *p, tileattn_dtype dtype, int64_t idx, double v) {
    switch (dtype) {
    case TILEATTN_F32: ((float *)p)[idx] = (float)v; return;
    case TILEATTN_F16: ((uint16_t *)p)[idx] = th_f32_to_f16((float)v); return;
    case TILEATTN_BF16: ((uint16_t *)p)[idx] = th_f32_to_bf16((float)v); return;
    case TILEATTN_F64: ((double *)p)[idx] = v; return;
    }
    abort();
}

double th_unit_roundoff(tileattn_dtype dtype) {
    switch (dtype) {
    case TILEATTN_F32: return 0x1.0p-24;
    case TILEATTN_F16: return 0x1.0p-11;
    case TILEATTN_BF16: return 0x1.0p-8;
    case TILEATTN_F64: return 0x1.0p-53;
    }
    abort();
}

const char *th_dtype_name(tileattn_dtype dtype) {
    switch (dtype) {
    case TILEATTN_F32: return "f32";
    case TILEATTN_F16: return "f16";
    case TILEATTN_BF16: return "bf16";
    case TILEATTN_F64: return "f64";
    }
    return "?";
}

void *th_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "test allocation of %zu bytes failed\n", bytes);
        abort();
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void th_free(void *p) {
    free(p);
}
