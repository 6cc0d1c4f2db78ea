/*
 * The numeric suite: tileattn_forward against the float64 reference
 * (tileattn_reference_forward) on the same inputs, modelled on
 * FlashAttention's tests/test_flash_attn.py grid. The full cartesian
 * product of the axes is far too big; every value of every axis appears at
 * least once, and the risky pairs (odd lengths x masks, GQA x varlen,
 * dtype x mask) are walked pairwise, with rotating choices for the other
 * axes. Every failing case prints all of its parameters and the first bad
 * value to stderr.
 *
 * Tolerance per dtype (derivation in tests/attn_case.h), with u = 2^-24,
 * n keys and M the magnitude of the scores that carry weight:
 *   all dtypes: acc = 4 u (sqrt(n) + M + 30), the float32 accumulation;
 *               |LSE - LSE_ref| <= acc (LSE is float32 for every dtype);
 *   float32:    |O - O_ref| <= max|V| acc + 2^-24 (|O_ref| + max|V| acc)
 *   float16:    |O - O_ref| <= max|V| acc + 2^-11 (|O_ref| + max|V| acc)
 *               (+ 2^-25 for float16 subnormals): the output rounding;
 *   bfloat16:   |O - O_ref| <= max|V| acc + 2^-8 (|O_ref| + max|V| acc).
 * The reference sees the same rounded inputs, so input rounding does not
 * count. Rows that see no key are checked exactly (O = 0, LSE = -inf or the
 * sink). The last tests prove the tolerance catches real bugs.
 *
 * Meson runs this executable once per instruction set (TILEATTN_ISA =
 * scalar, avx2, avx512, avx512bf16; scalar, neon on AArch64); a run whose
 * set the CPU or the build lacks reports itself skipped (see main).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_case.h"

typedef struct tally {
    int cases, fails, handed_down;
    double worst[3]; /* per dtype: the largest err / tol seen */
    int64_t dead;
} tally;

/* Returns 0 when the case was left to a lower set (see below). */
static int run(tally *t, const th_case *c) {
    /* The seed is a function of the case number: reruns are reproducible. */
    uint64_t seed = 0x5eed0000u + (uint64_t)(t->cases + t->handed_down) * 7919u;
    /* A forced set that serves only some dtypes (amx, neonfhm, neonbf16)
     * hands the others to the set below it, whose own run covers them: run
     * only what this set computes. */
    const char *want = getenv("TILEATTN_ISA");
    if (want && *want && strcmp(tileattn_isa_name_for_dtype(c->dtype), want) != 0) {
        t->handed_down++;
        return 0;
    }
    t->cases++;
    t->fails += th_run_case(c, seed, &t->worst[c->dtype], &t->dead);
    return 1;
}

static void finish(const tally *t, const char *what) {
    fprintf(stderr,
            "%s [%s]: %d cases, %d failed, worst err/tol f32 %.3f f16 %.3f bf16 %.3f, "
            "%lld rows without keys; %d cases of other dtypes left to the set below\n",
            what, tileattn_isa_name(), t->cases, t->fails, t->worst[0], t->worst[1], t->worst[2],
            (long long)t->dead, t->handed_down);
    cr_assert_eq(t->fails, 0, "%s: %d of %d cases failed (parameters on stderr)", what, t->fails,
                 t->cases);
}

/* The masks of the grid: causal both ways, sliding windows, local, and
 * left-only / right-only windows. */
typedef struct mask_spec {
    tileattn_causal causal;
    int64_t wl, wr;
} mask_spec;

static const mask_spec masks[] = {
    {TILEATTN_CAUSAL_NONE, -1, -1},     {TILEATTN_CAUSAL_BOTTOM_RIGHT, -1, -1},
    {TILEATTN_CAUSAL_TOP_LEFT, -1, -1}, {TILEATTN_CAUSAL_NONE, 32, 0},
    {TILEATTN_CAUSAL_NONE, 16, 8},      {TILEATTN_CAUSAL_NONE, -1, 24},
    {TILEATTN_CAUSAL_NONE, 0, 0},       {TILEATTN_CAUSAL_BOTTOM_RIGHT, 16, -1},
    {TILEATTN_CAUSAL_TOP_LEFT, 7, -1},  {TILEATTN_CAUSAL_NONE, 5, -1},
};
enum { NUM_MASKS = sizeof masks / sizeof masks[0] };

static void set_mask(th_case *c, int m) {
    c->causal = masks[m].causal;
    c->wl = masks[m].wl;
    c->wr = masks[m].wr;
}

static const tileattn_dtype dtypes[] = {TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16};
static const int64_t head_dims[] = {32, 40, 59, 64, 80, 96, 111, 128, 160, 192, 224, 256};
enum { NUM_HEAD_DIMS = sizeof head_dims / sizeof head_dims[0] };
/* MHA, GQA (H=6, Hk=2), MQA. */
static const int64_t heads[][2] = {{2, 2}, {6, 2}, {3, 1}};

/* ------------------------------------------------------------------ */

/* The instruction set in use: a forced one is honoured or lowered, never
 * raised; scalar is always available. */
static int isa_rank(const char *name) {
    static const char *order[] = {"scalar", "neon",   "neonfhm",    "neonbf16",
                                  "avx2",   "avx512", "avx512bf16", "amx"};
    for (int i = 0; i < 8; i++)
        if (strcmp(name, order[i]) == 0) return i;
    return -1;
}

