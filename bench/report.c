/*
 * The sweep's outputs: a CSV (one row per point) and an SVG plot written
 * directly, so no Python or plotting library is needed to see the results.
 *
 * The plot has one panel per (threads, dtype, D, causal) group, GFLOP/s
 * against the sequence length on a log2 axis: tileattn solid, the standard
 * attention dashed, the FMA peak and sgemm 2048^3 as
 * horizontal lines.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void csv_number(FILE *f, double x) {
    if (isnan(x))
        fputs(",", f);
    else
        fprintf(f, ",%.6g", x);
}

int bench_write_csv(const char *path, const bench_sweep_point *points, int n_points) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("threads,dtype,head_dim,causal,batch,heads,seqlen_q,seqlen_k,flops,tileattn_s,"
          "tileattn_gflops,standard_s,standard_gflops,peak_kind,peak_gflops,bf16_dot_peak_gflops,"
          "sgemm2048_gflops,"
          "ratio_peak,ratio_standard,ratio_sgemm,max_abs_diff,p_in_pv,note\n",
          f);
    for (int i = 0; i < n_points; i++) {
        const bench_sweep_point *p = &points[i];
        fprintf(f, "%d,%s,%lld,%d,%lld,%lld,%lld,%lld,%.6g", p->threads, bench_dtype_name(p->dtype),
                (long long)p->head_dim, p->causal, (long long)p->batch, (long long)p->heads,
                (long long)p->seqlen_q, (long long)p->seqlen_k, p->flops);
        csv_number(f, p->tileattn_s);
        csv_number(f, p->tileattn_gflops);
        csv_number(f, p->standard_s);
        csv_number(f, p->standard_gflops);
        fprintf(f, ",%s", p->peak_kind ? p->peak_kind : "");
        csv_number(f, p->peak_gflops);
        csv_number(f, p->bf16_dot_peak_gflops);
        csv_number(f, p->sgemm_gflops);
        csv_number(f, p->tileattn_gflops / p->peak_gflops);
        csv_number(f, p->tileattn_gflops / p->standard_gflops);
        csv_number(f, p->tileattn_gflops / p->sgemm_gflops);
        csv_number(f, p->max_abs_diff);
        fprintf(f, ",%s", p->p_precision == TILEATTN_P_INPUT_DTYPE ? "input_dtype" : "float32");
        fprintf(f, ",%s\n", p->standard_note ? p->standard_note : "");
    }
    int failed = ferror(f);
    if (fclose(f) != 0) failed = 1;
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ SVG */

enum {
    PANEL_W = 400,
    PANEL_H = 290,
    MARGIN_L = 62,
    MARGIN_R = 16,
    MARGIN_T = 34,
    MARGIN_B = 46,
    HEADER_H = 70,
    MAX_COLS = 4,
};

#define COLOR_TILEATTN "#1f77b4"
#define COLOR_STANDARD "#d62728"
#define COLOR_PEAK     "#444444"
#define COLOR_SGEMM    "#2ca02c"

static int same_group(const bench_sweep_point *a, const bench_sweep_point *b) {
    return a->threads == b->threads && a->dtype == b->dtype && a->head_dim == b->head_dim &&
           a->causal == b->causal;
}

/* 1, 2 or 5 times a power of ten, at least range / ticks. */
static double nice_step(double range, int ticks) {
    double raw = range / ticks;
    if (!(raw > 0)) return 1.0;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
}

static void seqlen_label(char *buf, size_t len, int64_t s) {
    if (s >= 1024 && s % 1024 == 0)
        snprintf(buf, len, "%lldk", (long long)(s / 1024));
    else
        snprintf(buf, len, "%lld", (long long)s);
}

typedef struct panel_frame {
    double x0, y0;         /* top-left of the plotting area */
    double w, h;           /* size of the plotting area */
    double lx_min, lx_max; /* log2 seqlen range */
    double y_max;
} panel_frame;

static double px(const panel_frame *fr, int64_t seqlen) {
    return fr->x0 + (log2((double)seqlen) - fr->lx_min) / (fr->lx_max - fr->lx_min) * fr->w;
}

static double py(const panel_frame *fr, double gflops) {
    return fr->y0 + fr->h - gflops / fr->y_max * fr->h;
}

/* A polyline through the members' valid values, broken where one is
 * missing; markers on every point. */
