/*
 * Checks the benchmark's baseline, not the library: the standard attention
 * against the float64 reference for every option tileattn_forward_args
 * holds, the polynomial exp and tanh of its softmax against libm, and the
 * f16/bf16 conversions against the hardware's (F16C) and known values.
 * A baseline that computes something else would make every ratio a lie.
 *
 * Tolerances: float32 output 2e-5 absolute (inputs N(0,1), |O| <= ~4, sums
 * of up to 100 keys; observed ~1e-6), float16 output 4e-3 and bfloat16 3e-2
 * (half an output ULP of |O| <= 4 plus the float32 error), LSE 1e-4.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_check.h"
#include "softmax_rows.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

typedef struct test_case {
    const char *name;
    int64_t batch, sq, sk, h, hk, d, dv;
    tileattn_dtype dtype;
    tileattn_causal causal;
    int64_t wl, wr;
    float softcap;
    int alibi; /* 0 none, 1 [H], 2 [B, H] */
    tileattn_bias_kind bias;
    tileattn_dtype bias_dtype;
    int sinks;
    int varlen;  /* lengths from the fixed table below */
    int64_t pad; /* extra elements after each token's heads: non-contiguous rows */
    int threads;
} test_case;

static const int32_t varlen_q[] = {5, 0, 17, 9};
static const int32_t varlen_k[] = {9, 3, 17, 4};