Test(numeric, isa_in_use) {
    const char *want = getenv("TILEATTN_ISA");
    const char *got = tileattn_isa_name();
    cr_log_info("TILEATTN_ISA=%s; microkernels in use: %s", want ? want : "(unset)", got);
    fprintf(stderr, "TILEATTN_ISA=%s; microkernels in use: %s\n", want ? want : "(unset)", got);
    cr_assert_geq(isa_rank(got), 0, "unknown instruction set name '%s'", got);
    if (want && *want) {
        cr_assert_geq(isa_rank(want), 0, "the test was registered with an unknown ISA");
        cr_assert_str_eq(got, want, "TILEATTN_ISA=%s gave %s", want, got);
    }
}

/* Each ISA's run of this suite is registered by meson; where the CPU (or
 * this build) lacks the requested set, the library falls back to a lower
 * one that its own run already covers, so the whole run reports itself
 * skipped (exit 77) instead of testing the lower set twice. */
int main(int argc, char *argv[]) {
    const char *want = getenv("TILEATTN_ISA");
    if (want && *want && isa_rank(want) >= 0 && strcmp(want, tileattn_isa_name()) != 0) {
        fprintf(stderr, "skipped: TILEATTN_ISA=%s is not available here (the library runs %s)\n",
                want, tileattn_isa_name());
        return 77;
    }
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}

/* Odd and even lengths (FlashAttention's pairs) against every mask. */
Test(numeric, seqlens_x_masks) {
    static const int64_t small[][2] = {{113, 203}, {128, 217}, {108, 256}, {1, 239}, {239, 1},
                                       {3, 799},   {1, 1},     {17, 16},   {16, 17}};
    static const int64_t small_dims[] = {32, 40, 59, 64, 80, 96, 111, 128};
    tally t = {0};
    for (int p = 0; p < (int)(sizeof small / sizeof small[0]); p++)
        for (int m = 0; m < NUM_MASKS; m++) {
            th_case c = th_case_default();
            c.sq = small[p][0];
            c.sk = small[p][1];
            set_mask(&c, m);
            c.dtype = dtypes[(p + m) % 3];
            c.h = heads[(p + 2 * m) % 3][0];
            c.hk = heads[(p + 2 * m) % 3][1];
            c.d = small_dims[(p * 3 + m) % 8];
            c.batch = 1 + (p + m) % 2;
            c.num_threads = (p + m) % 4; /* 0 (default), 1, 2, 3 */
            run(&t, &c);
        }
    finish(&t, "seqlens_x_masks");
}

/* The long pairs against every mask, one or two heads and small head dims
 * so the float64 reference stays cheap. Under emulation (qemu-aarch64 in
 * .ci/run-arm, which sets TILEATTN_TEST_EMULATED=1) the pairs shrink to
 * {{128, 256}, ..., {383, 384}, ...}: still several key and query blocks,
 * odd against even, every mask, sinks and ALiBi, at a ninth of the work. */
Test(numeric, long_seqlens) {
    static const int64_t big[][2] = {{256, 512}, {512, 256}, {1023, 1024}, {1024, 1023}};
    static const int64_t emulated[][2] = {{128, 256}, {256, 128}, {383, 384}, {384, 383}};
    const char *emu = getenv("TILEATTN_TEST_EMULATED");
    const int64_t(*pairs)[2] = emu && *emu && strcmp(emu, "0") != 0 ? emulated : big;
    tally t = {0};
    for (int p = 0; p < 4; p++)
        for (int m = 0; m < NUM_MASKS; m++) {
            th_case c = th_case_default();
            c.sq = pairs[p][0];
            c.sk = pairs[p][1];
            set_mask(&c, m);
            c.dtype = dtypes[(p + m) % 3];
            c.d = (p + m) % 2 ? 32 : 64;
            c.h = m % 4 == 3 ? 2 : 1;
            c.hk = 1;
            c.sinks = m == 5;
            c.alibi = m == 8 ? TH_ALIBI_H : TH_ALIBI_NONE;
            run(&t, &c);
        }
    finish(&t, "long_seqlens");
}

/* Random combinations of everything (fixed seed): interactions the
 * structured tests above do not reach. */
Test(numeric, random_combinations) {
    th_rng r;
    th_rng_seed(&r, 2024);
    tally t = {0};
    for (int k = 0; k < 80; k++) {
        th_case c = th_case_default();
        c.dtype = dtypes[th_rng_int(&r, 0, 2)];
        int hc = (int)th_rng_int(&r, 0, 4);
        static const int64_t hh[][2] = {{1, 1}, {3, 3}, {6, 2}, {4, 1}, {8, 4}};
        c.h = hh[hc][0];
        c.hk = hh[hc][1];
        c.d = head_dims[th_rng_int(&r, 0, NUM_HEAD_DIMS - 1)];
        if (c.d > 128 && th_rng_int(&r, 0, 1)) c.d = th_rng_int(&r, 1, 128);
        c.dv = th_rng_int(&r, 0, 2) == 0 ? th_rng_int(&r, 1, 256) : 0;
        set_mask(&c, (int)th_rng_int(&r, 0, NUM_MASKS - 1));
        if (th_rng_int(&r, 0, 3) == 0) c.softcap = (float)th_rng_range(&r, 1.0, 20.0);
        if (th_rng_int(&r, 0, 3) == 0) c.scale = (float)th_rng_range(&r, 0.01, 0.5);
        if (th_rng_int(&r, 0, 3) == 0) c.q_gain = th_rng_range(&r, 0.5, 4.0);
        c.alibi = (th_alibi)(th_rng_int(&r, 0, 3) == 0 ? th_rng_int(&r, 1, 2) : 0);
        c.sinks = th_rng_int(&r, 0, 3) == 0;
        c.num_threads = (int)th_rng_int(&r, 0, 3);
        c.o_pad = th_rng_int(&r, 0, 3) == 0 ? th_rng_int(&r, 1, 9) : 0;
        if (th_rng_int(&r, 0, 3) == 0) { /* varlen */
            c.nseq = (int)th_rng_int(&r, 1, TH_MAX_SEQS);
            for (int s = 0; s < c.nseq; s++) {
                c.lens_q[s] = (int32_t)(th_rng_int(&r, 0, 4) == 0 ? th_rng_int(&r, 0, 2)
                                                                  : th_rng_int(&r, 1, 150));
                c.lens_k[s] = (int32_t)(th_rng_int(&r, 0, 4) == 0 ? th_rng_int(&r, 0, 2)
                                                                  : th_rng_int(&r, 1, 150));
            }
            c.layout = th_rng_int(&r, 0, 2) == 0 ? TH_LAYOUT_HEAD_MAJOR : TH_LAYOUT_CONTIGUOUS;
        } else {
            c.batch = th_rng_int(&r, 1, 3);
            c.sq = th_rng_int(&r, 0, 3) == 0 ? th_rng_int(&r, 1, 4) : th_rng_int(&r, 1, 300);
            c.sk = th_rng_int(&r, 0, 3) == 0 ? th_rng_int(&r, 1, 4) : th_rng_int(&r, 1, 300);
            int layout = (int)th_rng_int(&r, 0, 3);
            if (layout == 1) c.sk = c.sq, c.layout = TH_LAYOUT_PACKED_QKV;
            if (layout == 2) c.layout = TH_LAYOUT_HEAD_MAJOR;
            if (th_rng_int(&r, 0, 2) == 0) {
                c.bias = (th_bias)th_rng_int(&r, 1, 2);
                c.bias_dtype = dtypes[th_rng_int(&r, 0, 2)];
                c.bias_flags = (int)th_rng_int(&r, 0, 15);
            }
        }
        run(&t, &c);
    }
    finish(&t, "random_combinations");
}

