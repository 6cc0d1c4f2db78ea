/* Timing: a monotonic clock and the median of repeated runs. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"
#include "tileattn_config.h"

#if TILEATTN_HAVE_OPENMP && defined(_OPENMP)
#include <omp.h>
#endif

double bench_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_time_median(bench_run_fn fn, void *ctx, int warmup, int repeats, bench_timing *out) {
    if (repeats < 1 || repeats > BENCH_MAX_REPEATS || warmup < 0) return -1;
    for (int i = 0; i < warmup; i++) {
        int rc = fn(ctx);
        if (rc != 0) return rc;
    }
    double times[BENCH_MAX_REPEATS];
    for (int i = 0; i < repeats; i++) {
        double t0 = bench_now_seconds();
        int rc = fn(ctx);
        double t1 = bench_now_seconds();
        if (rc != 0) return rc;
        times[i] = t1 - t0;
    }
    qsort(times, (size_t)repeats, sizeof times[0], compare_doubles);
    out->repeats = repeats;
    out->min_s = times[0];
    out->max_s = times[repeats - 1];
    out->median_s =
        repeats % 2 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
    return 0;
}

int bench_max_threads(void) {
#if TILEATTN_HAVE_OPENMP && defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int bench_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}
