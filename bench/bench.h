/*
 * The benchmark support library: what tileattn is measured against.
 *
 *   timing     a monotonic clock and "median of N repeats after warm-up";
 *   peaks      the FMA peak of one core and of all threads (AVX-512, AVX2 or
 *              scalar, chosen at run time) and the vdpbf16ps peak;
 *   sgemm      OpenBLAS cblas_sgemm on a square product and on attention's
 *              own GEMM shapes;
 *   standard   the standard (materialized) attention: S = scale Q K^T with
 *              sgemm, masks, a vectorized row softmax, O = P V with sgemm;
 *              the fair unfused baseline;
 *   inputs     a fixed-seed PRNG and float32 -> f16/bf16 conversion;
 *   sweep      the FlashAttention-2 paper's sweep, scaled down, with an
 *              aligned table, a CSV and an SVG plot written from C.
 *
 * Nothing here asserts on timings: this is a benchmark, not a test.
 * Functions that can fail return 0 on success and print nothing unless
 * they take a FILE * to report on.
 */
#ifndef TILEATTN_BENCH_H
#define TILEATTN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tileattn.h"

/* ------------------------------------------------------------------ timing */

/* Seconds from an arbitrary origin, monotonic. */
double bench_now_seconds(void);

/* Most repeats bench_time_median keeps. */
#define BENCH_MAX_REPEATS 1000

typedef struct bench_timing {
    double median_s;
    double min_s;
    double max_s;
    int repeats;
} bench_timing;

/* One timed run; returns 0 on success, anything else stops the timing. */
typedef int (*bench_run_fn)(void *ctx);

/* Runs fn warmup times untimed, then repeats (1..BENCH_MAX_REPEATS) times
 * timed, and fills out. Returns 0, the first nonzero value fn returned, or
 * -1 when repeats is out of range. */
int bench_time_median(bench_run_fn fn, void *ctx, int warmup, int repeats, bench_timing *out);

/* Threads "all cores" means: OpenMP's default team size (1 without OpenMP). */
int bench_max_threads(void);

/* ------------------------------------------------------------------- peaks */

/* The widest FMA instruction set the CPU and OS support: "avx512", "avx2"
 * or "scalar". */
const char *bench_fma_isa(void);

/* Measured GFLOP/s of a loop of independent FMAs (16 accumulators on
 * AVX-512, 12 on AVX2) on `threads` threads (0 = all): the best of
 * repeats, since the loop touches no memory and interference can only slow
 * it. One FMA lane counts 2 FLOP. *threads_used (optional) receives the team
 * size that ran. */
double bench_fma_peak_gflops(int threads, int repeats, int *threads_used);

/* 1 if vdpbf16ps (AVX512_BF16) is available. */
int bench_have_bf16_dot(void);

/* Measured GFLOP/s of independent vdpbf16ps (64 FLOP per zmm instruction:
 * 32 bf16 pairs, a multiply and an add each); 0 when unavailable. */
double bench_bf16_peak_gflops(int threads, int repeats, int *threads_used);

/* ------------------------------------------------------------------- sgemm */

/* "OpenBLAS 0.3.21 ..." or the fallback's name. Never NULL. */
const char *bench_blas_name(void);

/* 1 when sgemm is a real BLAS (OpenBLAS or another CBLAS). */
int bench_have_blas(void);

/* Sets how many threads the BLAS uses (OpenBLAS: openblas_set_num_threads;
 * 0 = all). A no-op for a BLAS that cannot be told. */
void bench_blas_set_threads(int threads);

/* A one-line warning when OpenBLAS runs older kernels than this CPU can
 * (e.g. its Haswell AVX2 kernels on an AVX-512 CPU, as OPENBLAS_CORETYPE=
 * Haswell forces): the baseline is then handicapped. NULL when all is well. */
const char *bench_blas_kernel_warning(void);

/* OPENBLAS_CORETYPE as this process sees it, or NULL. */
const char *bench_blas_coretype_env(void);

/* Row-major C[m x n] = alpha * A[m x k] . op(B) + beta * C, with op(B) = B
 * [k x n] or, when trans_b, B^T for B stored [n x k]. Leading dimensions in
 * elements. Sizes must fit in int (checked by callers). */