/* Every head dimension, equal and unequal Dv, each dtype. */
Test(numeric, head_dims) {
    tally t = {0};
    for (int i = 0; i < NUM_HEAD_DIMS; i++)
        for (int k = 0; k < 2; k++) {
            th_case c = th_case_default();
            c.sq = k ? 128 : 113;
            c.sk = k ? 217 : 203;
            c.d = head_dims[i];
            c.dtype = dtypes[(i + k) % 3];
            c.h = heads[(i + 2 * k) % 3][0];
            c.hk = heads[(i + 2 * k) % 3][1];
            set_mask(&c, (i * 2 + k) % NUM_MASKS);
            run(&t, &c);
        }
    static const int64_t dv_pairs[][2] = {{192, 128}, {64, 40},  {128, 192}, {40, 64},
                                          {256, 32},  {32, 256}, {1, 1},     {1, 7},
                                          {3, 256},   {256, 1},  {17, 100},  {100, 3}};
    for (int i = 0; i < (int)(sizeof dv_pairs / sizeof dv_pairs[0]); i++) {
        th_case c = th_case_default();
        c.sq = 77;
        c.sk = 150;
        c.d = dv_pairs[i][0];
        c.dv = dv_pairs[i][1];
        c.dtype = dtypes[i % 3];
        c.h = heads[(i / 3) % 3][0];
        c.hk = heads[(i / 3) % 3][1];
        set_mask(&c, (i * 3) % NUM_MASKS);
        run(&t, &c);
    }
    finish(&t, "head_dims");
}

/* Every score modification and mask source, alone and combined, in every
 * dtype. */
typedef struct feature {
    const char *name;
    void (*apply)(th_case *c);
} feature;

