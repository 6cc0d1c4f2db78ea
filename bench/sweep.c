/*
 * The sweep of the FlashAttention-2 paper (section 4.1), scaled to a CPU:
 * head dimension 64 and 128, Sq = Sk from 512 to 16384, causal and not,
 * float32 and bfloat16, one thread and all threads.
 *
 * The paper fixes the number of tokens per point (batch x seqlen = 16k) so
 * every point moves a similar amount of data. Here B = 1 and the heads take
 * the batch's role: H = tokens / Sq, clamped to [1, max_heads] (defaults
 * 16384 and 64), so B H Sq = 16384 for Sq in 256..16384. FLOPs per point
 * grow linearly with Sq: 4 B H Sq Sk D = 4 * 16384 * Sk * D.
 *
 * Every point runs tileattn and the standard attention on the same inputs,
 * in the same process, on the same threads; the FMA peak and sgemm 2048^3
 * are measured once per thread count.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void bench_sweep_config_init(bench_sweep_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    static const int64_t seqlens[] = {512, 1024, 2048, 4096, 8192, 16384};
    cfg->n_seqlens = (int)(sizeof seqlens / sizeof seqlens[0]);
    memcpy(cfg->seqlens, seqlens, sizeof seqlens);
    cfg->head_dims[0] = 64;
    cfg->head_dims[1] = 128;
    cfg->n_head_dims = 2;
    cfg->dtypes[0] = TILEATTN_F32;
    cfg->dtypes[1] = TILEATTN_BF16;
    cfg->n_dtypes = 2;
    cfg->threads[0] = 1;
    cfg->threads[1] = 0;
    cfg->n_threads = 2;
    cfg->causal_modes[0] = 0;
    cfg->causal_modes[1] = 1;
    cfg->n_causal_modes = 2;
    cfg->repeats = 3;
    cfg->warmup = 1;
    cfg->tokens = 16384;
    cfg->max_heads = 64;
    cfg->standard_mem_cap = (size_t)4 << 30;
    cfg->csv_path = "bench-results.csv";
    cfg->svg_path = "bench-results.svg";
    cfg->seed = 42;
}

double bench_attention_flops(int64_t batch, int64_t heads, int64_t seqlen_q, int64_t seqlen_k,
                             int64_t head_dim, int64_t head_dim_v, int causal) {
    if (head_dim_v == 0) head_dim_v = head_dim;
    double flops = 2.0 * (double)batch * (double)heads * (double)seqlen_q * (double)seqlen_k *
                   (double)(head_dim + head_dim_v);
    return causal ? 0.5 * flops : flops;
}

/* The buffers and arguments of one point. */
typedef struct sweep_problem {
    tileattn_forward_args args;
    void *q, *k, *v, *o_tileattn, *o_standard;
    size_t o_count;
    int threads;
} sweep_problem;

static void free_problem(sweep_problem *sp) {
    free(sp->q);
    free(sp->k);
    free(sp->v);
    free(sp->o_tileattn);
    free(sp->o_standard);
    memset(sp, 0, sizeof *sp);
}

