/*
 * Checks the sweep's writers: the CSV has one row per point with the
 * columns its header names (P's precision included, so a result file says
 * which arithmetic produced it), and the SVG draws the VDPBF16PS peak on
 * the bfloat16 panels only.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_check.h"

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bench_sweep_point point(tileattn_dtype dtype, int64_t seqlen, tileattn_p_precision p) {
    bench_sweep_point pt;
    memset(&pt, 0, sizeof pt);
    pt.head_dim = 128;
    pt.dtype = dtype;
    pt.threads = 1;
    pt.batch = 1;
    pt.heads = 2;
    pt.seqlen_q = pt.seqlen_k = seqlen;
    pt.flops = 4.0 * 2 * (double)seqlen * (double)seqlen * 128;
    pt.tileattn_s = 0.1;
    pt.tileattn_gflops = 90.0;
    pt.standard_s = 0.2;
    pt.standard_gflops = 45.0;
    pt.standard_note = "";
    pt.peak_gflops = 115.0;
    pt.peak_kind = "fma-avx512";
    pt.bf16_dot_peak_gflops = 232.0;
    pt.sgemm_gflops = 100.0;
    pt.max_abs_diff = 1e-6;
    pt.p_precision = p;
    return pt;
}

int main(void) {
    char csv[] = "/tmp/tileattn-test-report-XXXXXX";
    int fd = mkstemp(csv);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) close(fd);
    bench_sweep_point pts[4] = {
        point(TILEATTN_F32, 1024, TILEATTN_P_FLOAT32),
        point(TILEATTN_F32, 2048, TILEATTN_P_FLOAT32),
        point(TILEATTN_BF16, 1024, TILEATTN_P_INPUT_DTYPE),
        point(TILEATTN_BF16, 2048, TILEATTN_P_INPUT_DTYPE),
    };

    CHECK(bench_write_csv(csv, pts, 4) == 0, "bench_write_csv");
    const char *text = read_all(csv);
    CHECK(text != NULL, "read back %s", csv);
    if (text) {
        CHECK(count(text, "\n") == 5, "header + 4 rows, got %d lines", count(text, "\n"));
        const char *header_end = strchr(text, '\n');
        int header_cols = 1, row_cols = 1;
        for (const char *c = text; c < header_end; c++)
            header_cols += *c == ',';
        for (const char *c = header_end + 1; *c && *c != '\n'; c++)
            row_cols += *c == ',';
        CHECK(header_cols == row_cols, "header %d columns, row %d", header_cols, row_cols);
        CHECK(strstr(text, ",p_in_pv,") != NULL, "p_in_pv column");
        CHECK(count(text, ",float32,") == 2, "two float32 P rows");
        CHECK(count(text, ",input_dtype,") == 2, "two input_dtype P rows");
    }

    CHECK(bench_write_svg(csv, pts, 4, "test") == 0, "bench_write_svg");
    text = read_all(csv);
    CHECK(text != NULL, "read back %s", csv);
    if (text) {
        CHECK(strstr(text, "<svg") && strstr(text, "</svg>"), "a whole SVG document");
        /* Two panels (f32, bf16): the FMA peak's line label on both, the
         * dot peak's on one (the legend names each once more). */
        CHECK(count(text, ">FMA peak 115<") == 2, "FMA peak on both panels: %d",
              count(text, ">FMA peak 115<"));
        CHECK(count(text, ">vdpbf16ps peak 232<") == 1, "vdpbf16ps peak on the bf16 panel only: %d",
              count(text, ">vdpbf16ps peak 232<"));
        CHECK(count(text, ">vdpbf16ps peak (bf16 panels)<") == 1, "legend entry");
    }
    remove(csv);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
