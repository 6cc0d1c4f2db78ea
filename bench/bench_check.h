/*
 * The check the benchmark's own tests use: a failed condition is reported
 * with its place and counted, and the test goes on, so one run lists every
 * failure; main returns failures ? 1 : 0.
 */
#ifndef TILEATTN_BENCH_CHECK_H
#define TILEATTN_BENCH_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#endif