/* Allocates and fills a B=1 problem; 0, or -1 when out of memory/overflow. */
static int make_problem(sweep_problem *sp, int64_t heads, int64_t seqlen, int64_t head_dim,
                        tileattn_dtype dtype, int causal, int threads, uint64_t seed) {
    memset(sp, 0, sizeof *sp);
    size_t count, bytes, elem = tileattn_dtype_size(dtype);
    if (bench_mul_size((size_t)seqlen, (size_t)heads, &count) ||
        bench_mul_size(count, (size_t)head_dim, &count) || bench_mul_size(count, elem, &bytes))
        return -1;
    sp->q = malloc(bytes);
    sp->k = malloc(bytes);
    sp->v = malloc(bytes);
    sp->o_tileattn = calloc(count, elem);
    sp->o_standard = calloc(count, elem);
    if (!sp->q || !sp->k || !sp->v || !sp->o_tileattn || !sp->o_standard) {
        free_problem(sp);
        return -1;
    }
    sp->o_count = count;
    uint64_t state = seed;
    bench_fill_normal(sp->q, dtype, count, 1.0, &state);
    bench_fill_normal(sp->k, dtype, count, 1.0, &state);
    bench_fill_normal(sp->v, dtype, count, 1.0, &state);

    tileattn_forward_args *a = &sp->args;
    tileattn_forward_args_init(a);
    a->batch = 1;
    a->seqlen_q = a->seqlen_k = seqlen;
    a->heads_q = a->heads_kv = heads;
    a->head_dim = a->head_dim_v = head_dim;
    a->dtype = dtype;
    a->q = tileattn_tensor_contiguous(sp->q, seqlen, heads, head_dim);
    a->k = tileattn_tensor_contiguous(sp->k, seqlen, heads, head_dim);
    a->v = tileattn_tensor_contiguous(sp->v, seqlen, heads, head_dim);
    a->o = tileattn_tensor_out_contiguous(sp->o_tileattn, seqlen, heads, head_dim);
    a->causal = causal ? TILEATTN_CAUSAL_BOTTOM_RIGHT : TILEATTN_CAUSAL_NONE;
    a->num_threads = threads;
    sp->threads = threads;
    return 0;
}

typedef struct timed_call {
    const tileattn_forward_args *args;
    int threads;
    tileattn_status status;
} timed_call;

static int run_tileattn(void *ctx) {
    timed_call *c = ctx;
    c->status = tileattn_forward(c->args);
    return c->status == TILEATTN_OK ? 0 : 1;
}

static int run_standard(void *ctx) {
    timed_call *c = ctx;
    c->status = bench_standard_attention(c->args, c->threads);
    return c->status == TILEATTN_OK ? 0 : 1;
}

static double max_abs_diff(const void *x, const void *y, tileattn_dtype dtype, size_t count) {
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs(bench_load_element(x, dtype, i) - bench_load_element(y, dtype, i));
        if (!(d <= worst)) worst = d; /* NaN propagates */
    }
    return worst;
}

static void print_table_header(FILE *out) {
    fprintf(out, "%-5s %-6s %4s %-6s %2s %4s %6s %6s  %12s %12s  %8s %8s %8s  %9s  %s\n", "thr",
            "dtype", "D", "mask", "B", "H", "Sq", "Sk", "tileattn", "standard", "ta/peak", "ta/std",
            "ta/sgemm", "max|dO|", "note");
    fprintf(out, "%-5s %-6s %4s %-6s %2s %4s %6s %6s  %12s %12s  %8s %8s %8s  %9s\n", "", "", "",
            "", "", "", "", "", "GFLOP/s", "GFLOP/s", "", "", "", "vs std");
}

static void print_point(FILE *out, const bench_sweep_point *pt) {
    char std_gflops[32] = "-", ratio_std[32] = "-", diff[32] = "-";
    if (!isnan(pt->standard_gflops)) {
        snprintf(std_gflops, sizeof std_gflops, "%.1f", pt->standard_gflops);
        snprintf(ratio_std, sizeof ratio_std, "%.2fx", pt->tileattn_gflops / pt->standard_gflops);
        snprintf(diff, sizeof diff, "%.2e", pt->max_abs_diff);
    }
    fprintf(
        out,
        "%-5d %-6s %4lld %-6s %2lld %4lld %6lld %6lld  %12.1f %12s  %7.1f%% %8s %7.2fx  %9s  %s\n",
        pt->threads, bench_dtype_name(pt->dtype), (long long)pt->head_dim,
        pt->causal ? "causal" : "none", (long long)pt->batch, (long long)pt->heads,
        (long long)pt->seqlen_q, (long long)pt->seqlen_k, pt->tileattn_gflops, std_gflops,
        100.0 * pt->tileattn_gflops / pt->peak_gflops, ratio_std,
        pt->tileattn_gflops / pt->sgemm_gflops, diff, pt->standard_note);
    fflush(out);
}