static void f_softcap(th_case *c) {
    c->softcap = 5.0f;
    c->q_gain = 3.0;
}
static void f_softcap_causal(th_case *c) {
    f_softcap(c);
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void f_alibi_h(th_case *c) {
    c->alibi = TH_ALIBI_H;
}
static void f_alibi_bh_causal(th_case *c) {
    c->alibi = TH_ALIBI_BH;
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void f_alibi_bh_topleft(th_case *c) {
    c->alibi = TH_ALIBI_BH;
    c->causal = TILEATTN_CAUSAL_TOP_LEFT;
}
static void f_alibi_window(th_case *c) {
    c->alibi = TH_ALIBI_H;
    c->wl = 16;
    c->wr = 8;
}
static void f_bias_f32(th_case *c) {
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_F32;
}
static void f_bias_f16_bcast_b(th_case *c) {
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_F16;
    c->bias_flags = TH_BIAS_BCAST_B;
}
static void f_bias_bf16_bcast_h(th_case *c) {
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_BF16;
    c->bias_flags = TH_BIAS_BCAST_H;
}
static void f_bias_bcast_neginf(th_case *c) {
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_F32;
    c->bias_flags = TH_BIAS_BCAST_B | TH_BIAS_BCAST_H | TH_BIAS_NEGINF;
}
static void f_bias_f16_dead(th_case *c) {
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_F16;
    c->bias_flags = TH_BIAS_NEGINF | TH_BIAS_DEAD_ROWS;
    c->causal = TILEATTN_CAUSAL_TOP_LEFT;
}
static void f_bool(th_case *c) {
    c->bias = TH_BIAS_BOOL;
}
static void f_bool_dead_bcast(th_case *c) {
    c->bias = TH_BIAS_BOOL;
    c->bias_flags = TH_BIAS_BCAST_B | TH_BIAS_DEAD_ROWS;
}
static void f_bool_causal(th_case *c) {
    c->bias = TH_BIAS_BOOL;
    c->bias_flags = TH_BIAS_BCAST_H;
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void f_sinks(th_case *c) {
    c->sinks = 1;
}
static void f_sinks_causal(th_case *c) {
    c->sinks = 1;
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void f_sinks_local(th_case *c) {
    c->sinks = 1;
    c->wl = 0;
    c->wr = 0;
}
static void f_scale(th_case *c) {
    c->scale = 0.3f;
}
static void f_peaky(th_case *c) {
    c->q_gain = 4.0;
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void f_all(th_case *c) {
    c->softcap = 8.0f;
    c->q_gain = 2.0;
    c->alibi = TH_ALIBI_H;
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_BF16;
    c->bias_flags = TH_BIAS_NEGINF;
    c->sinks = 1;
    c->wl = 16;
    c->wr = 8;
    c->scale = 0.2f;
}
static void f_all_bool(th_case *c) {
    c->softcap = 3.0f;
    c->alibi = TH_ALIBI_BH;
    c->bias = TH_BIAS_BOOL;
    c->bias_flags = TH_BIAS_DEAD_ROWS | TH_BIAS_BCAST_H;
    c->sinks = 1;
    c->causal = TILEATTN_CAUSAL_TOP_LEFT;
    c->wl = 40;
}

static const feature features[] = {
    {"softcap", f_softcap},
    {"softcap+causal", f_softcap_causal},
    {"alibi[H]", f_alibi_h},
    {"alibi[B,H]+causal", f_alibi_bh_causal},
    {"alibi[B,H]+causal-top-left", f_alibi_bh_topleft},
    {"alibi+window", f_alibi_window},
    {"bias f32", f_bias_f32},
    {"bias f16 bcast b", f_bias_f16_bcast_b},
    {"bias bf16 bcast h", f_bias_bf16_bcast_h},
    {"bias bcast b,h -inf", f_bias_bcast_neginf},
    {"bias f16 -inf dead rows", f_bias_f16_dead},
    {"bool", f_bool},
    {"bool dead rows bcast b", f_bool_dead_bcast},
    {"bool+causal", f_bool_causal},
    {"sinks", f_sinks},
    {"sinks+causal", f_sinks_causal},
    {"sinks+local", f_sinks_local},
    {"scale", f_scale},
    {"peaky scores", f_peaky},
    {"everything additive", f_all},
    {"everything bool", f_all_bool},
};
enum { NUM_FEATURES = sizeof features / sizeof features[0] };

Test(numeric, dtype_x_features) {
    tally t = {0};
    for (int f = 0; f < NUM_FEATURES; f++)
        for (int k = 0; k < 3; k++) {
            th_case c = th_case_default();
            c.dtype = dtypes[k];
            c.batch = 2;
            int flip = (f + k) % 2; /* Sq < Sk and Sq > Sk */
            c.sq = flip ? 161 : 97;
            c.sk = flip ? 97 : 161;
            c.h = 4;
            c.hk = (f + k) % 3 == 0 ? 4 : (f + k) % 3 == 1 ? 2 : 1;
            c.d = k == 1 ? 40 : 64;
            c.num_threads = k;
            features[f].apply(&c);
            run(&t, &c);
        }
    finish(&t, "dtype_x_features");
}

/* P allowed in the input dtype (tileattn_forward_args.p_precision): where
 * the table in use has a twin that rounds P to bfloat16 the plan must say
 * so and bfloat16 cases run it, within the bound that adds 2^-8 max|V| to
 * O (LSE's bound unchanged); the other dtypes and tables keep P float32.
 * Masks (register blocks stopping mid-pair and mid-tile), GQA, odd head
 * dims and threads, against the float64 reference. */
Test(numeric, p_in_input_dtype) {
    /* The tables with a twin: those whose P.V can multiply bfloat16 pairs. */
    const char *bf16_isa = tileattn_isa_name_for_dtype(TILEATTN_BF16);
    int expect_twin = strcmp(bf16_isa, "amx") == 0 || strcmp(bf16_isa, "avx512bf16") == 0;
    for (int k = 0; k < 3; k++) {
        th_case c = th_case_default();
        c.dtype = dtypes[k];
        c.sq = c.sk = 64;
        c.p_precision = TILEATTN_P_INPUT_DTYPE;
        tileattn_forward_args a;
        tileattn_forward_args_init(&a);
        a.batch = 1, a.seqlen_q = a.seqlen_k = 64, a.heads_q = a.heads_kv = 1, a.head_dim = 64;
        a.dtype = c.dtype, a.p_precision = TILEATTN_P_INPUT_DTYPE;
        a.q = a.k = a.v = tileattn_tensor_contiguous(NULL, 64, 1, 64);
        a.o = tileattn_tensor_out_contiguous(NULL, 64, 1, 64);
        char plan[2048];
        cr_assert_eq(tileattn_describe_plan(&a, plan, sizeof plan), TILEATTN_OK);
        int rounds = strstr(plan, "P rounded to bfloat16") != NULL;
        cr_assert_eq(rounds, expect_twin && c.dtype == TILEATTN_BF16, "%s: %s",
                     th_dtype_name(c.dtype), plan);
        a.p_precision = TILEATTN_P_FLOAT32;
        cr_assert_eq(tileattn_describe_plan(&a, plan, sizeof plan), TILEATTN_OK);
        cr_assert_null(strstr(plan, "P rounded to bfloat16"), "rounding P was not asked for");
    }
    tally t = {0};
    for (int m = 0; m < NUM_MASKS; m++)
        for (int k = 0; k < 3; k++)
            for (int v = 0; v < 2; v++) {
                th_case c = th_case_default();
                c.dtype = dtypes[k];
                c.p_precision = TILEATTN_P_INPUT_DTYPE;
                set_mask(&c, m);
                c.batch = 2;
                c.sq = v ? 77 : 300;
                c.sk = v ? 301 : 255;
                c.h = v ? 6 : 2;
                c.hk = v ? 2 : 2;
                c.d = v ? 72 : 128;
                c.dv = v ? 40 : 0;
                c.num_threads = m % 3;
                run(&t, &c);
            }
    finish(&t, "p_in_input_dtype");
}

/* Variable-length batches: lengths 0 and 1, Sq != Sk per sequence, every
 * mask, MHA/GQA/MQA, layouts. */
Test(numeric, varlen) {
    static const struct {
        int n;
        int32_t q[6], k[6];
    } sets[] = {
        {6, {5, 0, 1, 130, 64, 17}, {7, 3, 0, 99, 200, 1}},
        {4, {33, 1, 0, 77}, {33, 1, 0, 77}},
        {3, {1, 1, 1}, {300, 1, 40}},
        {2, {200, 3}, {50, 0}},
        {3, {0, 0, 9}, {4, 0, 0}},
    };
    enum { NUM_SETS = sizeof sets / sizeof sets[0] };
    tally t = {0};
    int idx = 0;
    for (int s = 0; s < NUM_SETS; s++)
        for (int m = 0; m < NUM_MASKS; m++, idx++) {
            if ((s + m) % 2) continue; /* half the pairs; the other half below with features */
            th_case c = th_case_default();
            c.nseq = sets[s].n;
            memcpy(c.lens_q, sets[s].q, sizeof sets[s].q);
            memcpy(c.lens_k, sets[s].k, sizeof sets[s].k);
            set_mask(&c, m);
            c.dtype = dtypes[idx % 3];
            c.h = heads[(s + m / 2) % 3][0];
            c.hk = heads[(s + m / 2) % 3][1];
            c.d = head_dims[(idx * 5) % NUM_HEAD_DIMS] > 128 ? 96 : head_dims[(idx * 5) % 12];
            c.dv = idx % 4 == 1 ? 40 : 0;
            c.layout = s == 1 && m % 4 == 0 ? TH_LAYOUT_PACKED_QKV
                       : m % 3 == 1         ? TH_LAYOUT_HEAD_MAJOR
                                            : TH_LAYOUT_CONTIGUOUS;
            c.o_pad = m % 3 == 2 ? 5 : 0;
            run(&t, &c);
        }
    for (int s = 0; s < NUM_SETS; s++)
        for (int k = 0; k < 4; k++) {
            th_case c = th_case_default();
            c.nseq = sets[s].n;
            memcpy(c.lens_q, sets[s].q, sizeof sets[s].q);
            memcpy(c.lens_k, sets[s].k, sizeof sets[s].k);
            c.dtype = dtypes[(s + k) % 3];
            c.h = heads[(s + k) % 3][0];
            c.hk = heads[(s + k) % 3][1];
            c.d = 64;
            switch (k) {
            case 0: c.sinks = 1, c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT; break;
            case 1: c.alibi = TH_ALIBI_BH, c.wl = 16, c.wr = 8; break;
            case 2: c.softcap = 4.0f, c.q_gain = 3.0, c.causal = TILEATTN_CAUSAL_TOP_LEFT; break;
            case 3: c.alibi = TH_ALIBI_H, c.sinks = 1, c.scale = 0.25f; break;
            }
            run(&t, &c);
        }
    finish(&t, "varlen");
}

/* Non-contiguous inputs: Q/K/V as slices of one packed QKV buffer, head-major
 * views with padding, O with a padded head stride, token axes read backwards
 * (negative strides). */
Test(numeric, strided_layouts) {
    tally t = {0};
    for (int k = 0; k < 3; k++)
        for (int g = 0; g < 2; g++) {
            th_case c = th_case_default();
            c.dtype = dtypes[k];
            c.layout = TH_LAYOUT_PACKED_QKV;
            c.batch = 2;
            c.sq = c.sk = 131;
            c.h = g ? 6 : 3;
            c.hk = g ? 2 : 3;
            c.d = g ? 59 : 64;
            c.o_pad = 3 + k;
            set_mask(&c, (k * 2 + g) % NUM_MASKS);
            run(&t, &c);

            th_case h = th_case_default();
            h.dtype = dtypes[k];
            h.layout = TH_LAYOUT_HEAD_MAJOR;
            h.batch = 2;
            h.sq = g ? 45 : 190;
            h.sk = g ? 190 : 45;
            h.h = g ? 4 : 2;
            h.hk = g ? 1 : 2;
            h.d = g ? 111 : 80;
            h.dv = g ? 0 : 33;
            h.o_pad = g ? 0 : 8;
            h.sinks = g;
            set_mask(&h, (k * 3 + g) % NUM_MASKS);
            run(&t, &h);

            th_case r = th_case_default();
            r.dtype = dtypes[k];
            r.layout = TH_LAYOUT_REVERSED;
            r.batch = 2;
            r.sq = g ? 77 : 150;
            r.sk = g ? 150 : 77;
            r.h = 4;
            r.hk = g ? 2 : 4;
            r.d = g ? 40 : 96;
            set_mask(&r, (k * 5 + g) % NUM_MASKS);
            run(&t, &r);
        }
    finish(&t, "strided_layouts");
}

/* Rows that see no key: O must be exactly 0 and LSE exactly -inf (or the
 * sink's logit when there is one). Each case must really have such rows. */
Test(numeric, rows_without_keys) {
    tally t = {0};
    for (int k = 0; k < 3; k++)
        for (int v = 0; v < 8; v++) {
            th_case c = th_case_default();
            c.dtype = dtypes[k];
            c.h = 2;
            c.hk = 1;
            c.d = 48;
            c.sq = 50;
            c.sk = 20;
            switch (v) {
            case 0: c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT; break;       /* rows 0..29 */
            case 1: c.causal = TILEATTN_CAUSAL_TOP_LEFT, c.wl = 0; break; /* rows >= 20 */
            case 2: c.wl = 0, c.wr = 0; break; /* bottom-right diagonal: rows 0..29 */
            case 3: c.bias = TH_BIAS_BOOL, c.bias_flags = TH_BIAS_DEAD_ROWS; break;
            case 4:
                c.bias = TH_BIAS_ADD, c.bias_dtype = dtypes[k];
                c.bias_flags = TH_BIAS_DEAD_ROWS | TH_BIAS_NEGINF;
                break;
            case 5: c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT, c.sinks = 1; break;
            case 6: /* a sequence with queries and no keys */
                c.nseq = 3;
                c.lens_q[0] = 12, c.lens_q[1] = 30, c.lens_q[2] = 1;
                c.lens_k[0] = 0, c.lens_k[1] = 25, c.lens_k[2] = 0;
                c.causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
                break;
            case 7:
                c.bias = TH_BIAS_BOOL, c.bias_flags = TH_BIAS_DEAD_ROWS, c.sinks = 1;
                c.alibi = TH_ALIBI_H;
                break;
            }
            int64_t before = t.dead;
            if (!run(&t, &c)) continue;
            char desc[512];
            th_case_str(&c, desc, sizeof desc);
            cr_expect_gt(t.dead, before, "case [%s] was meant to have rows without keys", desc);
        }
    finish(&t, "rows_without_keys");
}

/* Sq = 1 (decoding), Sk = 1, tiny and extreme head dims, many heads,
 * more threads than work. */
Test(numeric, edge_sizes) {
    static const int64_t shapes[][7] = {
        /* B, Sq, Sk, H, Hk, D, Dv */
        {3, 1, 1, 2, 1, 64, 0},    {2, 1, 517, 16, 4, 128, 0}, {1, 1, 33, 8, 8, 1, 1},
        {1, 5, 1, 4, 2, 256, 1},   {2, 1, 64, 6, 3, 1, 256},   {1, 300, 1, 1, 1, 17, 0},
        {4, 2, 3, 5, 5, 3, 0},     {1, 1, 1, 1, 1, 256, 256},  {1, 64, 64, 1, 1, 32, 0},
        {1, 65, 63, 2, 2, 160, 0}, {5, 7, 1, 3, 1, 224, 0},    {1, 1, 2048, 2, 1, 32, 0},
    };
    tally t = {0};
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (int m = 0; m < 3; m++) {
            th_case c = th_case_default();
            c.batch = shapes[s][0];
            c.sq = shapes[s][1];
            c.sk = shapes[s][2];
            c.h = shapes[s][3];
            c.hk = shapes[s][4];
            c.d = shapes[s][5];
            c.dv = shapes[s][6];
            c.dtype = dtypes[(s + m) % 3];
            set_mask(&c, m == 0 ? 0 : m == 1 ? 1 : (s % 2 ? 2 : 6));
            c.num_threads = (s + m) % 3 == 2 ? 8 : (s + m) % 3;
            c.sinks = s % 4 == 3;
            run(&t, &c);
        }
    finish(&t, "edge_sizes");
}

/* ------------------------------------------------------------------ */
/* The tolerance is tight enough to catch real bugs: compare the forward with
 * a reference computed for slightly wrong semantics; every one must fail. */

static int64_t check_against(th_problem *p, const tileattn_forward_args *ref_args) {
    double *o = NULL, *lse = NULL;
    cr_assert_eq(th_problem_reference(p, ref_args, &o, &lse), TILEATTN_OK);
    th_check chk;
    th_problem_check(p, o, lse, &chk);
    th_free(o);
    th_free(lse);
    return chk.bad;
}

typedef struct perturbation {
    const char *name;
    void (*setup)(th_case *c);
    /* Changes the reference's arguments; may allocate into *scratch. */
    void (*perturb)(th_problem *p, tileattn_forward_args *a, void **scratch);
} perturbation;

static void s_window(th_case *c) {
    c->sq = c->sk = 128;
    c->wl = 16;
    c->wr = 8;
}
static void p_left_minus(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->window_left -= 1;
}
static void p_left_plus(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->window_left += 1;
}
static void p_right_minus(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->window_right -= 1;
}
static void p_right_plus(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->window_right += 1;
}
static void s_causal(th_case *c) {
    c->sq = 64;
    c->sk = 100;
    c->causal = TILEATTN_CAUSAL_BOTTOM_RIGHT;
}
static void p_top_left(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->causal = TILEATTN_CAUSAL_TOP_LEFT;
}
static void p_causal_diag_plus(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->causal = TILEATTN_CAUSAL_NONE;
    a->window_left = -1;
    a->window_right = 1; /* sees one key past the diagonal */
}
static void s_sinks(th_case *c) {
    c->sq = 70;
    c->sk = 300;
    c->sinks = 1;
}
static void p_no_sinks(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->sinks = NULL;
}
static void s_plain(th_case *c) {
    c->sq = 100;
    c->sk = 1000;
}
static void p_scale_up(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)s;
    a->scale = (float)(1.01 / sqrt((double)p->c.d));
}
static void p_scale_down(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)s;
    a->scale = (float)(0.99 / sqrt((double)p->c.d));
}
static void s_softcap(th_case *c) {
    c->sq = 90;
    c->sk = 200;
    c->softcap = 5.0f;
    c->q_gain = 3.0;
}
static void p_softcap_off(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->softcap = 0.0f;
}
static void p_softcap_1pct(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)p, (void)s;
    a->softcap *= 1.01f;
}
static void s_alibi(th_case *c) {
    c->sq = 90;
    c->sk = 200;
    c->h = 4;
    c->hk = 2;
    c->alibi = TH_ALIBI_H;
}
static void p_alibi_next_head(th_problem *p, tileattn_forward_args *a, void **s) {
    float *slopes = th_alloc((size_t)p->c.h * sizeof(float));
    for (int64_t h = 0; h < p->c.h; h++)
        slopes[h] = p->alibi[(h + 1) % p->c.h];
    a->alibi_slopes = slopes;
    *s = slopes;
}
static void p_alibi_2pct(th_problem *p, tileattn_forward_args *a, void **s) {
    float *slopes = th_alloc((size_t)p->c.h * sizeof(float));
    for (int64_t h = 0; h < p->c.h; h++)
        slopes[h] = p->alibi[h] * 1.02f;
    a->alibi_slopes = slopes;
    *s = slopes;
}
static void s_gqa(th_case *c) {
    c->sq = 60;
    c->sk = 90;
    c->h = 6;
    c->hk = 2;
}
/* K and V expanded to MHA with query head h reading KV head h % Hk, the
 * classic slip for h / (H / Hk). */
static void p_gqa_modulo(th_problem *p, tileattn_forward_args *a, void **s) {
    const th_case *c = &p->c;
    size_t es = tileattn_dtype_size(c->dtype);
    int64_t row_k = c->h * c->d, row_v = c->h * p->dv;
    char *k = th_alloc((size_t)(c->batch * c->sk * (row_k + row_v)) * es);
    char *v = k + (size_t)(c->batch * c->sk * row_k) * es;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t j = 0; j < c->sk; j++)
            for (int64_t h = 0; h < c->h; h++) {
                int64_t src_k = b * a->k.stride_b + j * a->k.stride_s + (h % c->hk) * a->k.stride_h;
                int64_t src_v = b * a->v.stride_b + j * a->v.stride_s + (h % c->hk) * a->v.stride_h;
                memcpy(k + (size_t)((b * c->sk + j) * row_k + h * c->d) * es,
                       (const char *)a->k.data + (size_t)src_k * es, (size_t)c->d * es);
                memcpy(v + (size_t)((b * c->sk + j) * row_v + h * p->dv) * es,
                       (const char *)a->v.data + (size_t)src_v * es, (size_t)p->dv * es);
            }
    a->k = tileattn_tensor_contiguous(k, c->sk, c->h, c->d);
    a->v = tileattn_tensor_contiguous(v, c->sk, c->h, p->dv);
    a->heads_kv = c->h;
    *s = k;
}
static void s_varlen(th_case *c) {
    c->nseq = 2;
    c->lens_q[0] = 40, c->lens_q[1] = 50;
    c->lens_k[0] = 60, c->lens_k[1] = 70;
    c->h = 2;
    c->hk = 2;
}
static void p_varlen_boundary(th_problem *p, tileattn_forward_args *a, void **s) {
    int32_t *cu = th_alloc(sizeof p->cu_k);
    memcpy(cu, p->cu_k, sizeof p->cu_k);
    cu[1] += 1; /* the second sequence's keys start one token late */
    a->cu_seqlens_k = cu;
    *s = cu;
}
static void s_bias(th_case *c) {
    c->sq = 64;
    c->sk = 128; /* bias row stride 130 */
    c->bias = TH_BIAS_ADD;
    c->bias_dtype = TILEATTN_F32;
}
static void p_bias_stride(th_problem *p, tileattn_forward_args *a, void **s) {
    (void)s;
    a->bias_stride_q = p->c.sk; /* ignores the row padding */
}

static const perturbation perturbations[] = {
    {"window_left - 1", s_window, p_left_minus},
    {"window_left + 1", s_window, p_left_plus},
    {"window_right - 1", s_window, p_right_minus},
    {"window_right + 1", s_window, p_right_plus},
    {"causal top-left instead of bottom-right", s_causal, p_top_left},
    {"causal sees one key past the diagonal", s_causal, p_causal_diag_plus},
    {"sink dropped", s_sinks, p_no_sinks},
    {"scale x 1.01", s_plain, p_scale_up},
    {"scale x 0.99", s_plain, p_scale_down},
    {"softcap off", s_softcap, p_softcap_off},
    {"softcap x 1.01", s_softcap, p_softcap_1pct},
    {"alibi slope of the next head", s_alibi, p_alibi_next_head},
    {"alibi slopes x 1.02", s_alibi, p_alibi_2pct},
    {"gqa head h % Hk", s_gqa, p_gqa_modulo},
    {"varlen keys one token late", s_varlen, p_varlen_boundary},
    {"bias row stride ignored", s_bias, p_bias_stride},
};

Test(numeric, tolerance_catches_bugs) {
    int caught = 0, total = 0;
    for (int i = 0; i < (int)(sizeof perturbations / sizeof perturbations[0]); i++)
        for (int k = 0; k < 3; k++) {
            th_case c = th_case_default();
            c.dtype = dtypes[k];
            c.d = 64;
            perturbations[i].setup(&c);
            th_problem p;
            th_problem_make(&p, &c, 1234 + (uint64_t)i);
            cr_assert_eq(th_problem_forward(&p), TILEATTN_OK);
            /* The right reference passes... */
            int64_t bad_right = check_against(&p, NULL);
            /* ...the wrong one must not. */
            tileattn_forward_args wrong = p.args;
            void *scratch = NULL;
            perturbations[i].perturb(&p, &wrong, &scratch);
            int64_t bad_wrong = check_against(&p, &wrong);
            th_free(scratch);
            th_problem_free(&p);
            total++;
            caught += bad_wrong > 0;
            cr_expect_eq(bad_right, 0, "%s (%s): the unperturbed comparison fails",
                         perturbations[i].name, th_dtype_name(dtypes[k]));
            cr_expect_gt(bad_wrong, 0, "%s (%s): a reference with this bug would still pass",
                         perturbations[i].name, th_dtype_name(dtypes[k]));
        }
    cr_log_info("tolerance_catches_bugs: %d of %d perturbations caught", caught, total);
}

/* A missing rescale of the accumulator (O += P V after a new row max, with
 * no O *= exp(m_old - m_new)) cannot be expressed as reference arguments:
 * emulate it in float64 with 64-key tiles, write that O where the forward's
 * was, and check that the comparison rejects it. */
Test(numeric, tolerance_catches_missing_rescale) {
    for (int k = 0; k < 3; k++) {
        th_case c = th_case_default();
        c.dtype = dtypes[k];
        c.sq = 64;
        c.sk = 512;
        c.d = 64;
        th_problem p;
        th_problem_make(&p, &c, 4321);
        cr_assert_eq(th_problem_forward(&p), TILEATTN_OK);
        double *o, *lse;
        cr_assert_eq(th_problem_reference(&p, NULL, &o, &lse), TILEATTN_OK);
        th_check chk;
        th_problem_check(&p, o, lse, &chk);
        cr_expect_eq(chk.bad, 0, "%s: the real output fails: %s", th_dtype_name(c.dtype),
                     chk.first);

        const tileattn_forward_args *a = &p.args;
        double scale = 1.0 / sqrt((double)c.d), s[512], acc[64];
        for (int64_t i = 0; i < c.sq; i++) {
            for (int64_t j = 0; j < c.sk; j++) {
                double dot = 0;
                for (int64_t e = 0; e < c.d; e++)
                    dot += th_load(a->q.data, c.dtype, i * a->q.stride_s + e) *
                           th_load(a->k.data, c.dtype, j * a->k.stride_s + e);
                s[j] = scale * dot;
            }
            double m = -INFINITY, l = 0;
            for (int64_t e = 0; e < c.d; e++)
                acc[e] = 0;
            for (int64_t j0 = 0; j0 < c.sk; j0 += 64) {
                double m_new = m;
                for (int64_t j = j0; j < j0 + 64; j++)
                    m_new = s[j] > m_new ? s[j] : m_new;
                l *= exp(m - m_new); /* the sum is rescaled... */
                for (int64_t j = j0; j < j0 + 64; j++) {
                    double pj = exp(s[j] - m_new);
                    l += pj;
                    for (int64_t e = 0; e < c.d; e++) /* ...the accumulator is not */
                        acc[e] += pj * th_load(a->v.data, c.dtype, j * a->v.stride_s + e);
                }
                m = m_new;
            }
            for (int64_t e = 0; e < c.d; e++)
                th_store(a->o.data, c.dtype, i * a->o.stride_s + e, acc[e] / l);
        }
        th_problem_check(&p, o, lse, &chk);
        cr_expect_gt(chk.bad, 0, "%s: an output without the rescale would pass",
                     th_dtype_name(c.dtype));
        fprintf(stderr, "missing rescale (%s): %lld of %lld rows x Dv values rejected\n",
                th_dtype_name(c.dtype), (long long)chk.bad, (long long)(chk.rows * c.d));
        th_free(o);
        th_free(lse);
        th_problem_free(&p);
    }
}

/* One query row against 2^25 keys of equal score (K and V broadcast along
 * the sequence, stride 0): O must be V exactly. Added to O key by key, the
 * float32 sum stops at 2^25 (2 is half its ULP there, and the tie rounds
 * to even) and O read 1 for 2; each tile summed apart and added once keeps
 * it exact. In float32 and in bfloat16 (the tables differ per dtype). */
Test(numeric, long_rows_of_equal_keys) {
    const int64_t sk = (int64_t)1 << 25;
    const tileattn_dtype row_dtypes[2] = {TILEATTN_F32, TILEATTN_BF16};
    for (int t = 0; t < 2; t++) {
        float q32[1] = {1.0f}, k32[1] = {0.5f}, v32[1] = {2.0f}, o[1] = {0.0f}, lse[1];
        uint16_t q16[1] = {0x3f80}, k16[1] = {0x3f00}, v16[1] = {0x4000}; /* 1, 0.5, 2 */
        uint16_t o16[1] = {0};
        int f32 = row_dtypes[t] == TILEATTN_F32;
        tileattn_forward_args a;
        tileattn_forward_args_init(&a);
        a.batch = 1, a.seqlen_q = 1, a.seqlen_k = sk, a.heads_q = a.heads_kv = 1, a.head_dim = 1;
        a.dtype = row_dtypes[t];
        a.q = tileattn_tensor_contiguous(f32 ? (void *)q32 : (void *)q16, 1, 1, 1);
        a.k = (tileattn_tensor){f32 ? (void *)k32 : (void *)k16, 0, 0, 0};
        a.v = (tileattn_tensor){f32 ? (void *)v32 : (void *)v16, 0, 0, 0};
        a.o = tileattn_tensor_out_contiguous(f32 ? (void *)o : (void *)o16, 1, 1, 1);
        a.lse = lse;
        cr_assert_eq(tileattn_forward(&a), TILEATTN_OK);
        float got = f32 ? o[0] : (float)th_load(o16, TILEATTN_BF16, 0);
        cr_expect_eq(got, 2.0f, "%s: O = %g, want 2", th_dtype_name(row_dtypes[t]), (double)got);
        /* LSE = 0.5 + ln(2^25): summed per tile, right either way. */
        cr_expect(fabsf(lse[0] - (0.5f + 25.0f * 0.693147181f)) < 1e-5f, "LSE = %g",
                  (double)lse[0]);
    }
}
