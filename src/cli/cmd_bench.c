/*
 * tileattn bench: tileattn against its baselines, measured in one process on
 * the same threads.
 *
 * One problem (the shape and mask flags): the FMA peak, sgemm 2048^3 and on
 * attention's own GEMM shapes, the standard materialized attention and
 * tileattn, with GFLOP/s and ratios. --sweep: the FlashAttention-2 paper's
 * sweep, scaled (see bench/sweep.c), as a table, a CSV and an SVG plot.
 * Inputs are random N(0,1) from a fixed seed, rounded to the dtype (nearest
 * even); mask files (--alibi, --bias...) are read as run reads them.
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward_bench.h"
#include "bench.h"
#include "cli.h"
#include "decode_bench.h"
#include "ukernel_bench.h"
#include "flags.h"
#include "io.h"

static const char *const cmd = "bench";

static void print_bench_help(FILE *out) {
    fputs("Usage: tileattn bench [shape flags] [mask flags] [--repeats N] [--warmup N]\n"
          "       tileattn bench --sweep [sweep flags]\n"
          "       tileattn bench --decode [--batch N --seqlen N --heads N --heads-kv N\n"
          "                                --head-dim N --repeats N --stream-mib N\n"
          "                                --layout bshd|bhsd --window W]\n"
          "       tileattn bench --backward [--batch N --heads N --heads-kv N --seqlen N\n"
          "                                  --head-dim N --dtype T --causal --threads N\n"
          "                                  --repeats N --rss-only]\n"
          "       tileattn bench --ukernels [--head-dim N --rows M --keys N --repeats N]\n"
          "\n"
          "Measures, in one run on the same threads: the FMA peak, OpenBLAS sgemm (2048^3\n"
          "and the problem's own Q K^T and P V shapes), the standard attention (S = Q K^T\n"
          "materialized, softmax, P V) and tileattn, and prints GFLOP/s and ratios.\n"
          "FLOPs are FlashAttention's count: 4 B H Sq Sk D (2 B H Sq Sk (D+Dv)), halved\n"
          "when causal; windows and masks are not discounted. Inputs are random N(0,1)\n"
          "(fixed seed) in the chosen dtype; f16/bf16 are converted to float32 for the\n"
          "standard attention's sgemm (this OpenBLAS has no half-precision GEMM).\n"
          "OpenBLAS picks its kernels at load time; OPENBLAS_CORETYPE overrides that,\n"
          "and bench warns when it runs kernels older than the CPU (a weaker baseline).\n"
          "\n"
          "Timing:\n"
          "  --repeats N          timed runs, the median is reported [5; sweep 3]\n"
          "  --warmup N           untimed runs first [1]\n"
          "  --mem-cap-gib G      skip the standard attention when its S matrix would\n"
          "                       exceed G GiB [4]\n"
          "\n"
          "--decode: KV-cache decoding's bandwidth against a STREAM-style read (see\n"
          "bench/decode_bench.h); --backward: the backward pass against sgemm, with the\n"
          "peak resident memory (see bench/backward_bench.h); --ukernels: each\n"
          "microkernel table alone on a cache-resident tile, against the FMA peak (see\n"
          "bench/ukernel_bench.h).\n"
          "\n"
          "Sweep (--sweep): B=1, H = clamp(tokens / Sq, 1, max-heads), Sq = Sk, both\n"
          "causal and not unless --masks says otherwise:\n"
          "  --seqlens L,...      sequence lengths [512,1024,2048,4096,8192,16384]\n"
          "  --head-dims D,...    head dimensions [64,128]\n"
          "  --dtypes T,...       f32, f16, bf16 [f32,bf16]\n"
          "  --threads-list N,... thread counts, 0 = all cores [1,0]\n"
          "  --masks M,...        none, causal [none,causal]\n"
          "  --tokens N           B H Sq per point [16384]\n"
          "  --max-heads N        cap on H [64]\n"
          "  --csv FILE           the table as CSV [bench-results.csv]\n"
          "  --svg FILE           the plot [bench-results.svg]\n"
          "\n",
          out);
    ta_cli_print_problem_flags(out, 1);
}

/* ------------------------------------------------------------ flag values */

/* If argv[*i] is `flag` ("--flag value" or "--flag=value"), sets *value and
 * advances *i past it: 1; 0 if it is another flag; -1 when the value is
 * missing. */