static const char *fma_peak_kind(void) {
    const char *isa = bench_fma_isa();
    if (strcmp(isa, "avx512") == 0) return "fma-avx512";
    if (strcmp(isa, "avx2") == 0) return "fma-avx2";
    return "fma-scalar";
}

static int check_config(const bench_sweep_config *cfg, FILE *err) {
    if (cfg->n_seqlens < 1 || cfg->n_seqlens > BENCH_SWEEP_MAX_LIST || cfg->n_head_dims < 1 ||
        cfg->n_head_dims > BENCH_SWEEP_MAX_LIST || cfg->n_dtypes < 1 ||
        cfg->n_dtypes > BENCH_SWEEP_MAX_LIST || cfg->n_threads < 1 ||
        cfg->n_threads > BENCH_SWEEP_MAX_LIST || cfg->n_causal_modes < 1 ||
        cfg->n_causal_modes > 2) {
        fprintf(err, "bench: empty or too long list in the sweep configuration\n");
        return -1;
    }
    if (cfg->repeats < 1 || cfg->repeats > BENCH_MAX_REPEATS || cfg->warmup < 0 ||
        cfg->tokens < 1 || cfg->max_heads < 1) {
        fprintf(err, "bench: repeats must be 1..%d, warm-up >= 0, tokens and heads >= 1\n",
                BENCH_MAX_REPEATS);
        return -1;
    }
    for (int i = 0; i < cfg->n_seqlens; i++)
        if (cfg->seqlens[i] < 1 || cfg->seqlens[i] > ((int64_t)1 << 24)) {
            fprintf(err, "bench: sequence length %lld out of range 1..16777216\n",
                    (long long)cfg->seqlens[i]);
            return -1;
        }
    for (int i = 0; i < cfg->n_head_dims; i++)
        if (cfg->head_dims[i] < 1 || cfg->head_dims[i] > TILEATTN_MAX_HEAD_DIM) {
            fprintf(err, "bench: head dimension %lld out of range 1..%d\n",
                    (long long)cfg->head_dims[i], TILEATTN_MAX_HEAD_DIM);
            return -1;
        }
    for (int i = 0; i < cfg->n_dtypes; i++)
        if (cfg->dtypes[i] != TILEATTN_F32 && cfg->dtypes[i] != TILEATTN_F16 &&
            cfg->dtypes[i] != TILEATTN_BF16) {
            fprintf(err, "bench: the sweep takes f32, f16 and bf16\n");
            return -1;
        }
    for (int i = 0; i < cfg->n_threads; i++)
        if (cfg->threads[i] < 0) {
            fprintf(err, "bench: thread counts must be >= 0 (0 = all cores)\n");
            return -1;
        }
    return 0;
}