static void draw_series(FILE *f, const panel_frame *fr, const bench_sweep_point *points,
                        const int *members, int n, int standard) {
    const char *color = standard ? COLOR_STANDARD : COLOR_TILEATTN;
    int open = 0;
    for (int m = 0; m < n; m++) {
        const bench_sweep_point *p = &points[members[m]];
        double v = standard ? p->standard_gflops : p->tileattn_gflops;
        if (isnan(v)) {
            if (open) fputs("\"/>\n", f);
            open = 0;
            continue;
        }
        if (!open)
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                    color, standard ? " stroke-dasharray=\"7,4\"" : "");
        fprintf(f, "%.1f,%.1f ", px(fr, p->seqlen_q), py(fr, v));
        open = 1;
    }
    if (open) fputs("\"/>\n", f);
    for (int m = 0; m < n; m++) {
        const bench_sweep_point *p = &points[members[m]];
        double v = standard ? p->standard_gflops : p->tileattn_gflops;
        if (isnan(v)) continue;
        if (standard)
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"6\" height=\"6\" fill=\"%s\"/>\n",
                    px(fr, p->seqlen_q) - 3, py(fr, v) - 3, color);
        else
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                    px(fr, p->seqlen_q), py(fr, v), color);
    }
}

/* label_below puts the label under the line (when another line's label
 * would sit on it). */
static void draw_hline(FILE *f, const panel_frame *fr, double y_value, const char *color,
                       const char *dash, const char *label, int label_below) {
    if (!(y_value > 0)) return;
    double y = py(fr, y_value);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"1.5\"%s%s%s/>\n",
            fr->x0, y, fr->x0 + fr->w, y, color, dash ? " stroke-dasharray=\"" : "",
            dash ? dash : "", dash ? "\"" : "");
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" "
            "fill=\"%s\">%s %.0f</text>\n",
            fr->x0 + fr->w - 4, label_below ? y + 13 : y - 4, color, label, y_value);
}

static void draw_panel(FILE *f, double left, double top, const bench_sweep_point *points,
                       const int *members, int n) {
    const bench_sweep_point *first = &points[members[0]];
    panel_frame fr = {left + MARGIN_L,
                      top + MARGIN_T,
                      PANEL_W - MARGIN_L - MARGIN_R,
                      PANEL_H - MARGIN_T - MARGIN_B,
                      1e300,
                      -1e300,
                      0.0};
    double y_top = fmax(first->peak_gflops, first->sgemm_gflops);
    /* bfloat16 panels also show the VDPBF16PS peak, the limit of the 16-bit
     * tables (their ta/peak column stays against the FMA peak). */
    double dot_peak = first->dtype == TILEATTN_BF16 && isfinite(first->bf16_dot_peak_gflops)
                          ? first->bf16_dot_peak_gflops
                          : 0.0;
    y_top = fmax(y_top, dot_peak);
    int skipped = 0;
    for (int m = 0; m < n; m++) {
        const bench_sweep_point *p = &points[members[m]];
        double lx = log2((double)p->seqlen_q);
        fr.lx_min = fmin(fr.lx_min, lx);
        fr.lx_max = fmax(fr.lx_max, lx);
        y_top = fmax(y_top, p->tileattn_gflops);
        if (isnan(p->standard_gflops))
            skipped = 1;
        else
            y_top = fmax(y_top, p->standard_gflops);
    }
    fr.lx_min -= 0.3;
    fr.lx_max += 0.3;
    if (!(y_top > 0) || !isfinite(y_top)) y_top = 1.0;
    double step = nice_step(y_top * 1.08, 5);
    fr.y_max = ceil(y_top * 1.08 / step) * step;

    /* Title, frame, grid and ticks. */
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\" "
            "text-anchor=\"middle\">D=%lld, %s, %s, %d thread%s</text>\n",
            fr.x0 + fr.w / 2, top + 20, (long long)first->head_dim,
            first->causal ? "causal" : "not causal", bench_dtype_name(first->dtype), first->threads,
            first->threads > 1 ? "s" : "");
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#000\"/>\n",
            fr.x0, fr.y0, fr.w, fr.h);
    for (double v = 0.0; v <= fr.y_max + step * 1e-9; v += step) {
        double y = py(&fr, v);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                fr.x0, y, fr.x0 + fr.w, y, fr.x0 - 5, y + 4, v);
    }
    for (int m = 0; m < n; m++) {
        int64_t s = points[members[m]].seqlen_q;
        int repeated = 0;
        for (int k = 0; k < m; k++)
            repeated |= points[members[k]].seqlen_q == s;
        if (repeated) continue;
        char label[32];
        seqlen_label(label, sizeof label, s);
        double x = px(&fr, s);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                x, fr.y0, x, fr.y0 + fr.h, x, fr.y0 + fr.h + 15, label);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">sequence length "
            "(Sq = Sk, log scale)</text>\n",
            fr.x0 + fr.w / 2, fr.y0 + fr.h + 34);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 %.1f %.1f)\">GFLOP/s</text>\n",
            left + 16, fr.y0 + fr.h / 2, left + 16, fr.y0 + fr.h / 2);

    const int labels_close =
        fabs(py(&fr, first->peak_gflops) - py(&fr, first->sgemm_gflops)) < 14.0;
    draw_hline(f, &fr, first->peak_gflops, COLOR_PEAK, NULL, "FMA peak", 0);
    draw_hline(f, &fr, dot_peak, COLOR_PEAK, "6,3", "vdpbf16ps peak", 0);
    draw_hline(f, &fr, first->sgemm_gflops, COLOR_SGEMM, "2,3", "sgemm 2048\xc2\xb3",
               labels_close && first->sgemm_gflops < first->peak_gflops);
    draw_series(f, &fr, points, members, n, 1);
    draw_series(f, &fr, points, members, n, 0);
    if (skipped)
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">standard skipped "
                "where S exceeds the memory cap</text>\n",
                fr.x0 + 4, fr.y0 + fr.h - 6, COLOR_STANDARD);
}