static int own_flag(int argc, char **argv, int *i, const char *flag, const char **value) {
    const char *arg = argv[*i];
    size_t n = strlen(flag);
    if (strncmp(arg, flag, n) != 0 || (arg[n] != '\0' && arg[n] != '=')) return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        *i += 1;
        return 1;
    }
    if (*i + 1 >= argc) {
        ta_cli_error(cmd, "%s needs a value", flag);
        return -1;
    }
    *value = argv[*i + 1];
    *i += 2;
    return 1;
}

/* Splits a comma-separated list of integers in [min, max]. */
static int parse_int_list(const char *flag, const char *text, int64_t min, int64_t max,
                          int64_t *out, int max_count, int *count) {
    *count = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item) {
            ta_cli_error(cmd, "%s: want a comma-separated list of integers, got '%s'", flag, text);
            return -1;
        }
        if (*count == max_count) {
            ta_cli_error(cmd, "%s: at most %d values", flag, max_count);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (ta_cli_parse_int64(flag, item, min, max, &out[*count]) != 0) return -1;
        (*count)++;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* Splits a comma-separated list of names; *out gets each name's index in
 * names[0..n_names). */
static int parse_name_list(const char *flag, const char *text, const char *const *names,
                           int n_names, int *out, int max_count, int *count) {
    *count = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int found = -1;
        for (int k = 0; k < n_names; k++)
            if (strlen(names[k]) == len && strncmp(names[k], p, len) == 0) found = k;
        if (found < 0 || *count == max_count) {
            ta_cli_error(cmd, "%s: '%s' is not a list of known names (or too long)", flag, text);
            return -1;
        }
        out[(*count)++] = found;
        if (!comma) return 0;
        p = comma + 1;
    }
}

typedef struct bench_options {
    int sweep;
    int repeats, warmup;
    int repeats_given;
    size_t mem_cap;
    bench_sweep_config sweep_cfg;
} bench_options;

/* The flags both modes take, and the sweep's. 1 consumed, 0 not ours, -1
 * bad value. */
static int parse_bench_flag(int argc, char **argv, int *i, bench_options *o) {
    const char *value;
    int64_t n;
    int r;
    if (strcmp(argv[*i], "--sweep") == 0) {
        o->sweep = 1;
        *i += 1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--repeats", &value)) != 0) {
        if (r < 0 || ta_cli_parse_int64("--repeats", value, 1, BENCH_MAX_REPEATS, &n) != 0)
            return -1;
        o->repeats = (int)n;
        o->repeats_given = 1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--warmup", &value)) != 0) {
        if (r < 0 || ta_cli_parse_int64("--warmup", value, 0, 100, &n) != 0) return -1;
        o->warmup = (int)n;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--mem-cap-gib", &value)) != 0) {
        float gib;
        if (r < 0 || ta_cli_parse_float("--mem-cap-gib", value, 0.0f, &gib) != 0) return -1;
        double bytes = (double)gib * 1073741824.0;
        o->mem_cap = bytes >= (double)SIZE_MAX ? SIZE_MAX : (size_t)bytes;
        return 1;
    }
    bench_sweep_config *c = &o->sweep_cfg;
    int64_t list[BENCH_SWEEP_MAX_LIST];
    int count;
    if ((r = own_flag(argc, argv, i, "--seqlens", &value)) != 0) {
        if (r < 0 || parse_int_list("--seqlens", value, 1, (int64_t)1 << 24, c->seqlens,
                                    BENCH_SWEEP_MAX_LIST, &c->n_seqlens) != 0)
            return -1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--head-dims", &value)) != 0) {
        if (r < 0 || parse_int_list("--head-dims", value, 1, TILEATTN_MAX_HEAD_DIM, c->head_dims,
                                    BENCH_SWEEP_MAX_LIST, &c->n_head_dims) != 0)
            return -1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--threads-list", &value)) != 0) {
        if (r < 0 || parse_int_list("--threads-list", value, 0, 4096, list, BENCH_SWEEP_MAX_LIST,
                                    &count) != 0)
            return -1;
        for (int k = 0; k < count; k++)
            c->threads[k] = (int)list[k];
        c->n_threads = count;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--dtypes", &value)) != 0) {
        static const char *const names[] = {"f32", "f16", "bf16"};
        static const tileattn_dtype dtypes[] = {TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16};
        int idx[BENCH_SWEEP_MAX_LIST];
        if (r < 0 ||
            parse_name_list("--dtypes", value, names, 3, idx, BENCH_SWEEP_MAX_LIST, &count) != 0)
            return -1;
        for (int k = 0; k < count; k++)
            c->dtypes[k] = dtypes[idx[k]];
        c->n_dtypes = count;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--masks", &value)) != 0) {
        static const char *const names[] = {"none", "causal"};
        int idx[BENCH_SWEEP_MAX_LIST];
        if (r < 0 || parse_name_list("--masks", value, names, 2, idx, 2, &count) != 0) return -1;
        for (int k = 0; k < count; k++)
            c->causal_modes[k] = idx[k];
        c->n_causal_modes = count;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--tokens", &value)) != 0) {
        if (r < 0 || ta_cli_parse_int64("--tokens", value, 1, (int64_t)1 << 30, &c->tokens) != 0)
            return -1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--max-heads", &value)) != 0) {
        if (r < 0 || ta_cli_parse_int64("--max-heads", value, 1, 4096, &c->max_heads) != 0)
            return -1;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--csv", &value)) != 0) {
        if (r < 0) return -1;
        c->csv_path = value;
        return 1;
    }
    if ((r = own_flag(argc, argv, i, "--svg", &value)) != 0) {
        if (r < 0) return -1;
        c->svg_path = value;
        return 1;
    }
    return 0;
}