/* Runs one point; 0, or 1 when tileattn failed (reported on out). */
static int run_point(const bench_sweep_config *cfg, FILE *err, int threads, tileattn_dtype dtype,
                     int64_t head_dim, int causal, int64_t seqlen, uint64_t seed,
                     bench_sweep_point *pt) {
    int64_t heads = cfg->tokens / seqlen;
    if (heads < 1) heads = 1;
    if (heads > cfg->max_heads) heads = cfg->max_heads;
    pt->head_dim = head_dim;
    pt->causal = causal;
    pt->dtype = dtype;
    pt->threads = threads;
    pt->batch = 1;
    pt->heads = heads;
    pt->seqlen_q = pt->seqlen_k = seqlen;
    pt->flops = bench_attention_flops(1, heads, seqlen, seqlen, head_dim, head_dim, causal);
    pt->standard_s = pt->standard_gflops = pt->max_abs_diff = NAN;
    pt->standard_note = "";

    sweep_problem sp;
    if (make_problem(&sp, heads, seqlen, head_dim, dtype, causal, threads, seed) != 0) {
        fprintf(err, "bench: out of memory for H=%lld Sq=%lld D=%lld\n", (long long)heads,
                (long long)seqlen, (long long)head_dim);
        return 1;
    }
    sp.args.p_precision = cfg->p_precision;
    timed_call call = {&sp.args, threads, TILEATTN_OK};
    bench_timing timing;
    if (bench_time_median(run_tileattn, &call, cfg->warmup, cfg->repeats, &timing) != 0) {
        fprintf(err, "bench: tileattn_forward failed (H=%lld Sq=%lld D=%lld %s): %s\n",
                (long long)heads, (long long)seqlen, (long long)head_dim, bench_dtype_name(dtype),
                tileattn_status_string(call.status));
        free_problem(&sp);
        return 1;
    }
    pt->tileattn_s = timing.median_s;
    pt->tileattn_gflops = pt->flops / timing.median_s * 1e-9;

    tileattn_forward_args std_args = sp.args;
    std_args.o = tileattn_tensor_out_contiguous(sp.o_standard, seqlen, heads, head_dim);
    size_t score_bytes = bench_standard_attention_score_bytes(&std_args, threads);
    if (score_bytes > cfg->standard_mem_cap) {
        pt->standard_note = "standard skipped: S over the memory cap";
    } else {
        timed_call std_call = {&std_args, threads, TILEATTN_OK};
        if (bench_time_median(run_standard, &std_call, cfg->warmup, cfg->repeats, &timing) != 0) {
            pt->standard_note = std_call.status == TILEATTN_ERR_OUT_OF_MEMORY
                                    ? "standard skipped: out of memory"
                                    : "standard failed";
        } else {
            pt->standard_s = timing.median_s;
            pt->standard_gflops = pt->flops / timing.median_s * 1e-9;
            pt->max_abs_diff = max_abs_diff(sp.o_tileattn, sp.o_standard, dtype, sp.o_count);
        }
    }
    free_problem(&sp);
    return 0;
}

/* Writes the CSV and the SVG of the points so far; 0, or -1 (reported). */
static int write_outputs(const bench_sweep_config *cfg, const bench_sweep_point *points,
                         int n_points, FILE *err) {
    if (cfg->csv_path && bench_write_csv(cfg->csv_path, points, n_points) != 0) {
        fprintf(err, "bench: cannot write %s\n", cfg->csv_path);
        return -1;
    }
    char title[256];
    snprintf(title, sizeof title, "tileattn vs standard attention (library ISA %s)",
             tileattn_isa_name());
    if (cfg->svg_path && bench_write_svg(cfg->svg_path, points, n_points, title) != 0) {
        fprintf(err, "bench: cannot write %s\n", cfg->svg_path);
        return -1;
    }
    return 0;
}