static void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void run_case(const test_case *tc) {
    uint64_t seed = 1234;
    const int64_t dv = tc->dv ? tc->dv : tc->d;
    int64_t batch = tc->batch, rows_q, rows_k;
    int32_t cu_q[5] = {0}, cu_k[5] = {0};
    if (tc->varlen) {
        batch = 4;
        for (int b = 0; b < 4; b++) {
            cu_q[b + 1] = cu_q[b] + varlen_q[b];
            cu_k[b + 1] = cu_k[b] + varlen_k[b];
        }
        rows_q = cu_q[4];
        rows_k = cu_k[4];
    } else {
        rows_q = batch * tc->sq;
        rows_k = batch * tc->sk;
    }
    const size_t elem = tileattn_dtype_size(tc->dtype);
    const int64_t q_row = tc->h * tc->d + tc->pad, k_row = tc->hk * tc->d + tc->pad,
                  v_row = tc->hk * dv + tc->pad, o_row = tc->h * dv + tc->pad;
    void *q = xcalloc((size_t)(rows_q * q_row), elem);
    void *k = xcalloc((size_t)(rows_k * k_row), elem);
    void *v = xcalloc((size_t)(rows_k * v_row), elem);
    void *o = xcalloc((size_t)(rows_q * o_row), elem);
    bench_fill_normal(q, tc->dtype, (size_t)(rows_q * q_row), 1.0, &seed);
    bench_fill_normal(k, tc->dtype, (size_t)(rows_k * k_row), 1.0, &seed);
    bench_fill_normal(v, tc->dtype, (size_t)(rows_k * v_row), 1.0, &seed);

    tileattn_forward_args a;
    tileattn_forward_args_init(&a);
    a.batch = batch;
    a.seqlen_q = tc->sq;
    a.seqlen_k = tc->sk;
    a.heads_q = tc->h;
    a.heads_kv = tc->hk;
    a.head_dim = tc->d;
    a.head_dim_v = tc->dv;
    a.dtype = tc->dtype;
    a.q = (tileattn_tensor){q, tc->sq * q_row, q_row, tc->d};
    a.k = (tileattn_tensor){k, tc->sk * k_row, k_row, tc->d};
    a.v = (tileattn_tensor){v, tc->sk * v_row, v_row, dv};
    a.o = (tileattn_tensor_out){o, tc->sq * o_row, o_row, dv};
    a.causal = tc->causal;
    a.window_left = tc->wl;
    a.window_right = tc->wr;
    a.softcap = tc->softcap;
    float *lse = xcalloc((size_t)(tc->h * rows_q), sizeof *lse);
    a.lse = lse;

    float *slopes = NULL, *sinks = NULL;
    void *bias = NULL;
    if (tc->alibi) {
        slopes = xcalloc((size_t)(batch * tc->h), sizeof *slopes);
        for (int64_t i = 0; i < batch * tc->h; i++)
            slopes[i] = 0.05f + 0.01f * (float)i;
        a.alibi_slopes = slopes;
        a.alibi_stride_b = tc->alibi == 2 ? tc->h : 0;
    }
    if (tc->sinks) {
        sinks = xcalloc((size_t)tc->h, sizeof *sinks);
        for (int64_t i = 0; i < tc->h; i++)
            sinks[i] = 0.5f * (float)i - 1.0f;
        a.sinks = sinks;
    }
    if (tc->bias != TILEATTN_BIAS_NONE) {
        const size_t count = (size_t)(batch * tc->h * tc->sq * tc->sk);
        a.bias_kind = tc->bias;
        a.bias_stride_q = tc->sk;
        a.bias_stride_h = tc->sq * tc->sk;
        a.bias_stride_b = tc->h * tc->sq * tc->sk;
        if (tc->bias == TILEATTN_BIAS_BOOL_MASK) {
            uint8_t *m = xcalloc(count, 1);
            for (size_t i = 0; i < count; i++) {
                int64_t row = (int64_t)(i / (size_t)tc->sk) % tc->sq;
                m[i] = row % 7 == 3 ? 0 : bench_rand_uniform(&seed) < 0.75;
            }
            bias = m;
        } else {
            a.bias_dtype = tc->bias_dtype;
            bias = xcalloc(count, tileattn_dtype_size(tc->bias_dtype));
            bench_fill_normal(bias, tc->bias_dtype, count, 0.5, &seed);
        }
        a.bias = bias;
    }
    if (tc->varlen) {
        a.cu_seqlens_q = cu_q;
        a.cu_seqlens_k = cu_k;
    }

    double *o_ref = xcalloc((size_t)(rows_q * tc->h * dv), sizeof *o_ref);
    double *lse_ref = xcalloc((size_t)(rows_q * tc->h), sizeof *lse_ref);
    tileattn_status ref_status = tileattn_reference_forward(&a, o_ref, lse_ref);
    tileattn_status status = bench_standard_attention(&a, tc->threads);
    CHECK(ref_status == TILEATTN_OK, "%s: reference: %s", tc->name,
          tileattn_status_string(ref_status));
    CHECK(status == TILEATTN_OK, "%s: standard attention: %s", tc->name,
          tileattn_status_string(status));
    if (ref_status == TILEATTN_OK && status == TILEATTN_OK) {
        const double tol = tc->dtype == TILEATTN_F32   ? 2e-5
                           : tc->dtype == TILEATTN_F16 ? 4e-3
                                                       : 3e-2;
        double worst = 0.0, worst_lse = 0.0;
        int lse_inf_mismatch = 0;
        for (int64_t t = 0; t < rows_q; t++)
            for (int64_t hh = 0; hh < tc->h; hh++)
                for (int64_t c = 0; c < dv; c++) {
                    double got =
                        bench_load_element(o, tc->dtype, (size_t)(t * o_row + hh * dv + c));
                    double want = o_ref[(t * tc->h + hh) * dv + c];
                    double err = fabs(got - want);
                    if (!(err <= worst)) worst = err;
                }
        for (int64_t i = 0; i < rows_q * tc->h; i++) {
            if (isinf(lse_ref[i]) || isinf(lse[i])) {
                lse_inf_mismatch += !(isinf(lse_ref[i]) && isinf(lse[i]));
                continue;
            }
            double err = fabs(lse[i] - lse_ref[i]);
            if (!(err <= worst_lse)) worst_lse = err;
        }
        CHECK(worst <= tol, "%s: max |O - O_ref| = %.3g > %.3g", tc->name, worst, tol);
        CHECK(worst_lse <= 1e-4 && !lse_inf_mismatch,
              "%s: max |LSE - LSE_ref| = %.3g (%d -inf mismatches)", tc->name, worst_lse,
              lse_inf_mismatch);
        printf("%-34s max|dO| %.2e  max|dLSE| %.2e\n", tc->name, worst, worst_lse);
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    free(slopes);
    free(sinks);
    free(bias);
    free(o_ref);
    free(lse_ref);
}

static void test_exp_tanh(void) {
    double worst_exp = 0.0, worst_tanh = 0.0;
    for (float x = -87.0f; x <= 88.0f; x += 0.001237f) {
        double want = exp((double)x);
        double rel = fabs((double)bench_exp_approx(x) - want) / want;
        if (rel > worst_exp) worst_exp = rel;
    }
    for (float x = -20.0f; x <= 20.0f; x += 0.000731f) {
        double want = tanh((double)x);
        double err = fabs((double)bench_tanh_approx(x) - want) / fmax(fabs(want), 1e-30);
        if (err > worst_tanh) worst_tanh = err;
    }
    CHECK(bench_exp_approx(-INFINITY) == 0.0f, "exp(-inf) = %g",
          (double)bench_exp_approx(-INFINITY));
    CHECK(bench_exp_approx(-100.0f) == 0.0f, "exp(-100) not flushed");
    /* 4 ULP of float (2^-24 relative per ULP at worst). */
    CHECK(worst_exp < 4 * 0x1.0p-23, "exp relative error %.3g", worst_exp);
    CHECK(worst_tanh < 4 * 0x1.0p-23, "tanh relative error %.3g", worst_tanh);
    printf("exp max rel err %.2e (%.2f ulp), tanh %.2e\n", worst_exp, worst_exp / 0x1.0p-24,
           worst_tanh);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float x) {
    return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _cvtsh_ss(h);
}
#endif

static void test_conversions(void) {
    /* bfloat16: ties to even, NaN quiet, overflow to infinity. */
    static const struct {
        uint32_t in;
        uint16_t out;
    } bf16_cases[] = {{0x3F800000u, 0x3F80}, {0x3F808000u, 0x3F80}, {0x3F818000u, 0x3F82},
                      {0x3F808001u, 0x3F81}, {0x7F7FFFFFu, 0x7F80}, {0xFF800000u, 0xFF80},
                      {0x00000001u, 0x0000}, {0x80000000u, 0x8000}};
    for (size_t i = 0; i < sizeof bf16_cases / sizeof bf16_cases[0]; i++) {
        float x;
        memcpy(&x, &bf16_cases[i].in, sizeof x);
        CHECK(bench_f32_to_bf16(x) == bf16_cases[i].out, "bf16(0x%08x) = 0x%04x, want 0x%04x",
              (unsigned)bf16_cases[i].in, bench_f32_to_bf16(x), bf16_cases[i].out);
    }
    CHECK(isnan(bench_bf16_to_f32(bench_f32_to_bf16(NAN))), "bf16 NaN lost");
#if defined(__x86_64__) && defined(__GNUC__)
    if (!__builtin_cpu_supports("f16c")) {
        printf("f16 conversions: no F16C to compare with, skipped\n");
        return;
    }
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float got = bench_f16_to_f32((uint16_t)h), want = hw_f16_to_f32((uint16_t)h);
        if (memcmp(&got, &want, sizeof got) != 0 && !(isnan(got) && isnan(want))) bad++;
    }
    CHECK(bad == 0, "f16 -> f32 differs from F16C on %d values", bad);
    bad = 0;
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 7919) { /* every 7919th float */
        uint32_t bits = (uint32_t)u;
        float x;
        memcpy(&x, &bits, sizeof x);
        uint16_t got = bench_f32_to_f16(x), want = hw_f32_to_f16(x);
        if (got != want && !(isnan(x) && (got & 0x7C00u) == 0x7C00u && (got & 0x3FFu))) bad++;
    }
    CHECK(bad == 0, "f32 -> f16 differs from F16C on %d values", bad);
    printf("f16 conversions match F16C\n");