/* Is this flag only meaningful with --sweep? */
static int is_sweep_only_flag(const char *arg) {
    static const char *const flags[] = {"--seqlens",   "--head-dims", "--threads-list",
                                        "--dtypes",    "--masks",     "--tokens",
                                        "--max-heads", "--csv",       "--svg"};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        size_t n = strlen(flags[k]);
        if (strncmp(arg, flags[k], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ one problem */

static void print_measure(const char *label, double seconds, double gflops, const char *note) {
    if (seconds > 0)
        printf("  %-34s %10.2f ms %9.1f GFLOP/s  %s\n", label, 1e3 * seconds, gflops, note);
    else
        printf("  %-34s %13s %9.1f GFLOP/s  %s\n", label, "", gflops, note);
}

static void print_skipped(const char *label, const char *why) {
    printf("  %-34s %13s %17s  %s\n", label, "", "-", why);
}

typedef struct timed_forward {
    const tileattn_forward_args *args;
    int threads;
    int standard;
    tileattn_status status;
} timed_forward;

static int run_forward(void *ctx) {
    timed_forward *t = ctx;
    t->status =
        t->standard ? bench_standard_attention(t->args, t->threads) : tileattn_forward(t->args);
    return t->status == TILEATTN_OK ? 0 : 1;
}

static void *alloc_elements(int64_t a, int64_t b, int64_t c, size_t elem) {
    size_t n;
    if (a < 0 || b < 0 || c < 0 || bench_mul_size((size_t)a, (size_t)b, &n) ||
        bench_mul_size(n, (size_t)c, &n) || bench_mul_size(n, elem, &n))
        return NULL;
    return calloc(n ? n : 1, 1);
}

static double mib(size_t bytes) {
    return (double)bytes / 1048576.0;
}

static int bench_one(const ta_cli_problem *p, const bench_options *o) {
    int status = TA_EXIT_USAGE;
    ta_cli_inputs in;
    memset(&in, 0, sizeof in);
    void *q = NULL, *k = NULL, *v = NULL, *o_tileattn = NULL, *o_standard = NULL;
    if (ta_cli_load_cu_seqlens(cmd, p, &in) != 0) goto done;
    ta_cli_dims *d = &in.dims;
    if (!d->varlen) {
        d->batch = p->batch;
        d->seqlen_q = p->seqlen_q;
        d->seqlen_k = p->seqlen_k;
    }
    d->heads_q = p->heads_q;
    d->heads_kv = p->heads_kv;
    d->head_dim = p->head_dim;
    d->head_dim_v = p->head_dim_v;
    in.dtype = p->dtype;
    if (ta_cli_load_extras(cmd, p, &in) != 0) goto done;
    tileattn_forward_args args;
    ta_cli_fill_args(p, &in, &args);

    /* Random Q, K, V in the problem's dtype and layout. */
    const int64_t rows_q = d->varlen ? d->total_q : d->batch * d->seqlen_q;
    const int64_t rows_k = d->varlen ? d->total_k : d->batch * d->seqlen_k;
    const size_t elem = tileattn_dtype_size(p->dtype);
    q = alloc_elements(rows_q, d->heads_q, d->head_dim, elem);
    k = alloc_elements(rows_k, d->heads_kv, d->head_dim, elem);
    v = alloc_elements(rows_k, d->heads_kv, d->head_dim_v, elem);
    o_tileattn = alloc_elements(rows_q, d->heads_q, d->head_dim_v, elem);
    o_standard = alloc_elements(rows_q, d->heads_q, d->head_dim_v, elem);
    if (!q || !k || !v || !o_tileattn || !o_standard) {
        ta_cli_error(cmd, "cannot allocate the tensors (sizes overflow or memory is short)");
        goto done;
    }
    uint64_t seed = 42;
    bench_fill_normal(q, p->dtype, (size_t)(rows_q * d->heads_q * d->head_dim), 1.0, &seed);
    bench_fill_normal(k, p->dtype, (size_t)(rows_k * d->heads_kv * d->head_dim), 1.0, &seed);
    bench_fill_normal(v, p->dtype, (size_t)(rows_k * d->heads_kv * d->head_dim_v), 1.0, &seed);
    args.q =
        tileattn_tensor_contiguous(q, d->varlen ? rows_q : d->seqlen_q, d->heads_q, d->head_dim);
    args.k =
        tileattn_tensor_contiguous(k, d->varlen ? rows_k : d->seqlen_k, d->heads_kv, d->head_dim);
    args.v =
        tileattn_tensor_contiguous(v, d->varlen ? rows_k : d->seqlen_k, d->heads_kv, d->head_dim_v);
    args.o = tileattn_tensor_out_contiguous(o_tileattn, d->varlen ? rows_q : d->seqlen_q,
                                            d->heads_q, d->head_dim_v);
    const int threads = p->threads > 0 ? p->threads : bench_max_threads();
    args.num_threads = threads;
    tileattn_status st = tileattn_validate(&args);
    if (st != TILEATTN_OK) {
        ta_cli_error(cmd, "invalid problem: %s", tileattn_status_string(st));
        goto done;
    }
    tileattn_forward_args std_args = args;
    std_args.o = tileattn_tensor_out_contiguous(o_standard, d->varlen ? rows_q : d->seqlen_q,
                                                d->heads_q, d->head_dim_v);

    const int causal = p->causal || p->causal_top_left;
    double flops = 0.0;
    if (d->varlen) {
        const int32_t *cq = in.cu_seqlens_q.data, *ck = in.cu_seqlens_k.data;
        for (int64_t b = 0; b < d->batch; b++)
            flops += bench_attention_flops(1, d->heads_q, cq[b + 1] - cq[b], ck[b + 1] - ck[b],
                                           d->head_dim, d->head_dim_v, causal);
    } else {
        flops = bench_attention_flops(d->batch, d->heads_q, d->seqlen_q, d->seqlen_k, d->head_dim,
                                      d->head_dim_v, causal);
    }

    printf("tileattn bench: B=%lld H=%lld Hk=%lld Sq=%lld Sk=%lld D=%lld Dv=%lld %s%s%s%s, "
           "%d thread%s\n",
           (long long)d->batch, (long long)d->heads_q, (long long)d->heads_kv,
           (long long)d->seqlen_q, (long long)d->seqlen_k, (long long)d->head_dim,
           (long long)d->head_dim_v, bench_dtype_name(p->dtype),
           p->causal            ? ", causal"
           : p->causal_top_left ? ", causal (top-left)"
                                : "",
           d->varlen ? ", varlen (longest sequences shown)" : "",
           args.window_left >= 0 || args.window_right >= 0 || args.softcap > 0 ||
                   args.alibi_slopes || args.bias || args.sinks
               ? ", with masks/extras"
               : "",
           threads, threads > 1 ? "s" : "");
    const char *coretype = bench_blas_coretype_env();
    printf("library ISA %s (%s for %s); BLAS %s%s%s%s\n", tileattn_isa_name(),
           tileattn_isa_name_for_dtype(p->dtype), bench_dtype_name(p->dtype), bench_blas_name(),
           coretype ? " (OPENBLAS_CORETYPE=" : "", coretype ? coretype : "", coretype ? ")" : "");
    if (p->p_input_dtype)
        printf("P.V: P allowed in the input dtype (--p-input-dtype); the standard attention's "
               "P is float32\n");
    if (bench_blas_kernel_warning()) printf("%s\n", bench_blas_kernel_warning());
    printf("%.3g GFLOP per forward (FlashAttention's count%s); median of %d after %d warm-up\n\n",
           flops * 1e-9, causal ? ", halved for causal" : "", o->repeats, o->warmup);

    /* Baselines: peak, sgemm. */
    int used = threads;
    char note[160];
    double fma_peak = bench_fma_peak_gflops(threads, 10, &used);
    snprintf(note, sizeof note, "%s, %d thread%s%s", bench_fma_isa(), used, used > 1 ? "s" : "",
             used != threads ? " (OpenMP gave fewer)" : "");
    print_measure("FMA peak", 0, fma_peak, note);
    double bf16_peak = bench_bf16_peak_gflops(threads, 10, NULL);
    if (bf16_peak > 0) print_measure("bf16 dot peak (vdpbf16ps)", 0, bf16_peak, "");
    double sgemm = bench_sgemm_gflops(0, 2048, 2048, 2048, threads, o->repeats);
    print_measure("sgemm 2048^3", 2.0 * 2048 * 2048 * 2048 / (sgemm * 1e9), sgemm, "");
    const int64_t sq = d->seqlen_q, sk = d->seqlen_k;
    size_t s_bytes = SIZE_MAX;
    if (sq <= INT_MAX && sk <= INT_MAX && !bench_mul_size((size_t)sq * 4, (size_t)sk, &s_bytes) &&
        s_bytes <= o->mem_cap) {
        double g1 = bench_sgemm_gflops(1, sq, sk, d->head_dim, threads, o->repeats);
        double g2 = bench_sgemm_gflops(0, sq, d->head_dim_v, sk, threads, o->repeats);
        snprintf(note, sizeof note, "Sq x Sk x D = %lld x %lld x %lld", (long long)sq,
                 (long long)sk, (long long)d->head_dim);
        print_measure("sgemm Q K^T (one head)",
                      2.0 * (double)sq * (double)sk * (double)d->head_dim / (g1 * 1e9), g1, note);
        snprintf(note, sizeof note, "Sq x Dv x Sk = %lld x %lld x %lld", (long long)sq,
                 (long long)d->head_dim_v, (long long)sk);
        print_measure("sgemm P V (one head)",
                      2.0 * (double)sq * (double)sk * (double)d->head_dim_v / (g2 * 1e9), g2, note);
    } else {
        print_skipped("sgemm Q K^T, P V (one head)", "skipped: S over the memory cap");
    }

    /* The two attentions, same inputs, same threads. */
    bench_timing timing;
    double std_gflops = NAN;
    size_t std_bytes = bench_standard_attention_score_bytes(&std_args, threads);
    if (std_bytes > o->mem_cap) {
        snprintf(note, sizeof note, "skipped: S would need %.0f MiB, over --mem-cap-gib",
                 mib(std_bytes));
        print_skipped("standard attention", note);
    } else {
        timed_forward t = {&std_args, threads, 1, TILEATTN_OK};
        if (bench_time_median(run_forward, &t, o->warmup, o->repeats, &timing) != 0) {
            snprintf(note, sizeof note, "failed: %s", tileattn_status_string(t.status));
            print_skipped("standard attention", note);
        } else {
            std_gflops = flops / timing.median_s * 1e-9;
            snprintf(note, sizeof note, "S: %.1f MiB materialized", mib(std_bytes));
            print_measure("standard attention", timing.median_s, std_gflops, note);
        }
    }
    timed_forward t = {&args, threads, 0, TILEATTN_OK};
    if (bench_time_median(run_forward, &t, o->warmup, o->repeats, &timing) != 0) {
        ta_cli_error(cmd, "tileattn_forward failed: %s", tileattn_status_string(t.status));
        status = TA_EXIT_MISMATCH;
        goto done;
    }
    double ta_gflops = flops / timing.median_s * 1e-9;
    print_measure("tileattn", timing.median_s, ta_gflops, "");

    printf("\n  tileattn / FMA peak          %6.1f %%\n", 100.0 * ta_gflops / fma_peak);
    if (p->dtype == TILEATTN_BF16 && bf16_peak > 0)
        printf("  tileattn / bf16 dot peak     %6.1f %%\n", 100.0 * ta_gflops / bf16_peak);
    if (!isnan(std_gflops))
        printf("  tileattn / standard          %6.2f x\n", ta_gflops / std_gflops);
    printf("  tileattn / sgemm 2048^3      %6.2f x\n", ta_gflops / sgemm);
    if (!isnan(std_gflops)) {
        double worst = 0.0;
        size_t count = (size_t)(rows_q * d->heads_q * d->head_dim_v);
        for (size_t e = 0; e < count; e++) {
            double diff = fabs(bench_load_element(o_tileattn, p->dtype, e) -
                               bench_load_element(o_standard, p->dtype, e));
            if (!(diff <= worst)) worst = diff;
        }
        printf("  max |O_tileattn - O_standard| %.2e\n", worst);
    }
    status = TA_EXIT_OK;

done:
    free(q);
    free(k);
    free(v);
    free(o_tileattn);
    free(o_standard);
    ta_cli_inputs_free(&in);
    return status;
}

int ta_cmd_bench(int argc, char **argv) {
    bench_options o;
    memset(&o, 0, sizeof o);
    o.repeats = 5;
    o.warmup = 1;
    o.mem_cap = (size_t)4 << 30;
    bench_sweep_config_init(&o.sweep_cfg);
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);
    int problem_flags = 0, threads_given = 0;

    for (int i = 1; i < argc; i++) {
        if (ta_cli_is_help(argv[i])) {
            print_bench_help(stdout);
            return TA_EXIT_OK;
        }
    }
    /* --decode, --backward and --ukernels hand the other flags to their own
     * benchmarks. */
    for (int i = 1; i < argc; i++) {
        int (*own)(int, char **) = strcmp(argv[i], "--decode") == 0     ? ta_bench_decode
                                   : strcmp(argv[i], "--backward") == 0 ? ta_bench_backward
                                   : strcmp(argv[i], "--ukernels") == 0 ? ta_bench_ukernels
                                                                        : NULL;
        if (!own) continue;
        char **rest = malloc((size_t)argc * sizeof *rest);
        if (!rest) {
            ta_cli_error(cmd, "out of memory");
            return TA_EXIT_USAGE;
        }
        int n = 0;
        for (int j = 0; j < argc; j++)
            if (j != i) rest[n++] = argv[j];
        int rc = own(n, rest);
        free(rest);
        return rc;
    }
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        int r = parse_bench_flag(argc, argv, &i, &o);
        if (r == 0) {
            r = ta_cli_parse_problem_flag(argc, argv, &i, &problem);
            if (r > 0) {
                if (strncmp(arg, "--threads", 9) == 0 && (arg[9] == '\0' || arg[9] == '='))
                    threads_given = 1;
                else if (strcmp(arg, "--p-input-dtype") == 0)
                    ; /* a precision, not a shape or a mask: the sweep takes it too */
                else
                    problem_flags = 1;
            }
        }
        if (r < 0) return TA_EXIT_USAGE;
        if (r == 0) {
            ta_cli_error(cmd, "unknown argument '%s' (try 'tileattn bench --help')", arg);
            return TA_EXIT_USAGE;
        }
        if (!o.sweep && is_sweep_only_flag(arg)) o.sweep = -1; /* remembered: checked below */
    }
    if (o.sweep < 0) {
        ta_cli_error(cmd, "--seqlens, --head-dims, --dtypes, --threads-list, --masks, --tokens, "
                          "--max-heads, --csv and --svg go with --sweep");
        return TA_EXIT_USAGE;
    }
    if (!o.sweep) return bench_one(&problem, &o);

    if (problem_flags) {
        ta_cli_error(cmd, "--sweep sets its own shapes and masks; use --seqlens, --head-dims, "
                          "--dtypes and --masks");
        return TA_EXIT_USAGE;
    }
    bench_sweep_config *c = &o.sweep_cfg;
    if (threads_given) { /* --threads N: a one-entry thread list */
        c->threads[0] = problem.threads;
        c->n_threads = 1;
    }
    if (o.repeats_given) c->repeats = o.repeats;
    c->p_precision = problem.p_input_dtype ? TILEATTN_P_INPUT_DTYPE : TILEATTN_P_FLOAT32;
    c->warmup = o.warmup;
    c->standard_mem_cap = o.mem_cap;
    int rc = bench_sweep_run(c, stdout, stderr);
    return rc == 0 ? TA_EXIT_OK : rc == 1 ? TA_EXIT_MISMATCH : TA_EXIT_USAGE;
}