int bench_sweep_run(const bench_sweep_config *cfg, FILE *out, FILE *err) {
    if (check_config(cfg, err) != 0) return 2;
    /* Fail before an hour of measuring, not after: the outputs must be
     * writable (the CSV gets its header now, both are rewritten after every
     * point so an interrupted sweep keeps what it measured). */
    if (write_outputs(cfg, NULL, 0, err) != 0) return 2;
    const int n_max =
        cfg->n_threads * cfg->n_dtypes * cfg->n_head_dims * cfg->n_causal_modes * cfg->n_seqlens;
    bench_sweep_point *points = calloc((size_t)n_max, sizeof *points);
    if (!points) {
        fprintf(err, "bench: out of memory\n");
        return 2;
    }
    const char *coretype = bench_blas_coretype_env();
    fprintf(out,
            "sweep: B=1, H = clamp(%lld / Sq, 1, %lld), FLOPs = 4 B H Sq Sk D (halved when "
            "causal);\n"
            "       median of %d runs after %d warm-up; library ISA %s\n",
            (long long)cfg->tokens, (long long)cfg->max_heads, cfg->repeats, cfg->warmup,
            tileattn_isa_name());
    fprintf(out, "       sgemm: %s%s%s%s\n", bench_blas_name(),
            coretype ? " (OPENBLAS_CORETYPE=" : "", coretype ? coretype : "", coretype ? ")" : "");
    fprintf(out, "       standard = materialized attention (S = QK^T by sgemm, softmax, PV by "
                 "sgemm)\n");
    fprintf(out, "       tileattn's P in P.V: %s\n",
            cfg->p_precision == TILEATTN_P_INPUT_DTYPE
                ? "the input dtype allowed (--p-input-dtype; bf16 on amx/avx512bf16)"
                : "float32");
    for (int i = 0; i < cfg->n_dtypes; i++)
        if (cfg->dtypes[i] != TILEATTN_F32) {
            fprintf(out, "       f16/bf16: the standard attention converts to float32 for sgemm "
                         "(no half-precision GEMM in this OpenBLAS)\n");
            break;
        }
    if (bench_blas_kernel_warning()) fprintf(out, "%s\n", bench_blas_kernel_warning());
    int n_points = 0, rc = 0;
    for (int ti = 0; ti < cfg->n_threads && rc == 0; ti++) {
        int threads = cfg->threads[ti] > 0 ? cfg->threads[ti] : bench_max_threads();
        int used = threads;
        double fma_peak = bench_fma_peak_gflops(threads, 10, &used);
        double bf16_peak = bench_bf16_peak_gflops(threads, 10, NULL);
        double sgemm = bench_sgemm_gflops(0, 2048, 2048, 2048, threads, 3);
        fprintf(out, "\n%d thread%s: FMA peak (%s) %.1f GFLOP/s", threads, threads > 1 ? "s" : "",
                bench_fma_isa(), fma_peak);
        if (bf16_peak > 0) fprintf(out, ", bf16 dot peak %.1f GFLOP/s", bf16_peak);
        fprintf(out, ", sgemm 2048^3 %.1f GFLOP/s\n", sgemm);
        if (used != threads)
            fprintf(out, "  (note: OpenMP ran %d thread%s, not %d)\n", used, used > 1 ? "s" : "",
                    threads);
        print_table_header(out);
        for (int di = 0; di < cfg->n_dtypes && rc == 0; di++) {
            tileattn_dtype dtype = cfg->dtypes[di];
            for (int hi = 0; hi < cfg->n_head_dims && rc == 0; hi++) {
                for (int ci = 0; ci < cfg->n_causal_modes && rc == 0; ci++) {
                    for (int si = 0; si < cfg->n_seqlens && rc == 0; si++) {
                        bench_sweep_point *pt = &points[n_points];
                        uint64_t seed = cfg->seed + 1000003u * (uint64_t)n_points;
                        rc = run_point(cfg, err, threads, dtype, cfg->head_dims[hi],
                                       cfg->causal_modes[ci], cfg->seqlens[si], seed, pt);
                        if (rc != 0) break;
                        pt->peak_gflops = fma_peak;
                        pt->peak_kind = fma_peak_kind();
                        pt->bf16_dot_peak_gflops = bf16_peak > 0 ? bf16_peak : NAN;
                        pt->sgemm_gflops = sgemm;
                        pt->p_precision = cfg->p_precision;
                        print_point(out, pt);
                        n_points++;
                        if (write_outputs(cfg, points, n_points, err) != 0) rc = 2;
                    }
                }
            }
        }
    }
    fprintf(out, "\nta/peak: tileattn over the FMA peak on the same threads, for every dtype (the "
                 "CSV also has the vdpbf16ps peak);\n"
                 "ta/std: over the standard attention; ta/sgemm: over sgemm 2048^3; max|dO|: "
                 "largest |O_tileattn - O_standard|.\n");
    if (rc != 2 && n_points > 0) {
        if (cfg->csv_path) fprintf(out, "wrote %s\n", cfg->csv_path);
        if (cfg->svg_path) fprintf(out, "wrote %s\n", cfg->svg_path);
    }
    free(points);
    return rc;
}
