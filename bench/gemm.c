/*
 * sgemm: OpenBLAS's cblas_sgemm when the build found a BLAS, otherwise a
 * plain C loop that says so in its name (the numbers then describe that loop,
 * not a tuned GEMM).
 */
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tileattn_config.h"

#if BENCH_HAVE_CBLAS
#include <cblas.h>
#endif

const char *bench_blas_name(void) {
#if BENCH_HAVE_CBLAS && BENCH_HAVE_OPENBLAS_API
    /* openblas_get_config names the version and build; the core name says
     * which kernels its DYNAMIC_ARCH dispatch picked on this CPU. */
    static char name[256];
    if (!name[0]) {
        /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": keep name and version. */
        const char *config = openblas_get_config();
        const char *space = config ? strchr(config, ' ') : NULL;
        const char *end = space ? strchr(space + 1, ' ') : NULL;
        int len = end ? (int)(end - config) : config ? (int)strlen(config) : 0;
        snprintf(name, sizeof name, "%.*s sgemm, %s kernels", len, config ? config : "",
                 openblas_get_corename());
    }
    return name;
#elif BENCH_HAVE_CBLAS
    return "CBLAS cblas_sgemm";
#else
    return "plain C loop (no BLAS found at build time)";
#endif
}

/* What OpenBLAS's SkylakeX (AVX-512) kernels need. */
static int cpu_runs_avx512_blas_kernels(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
#else
    return 0;
#endif
}

const char *bench_blas_coretype_env(void) {
    return getenv("OPENBLAS_CORETYPE");
}

const char *bench_blas_kernel_warning(void) {
#if BENCH_HAVE_CBLAS && BENCH_HAVE_OPENBLAS_API
    /* OpenBLAS (DYNAMIC_ARCH) picks its kernels once, at load time, from the
     * CPU or from OPENBLAS_CORETYPE; 0.3.21 picks Cooperlake on Zen 5 by
     * itself, but an inherited OPENBLAS_CORETYPE=Haswell halves its sgemm. */
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *core = openblas_get_corename();
    if (!core || !cpu_runs_avx512_blas_kernels()) return NULL;
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (strcmp(core, avx512_cores[i]) == 0) return NULL;
    static char warning[256];
    if (bench_blas_coretype_env())
        snprintf(warning, sizeof warning,
                 "warning: OPENBLAS_CORETYPE=%s makes OpenBLAS use its %s kernels, older than "
                 "this AVX-512 CPU runs: the sgemm baselines are handicapped (unset it)",
                 bench_blas_coretype_env(), core);
    else
        snprintf(warning, sizeof warning,
                 "warning: OpenBLAS chose its %s kernels, older than this AVX-512 CPU runs: the "
                 "sgemm baselines are handicapped (OPENBLAS_CORETYPE=SkylakeX selects AVX-512)",
                 core);
    return warning;
#else
    return NULL;
#endif
}

int bench_have_blas(void) {
    return BENCH_HAVE_CBLAS;
}

/* The fallback loop's team size (0 = OpenMP's default). */
static int plain_sgemm_threads;

void bench_blas_set_threads(int threads) {
    plain_sgemm_threads = threads > 0 ? threads : bench_max_threads();
#if BENCH_HAVE_CBLAS && BENCH_HAVE_OPENBLAS_API
    openblas_set_num_threads(plain_sgemm_threads);
#endif
}

#if !BENCH_HAVE_CBLAS
/* i-k-j order so the inner loop streams rows of B and C; rows split across
 * OpenMP threads. */
static void sgemm_plain(int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                        int64_t ldc) {
#pragma omp parallel for schedule(static)                                                          \
    num_threads(plain_sgemm_threads > 0 ? plain_sgemm_threads : 1)
    for (int64_t i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        for (int64_t j = 0; j < n; j++)
            c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
        for (int64_t p = 0; p < k; p++) {
            float a_ip = alpha * a[i * lda + p];
            if (trans_b)
                for (int64_t j = 0; j < n; j++)
                    c_row[j] += a_ip * b[j * ldb + p];
            else
                for (int64_t j = 0; j < n; j++)
                    c_row[j] += a_ip * b[p * ldb + j];
        }
    }
}
#endif

void bench_sgemm(int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#if BENCH_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
#else
    sgemm_plain(trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

typedef struct sgemm_run {
    int trans_b;
    int64_t m, n, k;
    const float *a, *b;
    float *c;
} sgemm_run;

static int sgemm_run_once(void *ctx) {
    const sgemm_run *r = ctx;
    bench_sgemm(r->trans_b, r->m, r->n, r->k, 1.0f, r->a, r->k, r->b, r->trans_b ? r->k : r->n,
                0.0f, r->c, r->n);
    return 0;
}

double bench_sgemm_gflops(int trans_b, int64_t m, int64_t n, int64_t k, int threads, int repeats) {
    if (m < 1 || n < 1 || k < 1 || m > INT_MAX || n > INT_MAX || k > INT_MAX) return -1.0;
    size_t a_count, b_count, c_count;
    if (bench_mul_size((size_t)m, (size_t)k, &a_count) ||
        bench_mul_size((size_t)k, (size_t)n, &b_count) ||
        bench_mul_size((size_t)m, (size_t)n, &c_count) || a_count > SIZE_MAX / sizeof(float) ||
        b_count > SIZE_MAX / sizeof(float) || c_count > SIZE_MAX / sizeof(float))
        return -1.0;
    float *a = malloc(a_count * sizeof *a), *b = malloc(b_count * sizeof *b),
          *c = malloc(c_count * sizeof *c);
    double gflops = -1.0;
    if (a && b && c) {
        uint64_t seed = 7;
        bench_fill_normal(a, TILEATTN_F32, a_count, 1.0, &seed);
        bench_fill_normal(b, TILEATTN_F32, b_count, 1.0, &seed);
        bench_blas_set_threads(threads);
        sgemm_run run = {trans_b, m, n, k, a, b, c};
        bench_timing timing;
        if (bench_time_median(sgemm_run_once, &run, 1, repeats, &timing) == 0 &&
            timing.median_s > 0)
            gflops = 2.0 * (double)m * (double)n * (double)k / timing.median_s * 1e-9;
    }
    free(a);
    free(b);
    free(c);
    return gflops;
}
