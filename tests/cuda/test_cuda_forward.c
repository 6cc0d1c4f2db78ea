/*
 * The CUDA forward against the float64 reference, on a grid of shapes,
 * head dimensions, head groupings, masks and options (a subset of the CPU
 * suite's grid). Plain C without Criterion; exits 77 (meson: skipped) when
 * no CUDA device of compute capability 8.0+ is present.
 *
 * Tolerance. Inputs are rounded to the dtype before both runs, so only the
 * kernel's own rounding counts. The GPU kernel, like FlashAttention, rounds
 * the probabilities P to the input dtype before the P V product (relative
 * error u each, u = 2^-11 for float16, 2^-8 for bfloat16), and rounds O to
 * the dtype at the end; scores and sums are float32 (errors ~1e-6). So
 *     |O - O_ref|     <= 2 u max|V| + u |O_ref| + 1e-5
 *     |LSE - LSE_ref| <= 1e-4 (1 + |LSE_ref|)      (float32 throughout)
 * and -inf LSE (rows that see no key) must match exactly. O and LSE are
 * poisoned with NaN before the run, so an element never written fails.
 */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tileattn.h"
#include "plan_cuda.h" /* TA_CUDA_FWD_CONFIGS: every instantiated kernel */
#include "tileattn_cuda.h"

enum { MAX_SEQS = 4 };

typedef struct cuda_case {
    int64_t batch, sq, sk, h, hk, d;
    tileattn_dtype dtype;
    tileattn_causal causal;
    int64_t wl, wr;
    float softcap;
    int alibi, sinks;
    int head_major; /* Q, K, V as [B, H, S, D] views instead of [B, S, H, D] */
    int nseq;       /* > 0: varlen with these lengths */
    int32_t lens_q[MAX_SEQS], lens_k[MAX_SEQS];
} cuda_case;

/* SplitMix64 and Box-Muller: the same inputs on every machine. */
static uint64_t rng_state;
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(void) {
    return (double)(rng_u64() >> 11) * 0x1.0p-53;
}
static double rng_normal(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    return sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(6.283185307179586 * u2);
}

/* float -> float16 / bfloat16 bits, round to nearest even (finite inputs). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float from_f16(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? NAN : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}
static uint16_t to_f16(float f) { /* |f| < 65504, through the exact spacing of the target */
    double a = fabs((double)f);
    uint16_t sign = f < 0 ? 0x8000 : 0;
    if (a < 0x1.0p-14) return (uint16_t)(sign | (uint16_t)nearbyint(a * 0x1.0p24));
    int e;
    frexp(a, &e); /* a = x * 2^e, x in [0.5, 1) */
    double spacing = ldexp(1.0, e - 11);
    double r = nearbyint(a / spacing) * spacing;
    frexp(r, &e);
    int mant = (int)(ldexp(r, 11 - e)) - 1024;
    if (mant == 1024) mant = 0, e++;
    return (uint16_t)(sign | (uint16_t)((e + 14) << 10) | (uint16_t)mant);
}
static float load16(const uint16_t *p, tileattn_dtype dt, int64_t i) {
    return dt == TILEATTN_BF16 ? from_bf16(p[i]) : from_f16(p[i]);
}
static uint16_t round16(tileattn_dtype dt, double v) {
    return dt == TILEATTN_BF16 ? to_bf16((float)v) : to_f16((float)v);
}

static const char *dtype_name(tileattn_dtype dt) {
    return dt == TILEATTN_BF16 ? "bf16" : "f16";
}

