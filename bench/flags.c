/*
 * The benchmarks' own flags: one integer parser for --backward, --decode
 * and --ukernels (see bench.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

int bench_parse_int(const char *prog, const char *flag, const char *text, int64_t min, int64_t max,
                    int64_t *out) {
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < min || v > max) {
        if (max == INT64_MAX)
            fprintf(stderr, "%s: bad value for %s: %s (want an integer >= %lld)\n", prog, flag,
                    text, (long long)min);
        else
            fprintf(stderr, "%s: bad value for %s: %s (want an integer in [%lld, %lld])\n", prog,
                    flag, text, (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}
