/*
 * tileattn bench --backward: the FlashAttention-2 backward against the
 * sgemm of the same machine, same threads, same process. A benchmark, not a
 * test: nothing here asserts on a time.
 */
#define _POSIX_C_SOURCE 200809L
#include "backward_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "tileattn.h"

typedef struct bwd_bench {
    int64_t batch, heads, heads_kv, seqlen, head_dim;
    tileattn_dtype dtype;
    int causal, threads, repeats, rss_only;
} bwd_bench;

typedef struct bwd_buffers {
    tileattn_forward_args fwd;
    tileattn_backward_args bwd;
    void *q, *k, *v, *o, *d_o, *dq, *dk, *dv;
    float *lse;
} bwd_buffers;

static int run_forward(void *ctx) {
    return tileattn_forward(&((bwd_buffers *)ctx)->fwd) != TILEATTN_OK;
}

static int run_backward(void *ctx) {
    return tileattn_backward(&((bwd_buffers *)ctx)->bwd) != TILEATTN_OK;
}

static int parse_flags(int argc, char **argv, bwd_bench *b) {
    *b = (bwd_bench){1, 4, 0, 2048, 128, TILEATTN_F32, 0, 1, 3, 0};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int64_t v;
        if (strcmp(f, "--backward") == 0) continue; /* when called from `tileattn bench` */
        if (strcmp(f, "--causal") == 0) {
            b->causal = 1;
            continue;
        }
        if (strcmp(f, "--rss-only") == 0) {
            b->rss_only = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tileattn bench --backward: unknown or incomplete flag %s\n", f);
            return -1;
        }
        const char *val = argv[++i];
        if (strcmp(f, "--dtype") == 0) {
            if (strcmp(val, "f32") == 0)
                b->dtype = TILEATTN_F32;
            else if (strcmp(val, "f16") == 0)
                b->dtype = TILEATTN_F16;
            else if (strcmp(val, "bf16") == 0)
                b->dtype = TILEATTN_BF16;
            else {
                fprintf(stderr, "tileattn bench --backward: bad dtype %s\n", val);
                return -1;
            }
            continue;
        }
        struct {
            const char *name;
            int64_t min;
            int64_t *dst;
        } ints[] = {{"--batch", 1, &b->batch},
                    {"--heads", 1, &b->heads},
                    {"--heads-kv", 1, &b->heads_kv},
                    {"--seqlen", 1, &b->seqlen},
                    {"--head-dim", 1, &b->head_dim}};
        int matched = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (strcmp(f, ints[k].name) == 0) {
                if (bench_parse_int("tileattn bench --backward", f, val, ints[k].min, INT64_MAX,
                                    ints[k].dst))
                    return -1;
                matched = 1;
            }
        if (matched) continue;
        if (strcmp(f, "--threads") == 0 || strcmp(f, "--repeats") == 0) {
            if (bench_parse_int("tileattn bench --backward", f, val,
                                strcmp(f, "--threads") == 0 ? 0 : 1, INT64_MAX, &v))
                return -1;
            if (v > 100000) v = 100000;
            if (f[2] == 't')
                b->threads = (int)v;
            else
                b->repeats = (int)v;
            continue;
        }
        fprintf(stderr, "tileattn bench --backward: unknown flag %s\n", f);
        return -1;
    }
    if (b->heads_kv == 0) b->heads_kv = b->heads;
    return 0;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

static void *alloc_tensor(size_t count, tileattn_dtype dtype, double stddev, uint64_t *seed) {
    size_t bytes;
    if (bench_mul_size(count, tileattn_dtype_size(dtype), &bytes)) return NULL;
    void *p = malloc(bytes ? bytes : 1);
    if (p && stddev > 0) bench_fill_normal(p, dtype, count, stddev, seed);
    return p;
}