/* Runs one case; returns 1 if it passed. */
static int run_case(const cuda_case *c, double *worst_ratio) {
    int varlen = c->nseq > 0;
    int64_t batch = varlen ? c->nseq : c->batch;
    int32_t cu_q[MAX_SEQS + 1] = {0}, cu_k[MAX_SEQS + 1] = {0};
    for (int s = 0; s < c->nseq; s++) {
        cu_q[s + 1] = cu_q[s] + c->lens_q[s];
        cu_k[s + 1] = cu_k[s] + c->lens_k[s];
    }
    int64_t rows_q = varlen ? cu_q[c->nseq] : batch * c->sq; /* tokens over all batches */
    int64_t rows_k = varlen ? cu_k[c->nseq] : batch * c->sk;
    int64_t sq = varlen ? rows_q : c->sq, sk = varlen ? rows_k : c->sk; /* per batch entry */
    int64_t d = c->d, nq = rows_q * c->h * d, nk = rows_k * c->hk * d;

    uint16_t *q = malloc((size_t)(nq ? nq : 1) * 2), *k = malloc((size_t)(nk ? nk : 1) * 2);
    uint16_t *v = malloc((size_t)(nk ? nk : 1) * 2), *o = malloc((size_t)(nq ? nq : 1) * 2);
    float *lse = malloc((size_t)(rows_q * c->h + 1) * 4);
    double *o_ref = malloc((size_t)(nq + 1) * 8),
           *lse_ref = malloc((size_t)(rows_q * c->h + 1) * 8);
    float slopes[64], sinks[64];
    double max_v = 0;
    for (int64_t i = 0; i < nq; i++)
        q[i] = round16(c->dtype, rng_normal());
    for (int64_t i = 0; i < nk; i++) {
        k[i] = round16(c->dtype, rng_normal());
        v[i] = round16(c->dtype, rng_normal());
        double a = fabs(load16(v, c->dtype, i));
        if (a > max_v) max_v = a;
    }
    for (int64_t h = 0; h < c->h; h++) {
        slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)c->h); /* ALiBi's geometric slopes */
        sinks[h] = (float)rng_normal() + 1.0f;
    }
    memset(o, 0xff, (size_t)nq * 2); /* NaN in both 16-bit formats */
    for (int64_t i = 0; i < rows_q * c->h; i++)
        lse[i] = NAN;

    tileattn_forward_args a;
    tileattn_forward_args_init(&a);
    a.batch = batch;
    a.seqlen_q = sq;
    a.seqlen_k = sk;
    a.heads_q = c->h;
    a.heads_kv = c->hk;
    a.head_dim = d;
    a.dtype = c->dtype;
    if (c->head_major && !varlen) { /* buffers laid out [B, H, S, D] */
        a.q = (tileattn_tensor){q, c->h * sq * d, d, sq * d};
        a.k = (tileattn_tensor){k, c->hk * sk * d, d, sk * d};
        a.v = (tileattn_tensor){v, c->hk * sk * d, d, sk * d};
    } else {
        a.q = tileattn_tensor_contiguous(q, sq, c->h, d);
        a.k = tileattn_tensor_contiguous(k, sk, c->hk, d);
        a.v = tileattn_tensor_contiguous(v, sk, c->hk, d);
    }
    a.o = tileattn_tensor_out_contiguous(o, sq, c->h, d);
    a.lse = lse;
    a.causal = c->causal;
    a.window_left = c->wl;
    a.window_right = c->wr;
    a.softcap = c->softcap;
    a.alibi_slopes = c->alibi ? slopes : NULL;
    a.sinks = c->sinks ? sinks : NULL;
    if (varlen) {
        a.cu_seqlens_q = cu_q;
        a.cu_seqlens_k = cu_k;
    }

    char label[256];
    snprintf(label, sizeof label,
             "%s B=%lld Sq=%lld Sk=%lld H=%lld Hk=%lld D=%lld causal=%d win=(%lld,%lld) "
             "softcap=%g alibi=%d sinks=%d %s%s",
             dtype_name(c->dtype), (long long)batch, (long long)c->sq, (long long)c->sk,
             (long long)c->h, (long long)c->hk, (long long)d, (int)c->causal, (long long)c->wl,
             (long long)c->wr, (double)c->softcap, c->alibi, c->sinks,
             c->head_major ? "head-major " : "", varlen ? "varlen" : "");

    int ok = 1;
    tileattn_status st = tileattn_cuda_forward_host(&a);
    if (st != TILEATTN_OK) {
        printf("FAIL %s: %s (%s)\n", label, tileattn_status_string(st),
               tileattn_cuda_last_error_string());
        ok = 0;
        goto done;
    }
    st = tileattn_reference_forward(&a, o_ref, lse_ref);
    if (st != TILEATTN_OK) {
        printf("FAIL %s: reference: %s\n", label, tileattn_status_string(st));
        ok = 0;
        goto done;
    }
    double u = c->dtype == TILEATTN_BF16 ? 0x1.0p-8 : 0x1.0p-11;
    double worst = 0, worst_lse = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < nq; i++) {
        double got = load16(o, c->dtype, i), want = o_ref[i];
        double tol = 2 * u * max_v + u * fabs(want) + 1e-5;
        double err = fabs(got - want);
        if (!(err <= tol)) bad++;
        if (err / tol > worst || isnan(err)) worst = isnan(err) ? INFINITY : err / tol;
    }
    for (int64_t i = 0; i < rows_q * c->h; i++) {
        double got = lse[i], want = lse_ref[i];
        double err;
        if (isinf(want) || isinf(got))
            err = got == want ? 0 : INFINITY;
        else
            err = fabs(got - want) / (1e-4 * (1 + fabs(want)));
        if (!(err <= 1.0)) bad++;
        if (err > worst_lse || isnan(err)) worst_lse = isnan(err) ? INFINITY : err;
    }
    ok = bad == 0;
    printf("%s %s: O err/tol %.3f, LSE err/tol %.3f%s\n", ok ? "ok  " : "FAIL", label, worst,
           worst_lse, ok ? "" : " <--");
    if (worst > *worst_ratio) *worst_ratio = worst;
    if (worst_lse > *worst_ratio) *worst_ratio = worst_lse;
