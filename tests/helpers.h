/*
 * Shared test helpers: a fixed-seed PRNG, float16/bfloat16 conversions
 * written independently of the library's (round-to-nearest-even through
 * double arithmetic, so a bug in src/convert.h cannot hide itself), and a
 * few small utilities.
 */
#ifndef TILEATTN_TESTS_HELPERS_H
#define TILEATTN_TESTS_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "tileattn.h"

/* SplitMix64: tiny, fast, and the same sequence on every platform. */
typedef struct th_rng {
    uint64_t state;
} th_rng;

void th_rng_seed(th_rng *r, uint64_t seed);
uint64_t th_rng_u64(th_rng *r);
double th_rng_uniform(th_rng *r);                      /* [0, 1) */
double th_rng_range(th_rng *r, double lo, double hi);  /* [lo, hi) */
int64_t th_rng_int(th_rng *r, int64_t lo, int64_t hi); /* [lo, hi], inclusive */
double th_rng_normal(th_rng *r);                       /* N(0, 1) */

/* IEEE binary16 and bfloat16, round to nearest even, NaN stays NaN. */
uint16_t th_f32_to_f16(float f);
float th_f16_to_f32(uint16_t h);
uint16_t th_f32_to_bf16(float f);
float th_bf16_to_f32(uint16_t b);

/* The value f becomes when stored in dtype (identity for F32 and F64). */
float th_round_to(tileattn_dtype dtype, float f);

/* Element idx of an array of dtype, as double (exact). */
double th_load(const void *p, tileattn_dtype dtype, int64_t idx);
/* Stores v (already representable, or rounded to nearest even) at idx. */
void th_store(void *p, tileattn_dtype dtype, int64_t idx, double v);

/* Unit roundoff of a storage dtype: half an ULP of 1 (2^-24, 2^-11, 2^-8). */
double th_unit_roundoff(tileattn_dtype dtype);

const char *th_dtype_name(tileattn_dtype dtype);

/* Allocation that aborts the test on failure, zero-filled, 64-byte aligned. */
void *th_alloc(size_t bytes);
void th_free(void *p);

#endif /* TILEATTN_TESTS_HELPERS_H */
