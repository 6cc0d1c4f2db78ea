/*
 * tileattn demo: the first thing to run after building. One realistic
 * problem (B=1, H=8, Sq=Sk=2048, D=128, causal, float32, fixed-seed random
 * inputs), computed by tileattn, checked against the float64 reference and
 * timed against the standard materialized attention.
 *
 * The reference is single-threaded float64 and slow by design, so it checks
 * as many heads as fit in about 10 seconds (head 0 is timed first to
 * estimate), always at least one; the output says which heads were checked.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "desc.h"
#include "flags.h"

/* The demo's problem. */
enum { DEMO_B = 1, DEMO_H = 8, DEMO_S = 2048, DEMO_D = 128, DEMO_REPEATS = 5 };

/* Largest |O - O_ref| accepted for float32: an exact algorithm in float32
 * lands near 1e-6 on these inputs (|O| <= ~4); 1e-4 leaves margin for any
 * summation order while still catching a wrong mask, scale or softmax. */
#define DEMO_TOLERANCE 1e-4

/* Seconds of reference time to spend checking heads. */
#define DEMO_CHECK_BUDGET_S 10.0

static void print_demo_help(FILE *out) {
    fputs("Usage: tileattn demo [--threads N]\n"
          "\n"
          "Runs tileattn on a causal problem (B=1, H=8, Sq=Sk=2048, D=128, float32,\n"
          "random inputs from a fixed seed), checks it against the float64 reference,\n"
          "and times it against the standard attention that materializes the Sq x Sk\n"
          "score matrix (OpenBLAS sgemm + softmax + sgemm). The single-threaded float64\n"
          "reference checks as many heads as it can in about 10 s (the output says\n"
          "which). Exit status 1 if tileattn's error exceeds the stated tolerance (1e-4).\n"
          "\n"
          "  --threads N   worker threads (0 = all cores) [0]\n",
          out);
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

/* Runs the reference on heads [h0, h0 + n) (a view of the same tensors)
 * and returns the largest |O - O_ref| of each output, or -1 on failure. */
static int check_heads(const tileattn_forward_args *args, const float *o_tileattn,
                       const float *o_standard, int64_t h0, int64_t n, double *err_tileattn,
                       double *err_standard) {
    const int64_t s = args->seqlen_q, d = args->head_dim;
    double *ref = malloc((size_t)(s * n * d) * sizeof *ref);
    if (!ref) return -1;
    tileattn_forward_args view = *args;
    view.heads_q = view.heads_kv = n;
    view.q.data = (const float *)args->q.data + h0 * args->q.stride_h;
    view.k.data = (const float *)args->k.data + h0 * args->k.stride_h;
    view.v.data = (const float *)args->v.data + h0 * args->v.stride_h;
    view.lse = NULL;
    tileattn_status st = tileattn_reference_forward(&view, ref, NULL);
    if (st != TILEATTN_OK) {
        fprintf(stderr, "tileattn demo: the reference failed: %s\n", tileattn_status_string(st));
        free(ref);
        return -1;
    }
    for (int64_t i = 0; i < s; i++)
        for (int64_t h = 0; h < n; h++)
            for (int64_t c = 0; c < d; c++) {
                double want = ref[(i * n + h) * d + c];
                int64_t at = i * args->o.stride_s + (h0 + h) * args->o.stride_h + c;
                double e1 = fabs((double)o_tileattn[at] - want);
                double e2 = fabs((double)o_standard[at] - want);
                if (!(e1 <= *err_tileattn)) *err_tileattn = e1; /* NaN counts as worst */
                if (!(e2 <= *err_standard)) *err_standard = e2;
            }
    free(ref);
    return 0;
}

int ta_cmd_demo(int argc, char **argv) {
    int64_t threads = 0;
    for (int i = 1; i < argc; i++) {
        if (ta_cli_is_help(argv[i])) {
            print_demo_help(stdout);
            return TA_EXIT_OK;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            value = argv[++i];
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            value = argv[i] + 10;
        if (value == NULL) {
            fprintf(stderr, "tileattn demo: unknown argument '%s' (try 'tileattn demo --help')\n",
                    argv[i]);
            return TA_EXIT_USAGE;
        }
        if (ta_cli_parse_int64("--threads", value, 0, 4096, &threads) != 0) return TA_EXIT_USAGE;
    }
    if (threads == 0) threads = bench_max_threads();

    const size_t count = (size_t)DEMO_B * DEMO_S * DEMO_H * DEMO_D;
    float *q = malloc(count * sizeof *q), *k = malloc(count * sizeof *k),
          *v = malloc(count * sizeof *v), *o = calloc(count, sizeof *o),
          *o_standard = calloc(count, sizeof *o_standard);
    int status = TA_EXIT_USAGE;
    if (!q || !k || !v || !o || !o_standard) {
        fprintf(stderr, "tileattn demo: out of memory\n");
        goto done;
    }
    uint64_t seed = 42;
    bench_fill_normal(q, TILEATTN_F32, count, 1.0, &seed);
    bench_fill_normal(k, TILEATTN_F32, count, 1.0, &seed);
    bench_fill_normal(v, TILEATTN_F32, count, 1.0, &seed);

    tileattn_forward_args args;
    tileattn_forward_args_init(&args);
    args.batch = DEMO_B;
    args.seqlen_q = args.seqlen_k = DEMO_S;
    args.heads_q = args.heads_kv = DEMO_H;
    args.head_dim = args.head_dim_v = DEMO_D;
    args.dtype = TILEATTN_F32;
    args.q = tileattn_tensor_contiguous(q, DEMO_S, DEMO_H, DEMO_D);
    args.k = tileattn_tensor_contiguous(k, DEMO_S, DEMO_H, DEMO_D);
    args.v = tileattn_tensor_contiguous(v, DEMO_S, DEMO_H, DEMO_D);
    args.o = tileattn_tensor_out_contiguous(o, DEMO_S, DEMO_H, DEMO_D);
    args.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
    args.num_threads = (int)threads;
    tileattn_forward_args std_args = args;
    std_args.o = tileattn_tensor_out_contiguous(o_standard, DEMO_S, DEMO_H, DEMO_D);

    const double flops = bench_attention_flops(DEMO_B, DEMO_H, DEMO_S, DEMO_S, DEMO_D, DEMO_D, 1);
    printf("tileattn demo: exact attention on this CPU, without the Sq x Sk score matrix\n"
           "  problem  B=%d H=%d Sq=Sk=%d D=%d, causal, float32, random N(0,1) inputs (seed 42)\n"
           "  machine  %s kernels, %d thread%s\n"
           "  baseline %s%s%s%s\n",
           DEMO_B, DEMO_H, DEMO_S, DEMO_D, tileattn_isa_name(), (int)threads,
           threads > 1 ? "s" : "", bench_blas_name(),
           bench_blas_coretype_env() ? " (OPENBLAS_CORETYPE=" : "",
           bench_blas_coretype_env() ? bench_blas_coretype_env() : "",
           bench_blas_coretype_env() ? ")" : "");
    if (bench_blas_kernel_warning()) printf("  %s\n", bench_blas_kernel_warning());
    putchar('\n');

    /* Timings: median of DEMO_REPEATS after one warm-up, same threads. */
    bench_timing ta_time, std_time;
    timed_forward run = {&args, (int)threads, 0, TILEATTN_OK};
    if (bench_time_median(run_forward, &run, 1, DEMO_REPEATS, &ta_time) != 0) {
        fprintf(stderr, "tileattn demo: tileattn_forward failed: %s\n",
                tileattn_status_string(run.status));
        goto done;
    }
    timed_forward std_run = {&std_args, (int)threads, 1, TILEATTN_OK};
    if (bench_time_median(run_forward, &std_run, 1, DEMO_REPEATS, &std_time) != 0) {
        fprintf(stderr, "tileattn demo: the standard attention failed: %s\n",
                tileattn_status_string(std_run.status));
        goto done;
    }

    /* Memory beyond Q, K, V and O: the planner's workspace against S. */
    ta_desc desc;
    size_t ta_bytes = 0;
    if (ta_plan(&args, &desc) == TILEATTN_OK)
        ta_bytes = desc.workspace_floats * sizeof(float) * (size_t)desc.num_threads;
    const size_t std_bytes = bench_standard_attention_score_bytes(&std_args, (int)threads);

    printf("                        time   GFLOP/s   extra memory\n");
    printf("  tileattn          %7.1f ms  %8.1f   %.2f MiB workspace (%d x %.0f KiB, per thread)\n",
           1e3 * ta_time.median_s, flops / ta_time.median_s * 1e-9, (double)ta_bytes / 1048576.0,
           ta_bytes ? desc.num_threads : 0,
           ta_bytes ? (double)desc.workspace_floats * sizeof(float) / 1024.0 : 0.0);
    printf("  standard          %7.1f ms  %8.1f   %.2f MiB for S (%d x %d float32, one head at "
           "a time)\n",
           1e3 * std_time.median_s, flops / std_time.median_s * 1e-9, (double)std_bytes / 1048576.0,
           DEMO_S, DEMO_S);
    printf("  speed-up          %7.2fx\n", std_time.median_s / ta_time.median_s);
    printf("  (GFLOP/s counts %.2f GFLOP per call: 4 B H Sq Sk D, halved for causal;\n"
           "   median of %d runs after a warm-up)\n\n",
           flops * 1e-9, DEMO_REPEATS);

    /* Accuracy against the float64 reference, head 0 first to time it. */
    double err_tileattn = 0.0, err_standard = 0.0;
    double t0 = bench_now_seconds();
    if (check_heads(&args, o, o_standard, 0, 1, &err_tileattn, &err_standard) != 0) goto done;
    double per_head = bench_now_seconds() - t0;
    int64_t heads_checked = 1;
    if (per_head > 0 && DEMO_H > 1) {
        int64_t fit = (int64_t)(DEMO_CHECK_BUDGET_S / per_head);
        int64_t more = (fit > DEMO_H ? DEMO_H : fit) - 1;
        if (more > 0) {
            if (check_heads(&args, o, o_standard, 1, more, &err_tileattn, &err_standard) != 0)
                goto done;
            heads_checked += more;
        }
    }
    if (heads_checked == DEMO_H)
        printf("  accuracy vs the float64 reference (all %d heads, %.1f s):\n", DEMO_H,
               bench_now_seconds() - t0);
    else
        printf("  accuracy vs the float64 reference (heads 0..%lld of %d: the single-threaded\n"
               "  reference takes %.1f s per head here, the check is capped at ~%.0f s):\n",
               (long long)heads_checked - 1, DEMO_H, per_head, DEMO_CHECK_BUDGET_S);
    printf("    tileattn   max |O - O_ref| = %.2e   (tolerance %.0e)\n", err_tileattn,
           DEMO_TOLERANCE);
    printf("    standard   max |O - O_ref| = %.2e\n\n", err_standard);
    if (!(err_tileattn <= DEMO_TOLERANCE)) {
        printf("FAILED: tileattn's error is above the tolerance\n");
        status = TA_EXIT_MISMATCH;
        goto done;
    }
    printf("OK: tileattn matches the reference. Next: 'tileattn bench --help'.\n");
    status = TA_EXIT_OK;

done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(o_standard);
    return status;
}