done:
    free(q), free(k), free(v), free(o), free(lse), free(o_ref), free(lse_ref);
    return ok;
}

/* Whether the kernel TILEATTN_CUDA_TILES forces runs on this GPU: wgmma
 * kernels need compute capability 9.0, and the planner says so. */
static int config_runs_here(int head_dim) {
    static uint16_t buf[256];
    tileattn_forward_args a;
    tileattn_forward_args_init(&a);
    a.batch = a.seqlen_q = a.seqlen_k = a.heads_q = a.heads_kv = 1;
    a.head_dim = head_dim;
    a.dtype = TILEATTN_F16;
    a.q = a.k = a.v = tileattn_tensor_contiguous(buf, 1, 1, head_dim);
    a.o = tileattn_tensor_out_contiguous(buf + 128, 1, 1, head_dim);
    char plan[512];
    return tileattn_cuda_describe_plan(&a, plan, sizeof plan) != TILEATTN_ERR_UNSUPPORTED;
}

/* Arguments the GPU refuses must come back as statuses, with a reason. */
static int check_refusals(void) {
    static uint16_t buf[8 * 64];
    static float fbuf[8 * 64];
    int ok = 1;
    tileattn_forward_args a;
    tileattn_forward_args_init(&a);
    a.batch = a.seqlen_q = a.seqlen_k = a.heads_q = a.heads_kv = 1;
    a.head_dim = 64;
    a.dtype = TILEATTN_F16;
    a.q = a.k = a.v = tileattn_tensor_contiguous(buf, 1, 1, 64);
    a.o = tileattn_tensor_out_contiguous(buf + 256, 1, 1, 64);

    struct {
        const char *what;
        tileattn_forward_args args;
        tileattn_status want;
    } cases[4];
    cases[0].what = "float32 inputs", cases[0].args = a, cases[0].want = TILEATTN_ERR_BAD_DTYPE;
    cases[0].args.dtype = TILEATTN_F32;
    cases[0].args.q = cases[0].args.k = cases[0].args.v =
        tileattn_tensor_contiguous(fbuf, 1, 1, 64);
    cases[0].args.o = tileattn_tensor_out_contiguous(fbuf + 256, 1, 1, 64);
    cases[1].what = "Dv != D", cases[1].args = a, cases[1].want = TILEATTN_ERR_UNSUPPORTED;
    cases[1].args.head_dim_v = 32;
    cases[2].what = "an additive bias", cases[2].args = a, cases[2].want = TILEATTN_ERR_UNSUPPORTED;
    cases[2].args.bias_kind = TILEATTN_BIAS_ADDITIVE;
    cases[2].args.bias = fbuf;
    cases[3].what = "D = 36", cases[3].args = a, cases[3].want = TILEATTN_ERR_UNSUPPORTED;
    cases[3].args.head_dim = 36;
    for (int i = 0; i < 4; i++) {
        tileattn_status st = tileattn_cuda_forward_host(&cases[i].args);
        int pass = st == cases[i].want && tileattn_cuda_last_error_string()[0] != '\0';
        printf("%s refuses %s: %s (%s)\n", pass ? "ok  " : "FAIL", cases[i].what,
               tileattn_status_string(st), tileattn_cuda_last_error_string());
        ok &= pass;
    }
    return ok;
}

/* tileattn_cuda_describe_plan names the TILEATTN_CUDA_TILES value of the
 * kernel it picked; forcing that value must give the same plan. */