void bench_sgemm(int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Times bench_sgemm on random m x k and k x n (or n x k when trans_b)
 * matrices on `threads` threads, median of repeats after one warm-up.
 * Returns GFLOP/s (2 m n k per product), or a negative value when the
 * sizes overflow or memory runs out. */
double bench_sgemm_gflops(int trans_b, int64_t m, int64_t n, int64_t k, int threads, int repeats);

/* ------------------------------------------------- the standard attention */

/* Bytes of score matrix the standard attention holds: one Sq x Sk float32
 * matrix (the longest sequences), whatever the number of threads (they split
 * its rows). SIZE_MAX on overflow. */
size_t bench_standard_attention_score_bytes(const tileattn_forward_args *args, int threads);

/* The standard materialized attention, with exactly the semantics of
 * tileattn_forward (every field of args is honoured: dtypes, strides, GQA,
 * causal alignments, window, softcap, ALiBi, additive bias, boolean mask,
 * sinks, varlen, LSE). Per (batch, head): S = scale Q K^T (cblas_sgemm),
 * masks, row softmax, O = P V (cblas_sgemm); threads split each head's
 * query rows, sgemm runs single-threaded. f16/bf16 inputs are converted
 * to float32 first (Debian 12's OpenBLAS 0.3.21 exports no cblas_sbgemm);
 * the conversion is part of the timed work. threads: 0 = args->num_threads,
 * and if that is 0 too, all cores. */
tileattn_status bench_standard_attention(const tileattn_forward_args *args, int threads);

/* ------------------------------------------------------------------ inputs */

/* splitmix64: a tiny, fixed-seed generator (state is any value). */
uint64_t bench_rand_u64(uint64_t *state);

/* Uniform in [0, 1). */
double bench_rand_uniform(uint64_t *state);

/* Standard normal (Box-Muller). */
double bench_rand_normal(uint64_t *state);

/* float32 <-> float16 / bfloat16, round to nearest even (NaN stays NaN). */
uint16_t bench_f32_to_f16(float x);
uint16_t bench_f32_to_bf16(float x);
float bench_f16_to_f32(uint16_t h);
float bench_bf16_to_f32(uint16_t b);

/* Fills count elements of dtype (F32, F16, BF16 or F64) with N(0, 1)
 * samples times stddev. */
void bench_fill_normal(void *dst, tileattn_dtype dtype, size_t count, double stddev,
                       uint64_t *state);

/* Element i of a buffer of dtype as a double. */
double bench_load_element(const void *data, tileattn_dtype dtype, size_t i);

/* a * b into *out; 0, or -1 on overflow. */
int bench_mul_size(size_t a, size_t b, size_t *out);

/* ------------------------------------------------------------------- flags */

/* *out = text as a decimal integer in [min, max]; 0, or -1 after a one-line
 * message on stderr naming prog and flag (empty text, trailing characters
 * and out-of-range values are refused). */
int bench_parse_int(const char *prog, const char *flag, const char *text, int64_t min, int64_t max,
                    int64_t *out);

/* ------------------------------------------------------------------- sweep */

#define BENCH_SWEEP_MAX_LIST 32

/* FLOPs of one forward, FlashAttention's count: 4 B H Sq Sk D, halved when
 * causal (2 B H Sq Sk (D + Dv) when Dv differs). */
double bench_attention_flops(int64_t batch, int64_t heads, int64_t seqlen_q, int64_t seqlen_k,
                             int64_t head_dim, int64_t head_dim_v, int causal);

typedef struct bench_sweep_config {
    int64_t seqlens[BENCH_SWEEP_MAX_LIST];
    int n_seqlens;
    int64_t head_dims[BENCH_SWEEP_MAX_LIST];
    int n_head_dims;
    tileattn_dtype dtypes[BENCH_SWEEP_MAX_LIST];
    int n_dtypes;
    int threads[BENCH_SWEEP_MAX_LIST]; /* 0 = all cores */
    int n_threads;
    int causal_modes[2]; /* 0 = none, 1 = causal (bottom-right; Sq = Sk here) */
    int n_causal_modes;
    int repeats; /* timed runs per measurement, median reported */
    int warmup;
    int64_t tokens; /* B H Sq target: H = clamp(tokens / Sq, 1, max_heads) */
    int64_t max_heads;
    size_t standard_mem_cap; /* skip the standard attention above this S size */
    const char *csv_path;    /* NULL: no CSV */
    const char *svg_path;    /* NULL: no SVG */
    uint64_t seed;
    tileattn_p_precision
        p_precision; /* tileattn's P in P.V (the standard attention's is float32) */
} bench_sweep_config;

/* The defaults: seqlens 512..16384, D 64 and 128, f32 and bf16, threads 1
 * and all, causal and not, 3 repeats, 1 warm-up, tokens 16384, max_heads
 * 64, cap 4 GiB, bench-results.csv / .svg, seed 42. */
void bench_sweep_config_init(bench_sweep_config *cfg);

/* One measured point of the sweep. */
typedef struct bench_sweep_point {
    int64_t head_dim;
    int causal;
    tileattn_dtype dtype;
    int threads; /* the team size that ran */
    int64_t batch, heads, seqlen_q, seqlen_k;
    double flops;
    double tileattn_s, tileattn_gflops;
    double standard_s, standard_gflops; /* NAN when skipped */
    const char *standard_note;          /* "" or why it was skipped */
    double peak_gflops;                 /* FMA peak, every dtype */
    const char *peak_kind;              /* "fma-avx512", "fma-avx2", "fma-scalar" */
    double bf16_dot_peak_gflops;        /* vdpbf16ps peak, NAN without AVX512_BF16 */
    double sgemm_gflops;                /* sgemm 2048^3 on the same threads */
    double max_abs_diff;                /* |O_tileattn - O_standard|, NAN when skipped */
    tileattn_p_precision p_precision;   /* what tileattn was allowed for P in P.V */
} bench_sweep_point;

/* Runs the sweep, printing the table to out as points complete and
 * rewriting the CSV and the SVG after each point (so an interrupted sweep
 * keeps its results); errors go to err. Returns 0, 1 when tileattn failed on
 * a point (the message names it), or 2 on a bad configuration or an I/O
 * error (outputs are checked for writability before anything is measured). */
int bench_sweep_run(const bench_sweep_config *cfg, FILE *out, FILE *err);

/* Writers used by the sweep (exposed for the tests). Return 0 or -1 (errno
 * set by stdio). */
int bench_write_csv(const char *path, const bench_sweep_point *points, int n_points);
int bench_write_svg(const char *path, const bench_sweep_point *points, int n_points,
                    const char *title);

/* "f32", "f16", "bf16", "f64" or "?". */
const char *bench_dtype_name(tileattn_dtype dtype);

#endif /* TILEATTN_BENCH_H */