int ta_bench_backward(int argc, char **argv) {
    bwd_bench cfg;
    if (parse_flags(argc, argv, &cfg)) return 2;
    int64_t B = cfg.batch, H = cfg.heads, Hk = cfg.heads_kv, S = cfg.seqlen, D = cfg.head_dim;
    size_t nq = (size_t)(B * S * H * D), nk = (size_t)(B * S * Hk * D);
    uint64_t seed = 42;
    bwd_buffers buf = {0};
    buf.q = alloc_tensor(nq, cfg.dtype, 1.0, &seed);
    buf.k = alloc_tensor(nk, cfg.dtype, 1.0, &seed);
    buf.v = alloc_tensor(nk, cfg.dtype, 1.0, &seed);
    buf.d_o = alloc_tensor(nq, cfg.dtype, 1.0, &seed);
    buf.o = alloc_tensor(nq, cfg.dtype, 0.0, &seed);
    buf.dq = alloc_tensor(nq, cfg.dtype, 0.0, &seed);
    buf.dk = alloc_tensor(nk, cfg.dtype, 0.0, &seed);
    buf.dv = alloc_tensor(nk, cfg.dtype, 0.0, &seed);
    buf.lse = malloc((size_t)(B * H * S) * sizeof(float));
    int rc = 0;
    if (!buf.q || !buf.k || !buf.v || !buf.d_o || !buf.o || !buf.dq || !buf.dk || !buf.dv ||
        !buf.lse) {
        fprintf(stderr, "tileattn bench --backward: out of memory\n");
        rc = 1;
        goto done;
    }
    tileattn_forward_args *f = &buf.fwd;
    tileattn_forward_args_init(f);
    f->batch = B, f->seqlen_q = f->seqlen_k = S, f->heads_q = H, f->heads_kv = Hk;
    f->head_dim = D, f->dtype = cfg.dtype, f->num_threads = cfg.threads;
    f->causal = cfg.causal ? TILEATTN_CAUSAL_BOTTOM_RIGHT : TILEATTN_CAUSAL_NONE;
    f->q = tileattn_tensor_contiguous(buf.q, S, H, D);
    f->k = tileattn_tensor_contiguous(buf.k, S, Hk, D);
    f->v = tileattn_tensor_contiguous(buf.v, S, Hk, D);
    f->o = tileattn_tensor_out_contiguous(buf.o, S, H, D);
    f->lse = buf.lse;
    tileattn_backward_args_init(&buf.bwd);
    buf.bwd.fwd = *f;
    buf.bwd.o = tileattn_tensor_contiguous(buf.o, S, H, D);
    buf.bwd.d_o = tileattn_tensor_contiguous(buf.d_o, S, H, D);
    buf.bwd.lse = buf.lse;
    buf.bwd.dq = tileattn_tensor_out_contiguous(buf.dq, S, H, D);
    buf.bwd.dk = tileattn_tensor_out_contiguous(buf.dk, S, Hk, D);
    buf.bwd.dv = tileattn_tensor_out_contiguous(buf.dv, S, Hk, D);

    tileattn_status st = tileattn_forward(f);
    if (st == TILEATTN_OK && cfg.rss_only) st = tileattn_backward(&buf.bwd);
    if (st != TILEATTN_OK) {
        fprintf(stderr, "tileattn bench --backward: %s\n", tileattn_status_string(st));
        rc = 1;
        goto done;
    }
    double inputs_mib = (double)(2 * nq + 2 * nk + nq + nq + 2 * nk) *
                        (double)tileattn_dtype_size(cfg.dtype) / (1024.0 * 1024.0);
    printf("backward  B=%lld H=%lld Hk=%lld Sq=Sk=%lld D=%lld %s%s  isa=%s\n", (long long)B,
           (long long)H, (long long)Hk, (long long)S, (long long)D, bench_dtype_name(cfg.dtype),
           cfg.causal ? " causal" : "", tileattn_isa_name());
    if (cfg.rss_only) {
        printf("tensors (Q K V O dO dQ dK dV): %.1f MiB   peak RSS: %.1f MiB\n", inputs_mib,
               peak_rss_mib());
        goto done;
    }

    int threads = cfg.threads > 0 ? cfg.threads : bench_max_threads();
    double fwd_flops = bench_attention_flops(B, H, S, S, D, D, cfg.causal);
    double bwd_flops = 2.5 * fwd_flops;
    bench_timing t_fwd, t_bwd;
    if (bench_time_median(run_forward, &buf, 1, cfg.repeats, &t_fwd) ||
        bench_time_median(run_backward, &buf, 1, cfg.repeats, &t_bwd)) {
        fprintf(stderr, "tileattn bench --backward: a run failed\n");
        rc = 1;
        goto done;
    }
    bench_blas_set_threads(threads);
    double sgemm = bench_sgemm_gflops(0, 2048, 2048, 2048, threads, cfg.repeats);
    double g_fwd = fwd_flops / t_fwd.median_s * 1e-9, g_bwd = bwd_flops / t_bwd.median_s * 1e-9;
    printf("threads %d, median of %d (after 1 warm-up)\n", threads, cfg.repeats);
    printf("%-28s %10s %10s %12s\n", "", "time ms", "GFLOP/s", "x sgemm");
    printf("%-28s %10.2f %10.1f %12.3f\n", "tileattn forward", t_fwd.median_s * 1e3, g_fwd,
           sgemm > 0 ? g_fwd / sgemm : 0.0);
    printf("%-28s %10.2f %10.1f %12.3f\n", "tileattn backward", t_bwd.median_s * 1e3, g_bwd,
           sgemm > 0 ? g_bwd / sgemm : 0.0);
    printf("%-28s %10s %10.1f %12.3f\n", bench_blas_name(), "", sgemm, 1.0);
    printf("backward FLOPs counted as 2.5 x forward (%.3g); sgemm is 2048^3\n", bwd_flops);
    printf("tensors (Q K V O dO dQ dK dV): %.1f MiB   peak RSS: %.1f MiB\n", inputs_mib,
           peak_rss_mib());
done:
    free(buf.q), free(buf.k), free(buf.v), free(buf.o), free(buf.d_o);
    free(buf.dq), free(buf.dk), free(buf.dv), free(buf.lse);
    return rc;
}