static int check_describe_forces(void) {
    static uint16_t buf[4 * 64];
    static const int64_t problems[][3] = {{512, 64, 1}, {4096, 128, 0}, {300, 256, 1}};
    int ok = 1;
    for (int p = 0; p < 3; p++) {
        tileattn_forward_args a;
        tileattn_forward_args_init(&a);
        a.batch = 1, a.seqlen_q = a.seqlen_k = problems[p][0], a.heads_q = a.heads_kv = 16;
        a.head_dim = problems[p][1];
        a.causal = problems[p][2] ? TILEATTN_CAUSAL_BOTTOM_RIGHT : TILEATTN_CAUSAL_NONE;
        a.dtype = TILEATTN_BF16;
        a.q = a.k = a.v = tileattn_tensor_contiguous(buf, a.seqlen_q, 16, a.head_dim);
        a.o = tileattn_tensor_out_contiguous(buf, a.seqlen_q, 16, a.head_dim);
        char first[512], forced[512], value[64];
        const char *at = NULL;
        if (tileattn_cuda_describe_plan(&a, first, sizeof first) == TILEATTN_OK)
            at = strstr(first, "TILEATTN_CUDA_TILES=");
        if (!at || sscanf(at, "TILEATTN_CUDA_TILES=%63s", value) != 1) {
            printf("FAIL describe names no TILEATTN_CUDA_TILES value: %s\n", first);
            ok = 0;
            continue;
        }
        setenv("TILEATTN_CUDA_TILES", value, 1);
        tileattn_status st = tileattn_cuda_describe_plan(&a, forced, sizeof forced);
        unsetenv("TILEATTN_CUDA_TILES");
        if (st != TILEATTN_OK || strcmp(first, forced) != 0) {
            printf("FAIL TILEATTN_CUDA_TILES=%s changes the plan:\n  %s  %s\n", value, first,
                   forced);
            ok = 0;
        }
    }
    return ok;
}

