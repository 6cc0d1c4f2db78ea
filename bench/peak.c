/*
 * The FMA peak: independent fused multiply-adds in registers, nothing from
 * memory. Enough accumulators to cover latency x throughput (4-cycle FMA
 * latency x 2 FMA pipes = 8 in flight on current x86 cores; 16 zmm and 12 ymm
 * leave headroom and still fit the register file with the two operands).
 *
 * Each ISA's loop is its own function compiled with target("..."), picked at
 * run time with __builtin_cpu_supports, so a default build runs on any
 * x86-64 and still measures the widest unit.
 */
#include <stdint.h>

#include "bench.h"
#include "tileattn_config.h"

#if TILEATTN_HAVE_OPENMP && defined(_OPENMP)
#include <omp.h>
#define BENCH_HAVE_OMP 1
#else
#define BENCH_HAVE_OMP 0
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

/* Read through volatile so the compiler cannot fold the loops away. The
 * chain acc = acc * mul + add converges to add / (1 - mul) = 1: no overflow
 * and no denormals however long it runs. */
static volatile float peak_mul = 0.999f;
static volatile float peak_add = 0.001f;
static volatile float peak_sink;

/* One run of iters iterations; returns FLOPs per iteration via the table. */
typedef void (*peak_kernel_fn)(int64_t iters);

typedef struct peak_kernel {
    const char *name;
    peak_kernel_fn run;
    double flops_per_iter;
} peak_kernel;

#if BENCH_X86
__attribute__((target("avx512f"))) static void fma_loop_avx512(int64_t iters) {
    const __m512 mul = _mm512_set1_ps(peak_mul), add = _mm512_set1_ps(peak_add);
    __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(0.1f), a2 = _mm512_set1_ps(0.2f),
           a3 = _mm512_set1_ps(0.3f), a4 = _mm512_set1_ps(0.4f), a5 = _mm512_set1_ps(0.5f),
           a6 = _mm512_set1_ps(0.6f), a7 = _mm512_set1_ps(0.7f), a8 = _mm512_set1_ps(0.8f),
           a9 = _mm512_set1_ps(0.9f), a10 = _mm512_set1_ps(1.0f), a11 = _mm512_set1_ps(1.1f),
           a12 = _mm512_set1_ps(1.2f), a13 = _mm512_set1_ps(1.3f), a14 = _mm512_set1_ps(1.4f),
           a15 = _mm512_set1_ps(1.5f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, mul, add);
        a1 = _mm512_fmadd_ps(a1, mul, add);
        a2 = _mm512_fmadd_ps(a2, mul, add);
        a3 = _mm512_fmadd_ps(a3, mul, add);
        a4 = _mm512_fmadd_ps(a4, mul, add);
        a5 = _mm512_fmadd_ps(a5, mul, add);
        a6 = _mm512_fmadd_ps(a6, mul, add);
        a7 = _mm512_fmadd_ps(a7, mul, add);
        a8 = _mm512_fmadd_ps(a8, mul, add);
        a9 = _mm512_fmadd_ps(a9, mul, add);
        a10 = _mm512_fmadd_ps(a10, mul, add);
        a11 = _mm512_fmadd_ps(a11, mul, add);
        a12 = _mm512_fmadd_ps(a12, mul, add);
        a13 = _mm512_fmadd_ps(a13, mul, add);
        a14 = _mm512_fmadd_ps(a14, mul, add);
        a15 = _mm512_fmadd_ps(a15, mul, add);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(
        s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                         _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    peak_sink = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static void fma_loop_avx2(int64_t iters) {
    const __m256 mul = _mm256_set1_ps(peak_mul), add = _mm256_set1_ps(peak_add);
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f),
           a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f),
           a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f),
           a9 = _mm256_set1_ps(0.9f), a10 = _mm256_set1_ps(1.0f), a11 = _mm256_set1_ps(1.1f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, mul, add);
        a1 = _mm256_fmadd_ps(a1, mul, add);
        a2 = _mm256_fmadd_ps(a2, mul, add);
        a3 = _mm256_fmadd_ps(a3, mul, add);
        a4 = _mm256_fmadd_ps(a4, mul, add);
        a5 = _mm256_fmadd_ps(a5, mul, add);
        a6 = _mm256_fmadd_ps(a6, mul, add);
        a7 = _mm256_fmadd_ps(a7, mul, add);
        a8 = _mm256_fmadd_ps(a8, mul, add);
        a9 = _mm256_fmadd_ps(a9, mul, add);
        a10 = _mm256_fmadd_ps(a10, mul, add);
        a11 = _mm256_fmadd_ps(a11, mul, add);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    peak_sink =
        lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

/* vdpbf16ps: each of the 16 float lanes adds two bf16 products, 4 FLOP per
 * lane, 64 per instruction. Operands 2^-10: the accumulators grow by 2^-19
 * per step, so they stay normal and finite for any practical run. Each
 * accumulator starts from its own value: equal ones run the same
 * computation, and GCC merges the 16 chains into one (one instruction per
 * iteration for 16 counted). */