#endif
}

int main(void) {
    const int64_t U = -1;
    /* name, B, Sq, Sk, H, Hk, D, Dv, dtype, causal, window L, R, softcap, alibi, bias kind,
     * bias dtype, sinks, varlen, pad, threads */
    /* clang-format off */
    const test_case cases[] = {
        {"plain f32", 2, 37, 53, 4, 4, 24, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"GQA Dv!=D padded rows", 2, 37, 53, 4, 2, 24, 16, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, 0, 0, 0, 0, 3, 1},
        {"causal bottom-right Sq<Sk", 1, 20, 50, 2, 1, 32, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"causal bottom-right Sq>Sk", 1, 50, 20, 2, 2, 32, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"causal top-left", 1, 50, 20, 2, 2, 32, 0, TILEATTN_F32, TILEATTN_CAUSAL_TOP_LEFT, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"window 5,3", 2, 40, 40, 3, 3, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, 5, 3, 0, 0, 0, 0, 0, 0, 0, 1},
        {"window sides INT64_MAX, Sq>Sk", 1, 50, 20, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, INT64_MAX, INT64_MAX, 0, 0, 0, 0, 0, 0, 0, 1},
        {"causal + window left 4", 2, 40, 40, 3, 3, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, 4, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"softcap 2.5", 1, 30, 70, 2, 2, 64, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 2.5f, 0, 0, 0, 0, 0, 0, 1},
        {"alibi [H] causal", 2, 30, 45, 4, 4, 8, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 1, 0, 0, 0, 0, 0, 1},
        {"alibi [B,H] top-left", 2, 30, 45, 4, 4, 8, 0, TILEATTN_F32, TILEATTN_CAUSAL_TOP_LEFT, U, U, 0, 2, 0, 0, 0, 0, 0, 1},
        {"bias f32", 2, 25, 33, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, TILEATTN_BIAS_ADDITIVE, TILEATTN_F32, 0, 0, 0, 1},
        {"bias bf16 + softcap + alibi", 2, 25, 33, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 3.0f, 1, TILEATTN_BIAS_ADDITIVE, TILEATTN_BF16, 0, 0, 0, 1},
        {"bias f16", 2, 25, 33, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, TILEATTN_BIAS_ADDITIVE, TILEATTN_F16, 0, 0, 0, 1},
        {"bool mask with dead rows", 2, 25, 33, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, TILEATTN_BIAS_BOOL_MASK, TILEATTN_F32, 0, 0, 0, 1},
        {"bool mask dead rows + sinks", 2, 25, 33, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, U, U, 0, 0, TILEATTN_BIAS_BOOL_MASK, TILEATTN_F32, 1, 0, 0, 1},
        {"sinks causal Sq>Sk", 1, 40, 10, 3, 3, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 1, 0, 0, 1},
        {"varlen causal", 0, 17, 17, 2, 1, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 1, 0, 0, 1, 1, 0, 1},
        {"varlen window padded", 0, 17, 17, 2, 2, 16, 0, TILEATTN_F32, TILEATTN_CAUSAL_NONE, 3, 2, 0, 0, 0, 0, 0, 1, 5, 2},
        {"f16", 2, 37, 53, 4, 2, 32, 0, TILEATTN_F16, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"bf16", 2, 37, 53, 4, 2, 32, 0, TILEATTN_BF16, TILEATTN_CAUSAL_NONE, U, U, 0, 0, 0, 0, 0, 0, 0, 1},
        {"f32 2 threads B=2 H=4", 2, 64, 64, 4, 4, 32, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 0, 0, 0, 2},
        {"f32 2 threads odd rows", 1, 97, 80, 1, 1, 32, 0, TILEATTN_F32, TILEATTN_CAUSAL_BOTTOM_RIGHT, U, U, 0, 0, 0, 0, 0, 0, 0, 2},
        {"bf16 3 threads padded sinks", 1, 64, 64, 3, 1, 32, 0, TILEATTN_BF16, TILEATTN_CAUSAL_TOP_LEFT, U, U, 0, 0, 0, 0, 1, 0, 2, 3},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    test_exp_tanh();
    test_conversions();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all standard-attention checks passed\n");
    return 0;
}