int main(void) {
    if (!tileattn_cuda_available()) {
        printf("no CUDA device of compute capability 8.0+: skipped (%s)\n",
               tileattn_cuda_last_error_string());
        return 77;
    }
    rng_state = 20240607;
    static const int64_t shapes[][2] = {{113, 203}, {1, 239}, {239, 1}, {1023, 1024}};
    static const int64_t dims[] = {32, 64, 96, 128, 256};
    static const int64_t heads[][2] = {{4, 4}, {4, 2}, {4, 1}}; /* MHA, GQA, MQA */
    static const struct {
        tileattn_causal causal;
        int64_t wl, wr;
    } masks[] = {
        {TILEATTN_CAUSAL_NONE, -1, -1},         {TILEATTN_CAUSAL_BOTTOM_RIGHT, -1, -1},
        {TILEATTN_CAUSAL_TOP_LEFT, -1, -1},     {TILEATTN_CAUSAL_NONE, 37, 11},
        {TILEATTN_CAUSAL_BOTTOM_RIGHT, 70, -1}, {TILEATTN_CAUSAL_NONE, 100, -1},
    };
    enum { NUM_MASKS = sizeof masks / sizeof masks[0] };
    int passed = 0, total = 0;
    double worst = 0;
    cuda_case c;

    /* The grid: every shape x head dim x dtype, rotating heads, masks and options. */
    int idx = 0;
    for (int s = 0; s < 4; s++)
        for (int di = 0; di < 5; di++)
            for (int dt = 0; dt < 2; dt++, idx++) {
                memset(&c, 0, sizeof c);
                c.batch = shapes[s][0] > 1000 ? 1 : 2;
                c.sq = shapes[s][0], c.sk = shapes[s][1];
                c.h = heads[idx % 3][0], c.hk = heads[idx % 3][1];
                c.d = dims[di];
                c.dtype = dt ? TILEATTN_BF16 : TILEATTN_F16;
                c.causal = masks[idx % NUM_MASKS].causal;
                c.wl = masks[idx % NUM_MASKS].wl, c.wr = masks[idx % NUM_MASKS].wr;
                c.softcap = idx % 4 == 1 ? 15.0f : 0.0f;
                c.alibi = idx % 5 == 2;
                c.sinks = idx % 3 == 1;
                c.head_major = idx % 7 == 3;
                passed += run_case(&c, &worst), total++;
            }
    /* Every mask on one shape, both dtypes, with and without every option. */
    for (int m = 0; m < NUM_MASKS; m++)
        for (int dt = 0; dt < 2; dt++) {
            memset(&c, 0, sizeof c);
            c.batch = 2, c.sq = 113, c.sk = 203, c.h = 4, c.hk = 2, c.d = 64;
            c.dtype = dt ? TILEATTN_BF16 : TILEATTN_F16;
            c.causal = masks[m].causal, c.wl = masks[m].wl, c.wr = masks[m].wr;
            passed += run_case(&c, &worst), total++;
            c.softcap = 10.0f, c.alibi = 1, c.sinks = 1, c.sq = 203, c.sk = 113;
            passed += run_case(&c, &worst), total++;
        }
    /* Varlen: empty sequences, a query longer than its keys, both alignments. */
    static const int32_t lens_q[3][MAX_SEQS] = {{5, 0, 130, 64}, {77, 1, 300, 9}, {1, 1, 1, 1}};
    static const int32_t lens_k[3][MAX_SEQS] = {
        {200, 17, 130, 0}, {77, 90, 299, 200}, {5, 300, 1, 64}};
    for (int v = 0; v < 3; v++)
        for (int m = 0; m < 4; m++) {
            memset(&c, 0, sizeof c);
            c.nseq = 4;
            memcpy(c.lens_q, lens_q[v], sizeof c.lens_q);
            memcpy(c.lens_k, lens_k[v], sizeof c.lens_k);
            c.h = 4, c.hk = m % 2 ? 1 : 4, c.d = m < 2 ? 64 : 128;
            c.dtype = (v + m) % 2 ? TILEATTN_BF16 : TILEATTN_F16;
            c.causal = masks[m].causal, c.wl = masks[m].wl, c.wr = masks[m].wr;
            c.sinks = m == 1, c.alibi = m == 2, c.softcap = m == 3 ? 5.0f : 0.0f;
            passed += run_case(&c, &worst), total++;
        }
    /* Many blocks without a mask (more than the GPU's multiprocessors):
     * odd and even key tile counts; varlen blocks with no query row or no
     * key. */
    static const int64_t long_cases[2][3] = {{1025, 128, 1}, {1153, 64, 0}}; /* Sk, D, bf16 */
    for (int v = 0; v < 2; v++) {
        memset(&c, 0, sizeof c);
        c.batch = 2, c.sq = 700, c.sk = long_cases[v][0], c.h = 16, c.hk = 4;
        c.wl = c.wr = -1, c.d = long_cases[v][1];
        c.dtype = long_cases[v][2] ? TILEATTN_BF16 : TILEATTN_F16;
        passed += run_case(&c, &worst), total++;
    }
    memset(&c, 0, sizeof c);
    c.nseq = 4;
    memcpy(c.lens_q, (int32_t[MAX_SEQS]){600, 0, 333, 129}, sizeof c.lens_q);
    memcpy(c.lens_k, (int32_t[MAX_SEQS]){1025, 77, 0, 300}, sizeof c.lens_k);
    c.h = 32, c.hk = 8, c.d = 128, c.dtype = TILEATTN_BF16, c.sinks = 1, c.wl = c.wr = -1;
    passed += run_case(&c, &worst), total++;

    /* Every instantiated kernel, forced through TILEATTN_CUDA_TILES (the
     * grid above runs the planner's choices only). */
    static const int configs[][5] = {
#define TEST_CONFIG(hd, bq, bk, w, e) {hd, bq, bk, w, TA_CUDA_ENGINE_##e},
        TA_CUDA_FWD_CONFIGS(TEST_CONFIG)
#undef TEST_CONFIG
    };
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        char tiles[64];
        snprintf(tiles, sizeof tiles, "%dx%dx%d:%s", configs[k][1], configs[k][2], configs[k][3],
                 configs[k][4] == TA_CUDA_ENGINE_WGMMA ? "wgmma" : "mma");
        setenv("TILEATTN_CUDA_TILES", tiles, 1);
        printf("-- TILEATTN_CUDA_TILES=%s, head dim %d kernel\n", tiles, configs[k][0]);
        if (!config_runs_here(configs[k][0])) { /* a wgmma kernel on a GPU other than sm_90 */
            printf("skipped: %s\n", tileattn_cuda_last_error_string());
            continue;
        }
        for (int m = 0; m < 4; m++) {
            memset(&c, 0, sizeof c);
            c.batch = 2, c.sq = m == 2 ? 1023 : 203, c.sk = m == 2 ? 1024 : 113;
            c.h = 4, c.hk = m == 1 ? 1 : 2;
            c.d = configs[k][0] - (m == 3 ? 24 : 0);
            c.dtype = m % 2 ? TILEATTN_BF16 : TILEATTN_F16;
            c.causal = masks[m + 1].causal, c.wl = masks[m + 1].wl, c.wr = masks[m + 1].wr;
            c.sinks = m == 0, c.alibi = m == 3, c.softcap = m == 1 ? 8.0f : 0.0f;
            passed += run_case(&c, &worst), total++;
        }
    }
    unsetenv("TILEATTN_CUDA_TILES");
    int refusals = check_refusals(), describe = check_describe_forces();
    printf("%d of %d cases passed; worst error / tolerance %.3f; refusals %s; describe %s\n",
           passed, total, worst, refusals ? "ok" : "FAILED", describe ? "ok" : "FAILED");
    return passed == total && refusals && describe ? 0 : 1;
}