__attribute__((target("avx512bf16,avx512f"))) static void bf16_dot_loop(int64_t iters) {
    const __m512bh x = (__m512bh)_mm512_set1_epi16((short)0x3A80); /* bf16 2^-10 */
    const float a = peak_add;
    __m512 a0 = _mm512_set1_ps(a), a1 = _mm512_set1_ps(2 * a), a2 = _mm512_set1_ps(3 * a),
           a3 = _mm512_set1_ps(4 * a), a4 = _mm512_set1_ps(5 * a), a5 = _mm512_set1_ps(6 * a),
           a6 = _mm512_set1_ps(7 * a), a7 = _mm512_set1_ps(8 * a), a8 = _mm512_set1_ps(9 * a),
           a9 = _mm512_set1_ps(10 * a), a10 = _mm512_set1_ps(11 * a), a11 = _mm512_set1_ps(12 * a),
           a12 = _mm512_set1_ps(13 * a), a13 = _mm512_set1_ps(14 * a), a14 = _mm512_set1_ps(15 * a),
           a15 = _mm512_set1_ps(16 * a);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm512_dpbf16_ps(a0, x, x);
        a1 = _mm512_dpbf16_ps(a1, x, x);
        a2 = _mm512_dpbf16_ps(a2, x, x);
        a3 = _mm512_dpbf16_ps(a3, x, x);
        a4 = _mm512_dpbf16_ps(a4, x, x);
        a5 = _mm512_dpbf16_ps(a5, x, x);
        a6 = _mm512_dpbf16_ps(a6, x, x);
        a7 = _mm512_dpbf16_ps(a7, x, x);
        a8 = _mm512_dpbf16_ps(a8, x, x);
        a9 = _mm512_dpbf16_ps(a9, x, x);
        a10 = _mm512_dpbf16_ps(a10, x, x);
        a11 = _mm512_dpbf16_ps(a11, x, x);
        a12 = _mm512_dpbf16_ps(a12, x, x);
        a13 = _mm512_dpbf16_ps(a13, x, x);
        a14 = _mm512_dpbf16_ps(a14, x, x);
        a15 = _mm512_dpbf16_ps(a15, x, x);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(
        s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                         _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    peak_sink = _mm512_reduce_add_ps(s);
}
#endif

/* Portable: 16 independent multiply-adds (the compiler may pack them into
 * whatever vectors the baseline ISA has; a multiply and an add count 2). */
static void fma_loop_scalar(int64_t iters) {
    const float mul = peak_mul, add = peak_add;
    float acc[16];
    for (int j = 0; j < 16; j++)
        acc[j] = 0.1f * (float)j;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 16; j++)
            acc[j] = acc[j] * mul + add;
    float s = 0.0f;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    peak_sink = s;
}

static peak_kernel best_fma_kernel(void) {
#if BENCH_X86
    if (__builtin_cpu_supports("avx512f"))
        return (peak_kernel){"avx512", fma_loop_avx512, 16.0 * 16.0 * 2.0};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (peak_kernel){"avx2", fma_loop_avx2, 12.0 * 8.0 * 2.0};
#endif
    return (peak_kernel){"scalar", fma_loop_scalar, 16.0 * 2.0};
}

const char *bench_fma_isa(void) {
    return best_fma_kernel().name;
}

int bench_have_bf16_dot(void) {
#if BENCH_X86
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

typedef struct peak_run {
    peak_kernel kernel;
    int64_t iters;
    int threads;
    int threads_used;
} peak_run;

/* One timed run: every thread runs the same loop between two barriers, so
 * the time is that of the slowest thread. */
static int peak_run_once(void *ctx) {
    peak_run *run = ctx;
#if BENCH_HAVE_OMP
    int used = 1;
#pragma omp parallel num_threads(run->threads)
    {
#pragma omp barrier
        run->kernel.run(run->iters);
#pragma omp barrier
#pragma omp master
        used = omp_get_num_threads();
    }
    run->threads_used = used;
#else
    run->kernel.run(run->iters);
    run->threads_used = 1;
#endif
    return 0;
}

/* Grows the loop until one single-threaded run takes 20 ms, long enough to
 * dwarf timer and barrier costs, short enough for a quick bench. */
static int64_t calibrate_iters(peak_kernel kernel) {
    int64_t iters = 1 << 14;
    for (;;) {
        double t0 = bench_now_seconds();
        kernel.run(iters);
        double dt = bench_now_seconds() - t0;
        if (dt >= 0.02 || iters >= ((int64_t)1 << 40)) return iters;
        iters = dt < 0.002 ? iters * 8 : (int64_t)((double)iters * 0.025 / dt) + 1;
    }
}

static double measure_peak(peak_kernel kernel, int threads, int repeats, int *threads_used) {
    if (repeats < 1) repeats = 1;
    if (repeats > BENCH_MAX_REPEATS) repeats = BENCH_MAX_REPEATS;
    peak_run run = {kernel, calibrate_iters(kernel), threads > 0 ? threads : bench_max_threads(),
                    1};
    bench_timing timing;
    if (bench_time_median(peak_run_once, &run, 1, repeats, &timing) != 0 || timing.min_s <= 0)
        return 0.0;
    if (threads_used) *threads_used = run.threads_used;
    /* The best run, not the median: the loop touches no memory, so anything
     * else on the machine can only slow it down. */
    return (double)run.threads_used * (double)run.iters * kernel.flops_per_iter / timing.min_s *
           1e-9;
}

double bench_fma_peak_gflops(int threads, int repeats, int *threads_used) {
    return measure_peak(best_fma_kernel(), threads, repeats, threads_used);
}

double bench_bf16_peak_gflops(int threads, int repeats, int *threads_used) {
#if BENCH_X86
    if (bench_have_bf16_dot())
        return measure_peak((peak_kernel){"avx512bf16", bf16_dot_loop, 16.0 * 64.0}, threads,
                            repeats, threads_used);
#endif
    (void)threads, (void)repeats; /* no bfloat16 peak loop for this ISA */
    if (threads_used) *threads_used = 0;
    return 0.0;
}
