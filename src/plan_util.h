/*
 * Small integer helpers the planners share (forward, backward, decode):
 * rounding tile sizes to register blocks, padding workspace carvings to a
 * cache line (the thread count when the caller leaves it: threads.h).
 */
#ifndef TILEATTN_PLAN_UTIL_H
#define TILEATTN_PLAN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tileattn.h"

enum { TA_CACHE_LINE_FLOATS = 16 }; /* 64 bytes */

static inline int64_t ta_round_down(int64_t x, int64_t m) {
    return x / m * m;
}
static inline int64_t ta_round_up(int64_t x, int64_t m) {
    return (x + m - 1) / m * m;
}
static inline int64_t ta_clamp(int64_t x, int64_t lo, int64_t hi) {
    return x < lo ? lo : x > hi ? hi : x;
}
/* A TILEATTN_* switch: *value = 0 or 1 as set, -1 when unset or empty;
 * any other value is TILEATTN_ERR_BAD_ENV. */
static inline tileattn_status ta_env_switch(const char *name, int *value) {
    const char *env = getenv(name);
    *value = -1;
    if (!env || !*env) return TILEATTN_OK;
    if (strcmp(env, "0") != 0 && strcmp(env, "1") != 0) return TILEATTN_ERR_BAD_ENV;
    *value = env[0] == '1';
    return TILEATTN_OK;
}

/* n floats, rounded up to whole cache lines. */
static inline size_t ta_pad_floats(int64_t n) {
    return (size_t)ta_round_up(n, TA_CACHE_LINE_FLOATS);
}
#endif /* TILEATTN_PLAN_UTIL_H */