/* One legend entry: a 30-pixel sample of the line, then its label. */
static void legend_line(FILE *f, double x, double y, const char *color, const char *width,
                        const char *dash, const char *label) {
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"%s\"%s%s%s/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
            x, y, x + 30, y, color, width, dash ? " stroke-dasharray=\"" : "", dash ? dash : "",
            dash ? "\"" : "", x + 36, y + 4, label);
}

static void draw_legend(FILE *f, double x, double y) {
    fprintf(f,
            "<g font-size=\"12\">\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\"/><circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>"
            "<text x=\"%.1f\" y=\"%.1f\">tileattn</text>\n",
            x, y, x + 30, y, COLOR_TILEATTN, x + 15, y, COLOR_TILEATTN, x + 36, y + 4);
    legend_line(f, x += 110, y, COLOR_STANDARD, "2", "7,4",
                "standard attention (materialized S, OpenBLAS)");
    legend_line(f, x += 360, y, COLOR_PEAK, "1.5", NULL, "FMA peak (same threads)");
    legend_line(f, x += 220, y, COLOR_SGEMM, "1.5", "2,3", "sgemm 2048\xc2\xb3");
    legend_line(f, x += 130, y, COLOR_PEAK, "1.5", "6,3", "vdpbf16ps peak (bf16 panels)");
    fputs("</g>\n", f);
}

int bench_write_svg(const char *path, const bench_sweep_point *points, int n_points,
                    const char *title) {
    if (n_points < 0) return -1;
    /* n_points == 0 writes the frame alone: the sweep's early check that the
     * file is writable. */
    const size_t slots = n_points > 0 ? (size_t)n_points : 1;
    int *group_of = malloc(slots * sizeof *group_of);
    int *leader = malloc(slots * sizeof *leader); /* first point of each group */
    int *members = malloc(slots * sizeof *members);
    if (!group_of || !leader || !members) {
        free(group_of);
        free(leader);
        free(members);
        return -1;
    }
    int n_groups = 0;
    for (int i = 0; i < n_points; i++) {
        int g = 0;
        while (g < n_groups && !same_group(&points[leader[g]], &points[i]))
            g++;
        if (g == n_groups) leader[n_groups++] = i;
        group_of[i] = g;
    }
    int cols = n_groups < MAX_COLS ? (n_groups > 0 ? n_groups : 1) : MAX_COLS;
    int rows = (n_groups + cols - 1) / cols;
    int width = cols * PANEL_W, height = HEADER_H + rows * PANEL_H;
    if (width < 1200) width = 1200;

    FILE *f = fopen(path, "w");
    if (!f) {
        free(group_of);
        free(leader);
        free(members);
        return -1;
    }
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"26\" font-size=\"18\" font-weight=\"bold\" "
            "text-anchor=\"middle\">",
            width, height, width, height, width / 2);
    for (const char *c = title; *c; c++) { /* the title is ours, but escape anyway */
        if (*c == '<')
            fputs("&lt;", f);
        else if (*c == '>')
            fputs("&gt;", f);
        else if (*c == '&')
            fputs("&amp;", f);
        else
            fputc(*c, f);
    }
    fputs("</text>\n", f);
    draw_legend(f, 20, 52);
    for (int g = 0; g < n_groups; g++) {
        int n = 0;
        for (int i = 0; i < n_points; i++)
            if (group_of[i] == g) members[n++] = i;
        draw_panel(f, (double)(g % cols) * PANEL_W, HEADER_H + (double)(g / cols) * PANEL_H, points,
                   members, n);
    }
    fputs("</svg>\n", f);
    free(group_of);
    free(leader);
    free(members);
    int failed = ferror(f);
    if (fclose(f) != 0) failed = 1;
    return failed ? -1 : 0;
}
