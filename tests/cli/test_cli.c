/*
 * The tileattn binary end to end, spawned by path ($TILEATTN_CLI): run on
 * small random problems and check the result against the reference with
 * every mask flag, varlen and float16; a perturbed output must fail the
 * check; every bad input must exit 2 with one line on stderr, create no
 * file, leave an existing output byte for byte unchanged and leave no
 * temporary file behind.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"
#include "util.h"

static void setup(void) {
    cr_assert_not_null(tu_make_temp_dir(), "cannot make a temp dir");
}
static void teardown(void) {
    tu_remove_temp_dir();
}

TestSuite(cli, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------ */
/* Helpers. */

/* Writes a random array of the given shape to work/name. */
static void write_random(const char *name, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                         uint64_t seed, float lo, float hi) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= (size_t)shape[i];
    size_t size = ta_npy_dtype_size(dtype);
    unsigned char *data = malloc(count * size + 1);
    cr_assert_not_null(data);
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < count; i++) {
        float x = tu_random_float(&state, lo, hi);
        if (dtype == TA_NPY_F32) {
            memcpy(data + 4 * i, &x, 4);
        } else if (dtype == TA_NPY_F16) {
            uint16_t h = ta_npy_float_to_half(x);
            memcpy(data + 2 * i, &h, 2);
        } else if (dtype == TA_NPY_F64) {
            double d = x;
            memcpy(data + 8 * i, &d, 8);
        } else if (dtype == TA_NPY_BOOL || dtype == TA_NPY_U8) {
            /* Three in four keys seen. */
            data[i] = x < 0.75f ? 1 : 0;
        } else {
            cr_assert_fail("write_random: dtype");
        }
    }
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_write(tu_path(name), dtype, ndim, shape, data, err, sizeof err), 0, "%s",
                 err);
    free(data);
}

static void write_ints(const char *name, ta_npy_dtype dtype, int64_t count, const int64_t *values) {
    char err[TA_NPY_ERR_LEN];
    int64_t shape[1] = {count};
    int32_t narrow[16];
    const void *data = values;
    if (dtype == TA_NPY_I32) {
        for (int64_t i = 0; i < count; i++)
            narrow[i] = (int32_t)values[i];
        data = narrow;
    }
    cr_assert_eq(ta_npy_write(tu_path(name), dtype, 1, shape, data, err, sizeof err), 0, "%s", err);
}

/* The problem most tests use: B=2, Sq=5, Sk=7, H=4, Hk=2 (GQA), D=16, Dv=8. */
enum { B = 2, SQ = 5, SK = 7, H = 4, HK = 2, D = 16, DV = 8 };

static void write_qkv(ta_npy_dtype dtype, uint64_t seed) {
    const int64_t q[4] = {B, SQ, H, D}, k[4] = {B, SK, HK, D}, v[4] = {B, SK, HK, DV};
    write_random("q.npy", dtype, 4, q, seed, -2, 2);
    write_random("k.npy", dtype, 4, k, seed + 1, -2, 2);
    write_random("v.npy", dtype, 4, v, seed + 2, -1, 1);
}

/* Varlen: 3 sequences of 3, 0 and 5 queries against 4, 5 and 1 keys. */
static const int64_t cu_q[4] = {0, 3, 3, 8}, cu_k[4] = {0, 4, 9, 10};

static void write_varlen_qkv(ta_npy_dtype cu_dtype) {
    const int64_t q[3] = {8, H, D}, k[3] = {10, HK, D}, v[3] = {10, HK, DV};
    write_random("q.npy", TA_NPY_F32, 3, q, 11, -2, 2);
    write_random("k.npy", TA_NPY_F32, 3, k, 12, -2, 2);
    write_random("v.npy", TA_NPY_F32, 3, v, 13, -1, 1);
    write_ints("cu_q.npy", cu_dtype, 4, cu_q);
    write_ints("cu_k.npy", cu_dtype, 4, cu_k);
}

/* Copies src to dst (work/ names) with element `index` of a float array
 * changed by delta (or set to value if set_value). */
static void perturb(const char *src, const char *dst, size_t index, double delta, int set_value,
                    double value) {
    ta_npy_array a;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path(src), &a, err, sizeof err), 0, "%s", err);
    if (index == SIZE_MAX) /* the last element: a row that sees keys in every test */
        index = a.count - 1;
    cr_assert_lt(index, a.count);
    if (a.dtype == TA_NPY_F32) {
        float *f = a.data;
        f[index] = set_value ? (float)value : (float)(f[index] + delta);
    } else if (a.dtype == TA_NPY_F16) {
        uint16_t *h = a.data;
        h[index] = ta_npy_float_to_half(
            set_value ? (float)value : (float)(ta_npy_half_to_float(h[index]) + delta));
    } else {
        double *d = a.data;
        d[index] = set_value ? value : d[index] + delta;
    }
    cr_assert_eq(ta_npy_write(tu_path(dst), a.dtype, a.ndim, a.shape, a.data, err, sizeof err), 0);
    ta_npy_free(&a);
}

/* run, then check the output; then check that a perturbed O (and, when
 * with_lse, a perturbed LSE) fails. extra: the mask flags, for both. */
static void run_and_check(const char *const *extra, int with_lse, double o_delta) {
    tu_arglist run = {0};
    tu_add(&run, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy"),
           "--out", tu_path("o.npy"), NULL);
    if (with_lse) tu_add(&run, "--lse", tu_path("lse.npy"), NULL);
    tu_add_list(&run, extra);
    char *out = NULL, *err = NULL;
    int status = tu_run_args(&run, &out, &err);
    cr_assert_eq(status, 0, "run failed (%d): %s", status, err);
    cr_assert_str_empty(err, "run wrote to stderr: %s", err);
    free(out);
    free(err);

    tu_arglist check = {0};
    tu_add(&check, "check", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
           tu_path("v.npy"), "--o", tu_path("o.npy"), NULL);
    if (with_lse) tu_add(&check, "--lse", tu_path("lse.npy"), NULL);
    tu_add_list(&check, extra);
    status = tu_run_args(&check, &out, &err);
    cr_assert_eq(status, 0, "check failed (%d):\n%s%s", status, out, err);
    cr_assert_not_null(strstr(out, "PASS"), "%s", out);
    cr_assert_not_null(strstr(out, "max abs err"), "%s", out);
    free(out);
    free(err);

    /* One element of O moved well past the tolerance. */
    perturb("o.npy", "o_bad.npy", 3, o_delta, 0, 0);
    check.v[8] = tu_path("o_bad.npy"); /* the value after --o */
    cr_assert_str_eq(check.v[7], "--o");
    status = tu_run_args(&check, &out, &err);
    cr_assert_eq(status, 1, "a perturbed O passed (%d):\n%s%s", status, out, err);
    cr_assert_not_null(strstr(out, "FAIL"), "%s", out);
    cr_assert_not_null(strstr(out, "1 of"), "%s", out);
    free(out);
    free(err);
    check.v[8] = tu_path("o.npy");

    if (with_lse) {
        perturb("lse.npy", "lse_bad.npy", SIZE_MAX, 1e-2, 0, 0);
        cr_assert_str_eq(check.v[9], "--lse");
        check.v[10] = tu_path("lse_bad.npy");
        status = tu_run_args(&check, &out, &err);
        cr_assert_eq(status, 1, "a perturbed LSE passed (%d):\n%s%s", status, out, err);
        free(out);
        free(err);
    }
    cr_assert_not(tu_has_temp_leftovers());
}

/* ------------------------------------------------------------------------ */
/* Runs that must succeed, and checks that must pass or fail. */

Test(cli, run_then_check_plain) {
    write_qkv(TA_NPY_F32, 1);
    run_and_check(NULL, 1, 1e-3);
    /* O's shape and dtype. */
    ta_npy_array o;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("o.npy"), &o, err, sizeof err), 0, "%s", err);
    cr_assert_eq(o.dtype, TA_NPY_F32);
    cr_assert_eq(o.ndim, 4);
    cr_assert(o.shape[0] == B && o.shape[1] == SQ && o.shape[2] == H && o.shape[3] == DV);
    ta_npy_free(&o);
    ta_npy_array lse;
    cr_assert_eq(ta_npy_read(tu_path("lse.npy"), &lse, err, sizeof err), 0, "%s", err);
    cr_assert_eq(lse.dtype, TA_NPY_F32);
    cr_assert(lse.ndim == 3 && lse.shape[0] == B && lse.shape[1] == H && lse.shape[2] == SQ);
    ta_npy_free(&lse);
}

Test(cli, run_then_check_causal_window_softcap_scale) {
    write_qkv(TA_NPY_F32, 2);
    static const char *const flag_sets[][8] = {
        {"--causal", NULL},
        {"--causal-top-left", NULL},
        {"--window", "2,1", NULL},
        {"--window", "-1,0", NULL},
        {"--window=3,-1", "--causal", NULL},
        {"--softcap", "5", NULL},
        {"--scale", "0.3", NULL},
        {"--scale=1.5", "--softcap=2.5", "--threads", "2", NULL},
    };
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++)
        run_and_check(flag_sets[f], 1, 1e-3);
}

Test(cli, run_then_check_alibi_sinks) {
    write_qkv(TA_NPY_F32, 3);
    const int64_t h[1] = {H}, bh[2] = {B, H};
    write_random("alibi_h.npy", TA_NPY_F32, 1, h, 21, 0.0f, 0.5f);
    write_random("alibi_bh.npy", TA_NPY_F64, 2, bh, 22, 0.0f, 0.5f); /* float64 is converted */
    write_random("sinks.npy", TA_NPY_F32, 1, h, 23, -1.0f, 2.0f);
    const char *alibi_h = tu_path("alibi_h.npy"), *alibi_bh = tu_path("alibi_bh.npy");
    const char *sinks = tu_path("sinks.npy");
    const char *const sets[][10] = {
        {"--alibi", alibi_h, NULL},
        {"--alibi", alibi_bh, "--causal", NULL},
        {"--sinks", sinks, NULL},
        {"--causal", "--alibi", alibi_h, "--sinks", sinks, "--softcap", "4", "--window", "3,0",
         NULL},
    };
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        run_and_check(sets[s], 1, 1e-3);
}

Test(cli, run_then_check_bias_and_mask) {
    write_qkv(TA_NPY_F32, 4);
    const int64_t full[4] = {B, H, SQ, SK}, shared[4] = {1, 1, SQ, SK}, per_b[4] = {B, 1, SQ, SK};
    const int64_t plane[2] = {SQ, SK}, per_h[3] = {H, SQ, SK};
    write_random("bias.npy", TA_NPY_F32, 4, full, 31, -1, 1);
    write_random("bias_shared.npy", TA_NPY_F32, 4, shared, 32, -1, 1);
    write_random("bias_f16.npy", TA_NPY_F16, 4, per_b, 33, -1, 1);
    write_random("bias_2d.npy", TA_NPY_F32, 2, plane, 34, -1, 1);
    write_random("mask.npy", TA_NPY_BOOL, 4, full, 35, 0, 1);
    write_random("mask_u8.npy", TA_NPY_U8, 3, per_h, 36, 0, 1);
    const char *const sets[][6] = {
        {"--bias", tu_path("bias.npy"), NULL},
        {"--bias", tu_path("bias_shared.npy"), "--causal", NULL},
        {"--bias", tu_path("bias_f16.npy"), NULL},
        {"--bias", tu_path("bias_2d.npy"), NULL},
        {"--mask", tu_path("mask.npy"), NULL},
        {"--mask", tu_path("mask_u8.npy"), "--causal", NULL},
    };
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        run_and_check(sets[s], 1, 1e-3);
}

Test(cli, run_then_check_varlen) {
    write_varlen_qkv(TA_NPY_I32);
    const char *const plain[] = {"--cu-seqlens-q", tu_path("cu_q.npy"), "--cu-seqlens-k",
                                 tu_path("cu_k.npy"), NULL};
    run_and_check(plain, 1, 1e-3);
    ta_npy_array o, lse;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("o.npy"), &o, err, sizeof err), 0, "%s", err);
    cr_assert(o.ndim == 3 && o.shape[0] == 8 && o.shape[1] == H && o.shape[2] == DV);
    ta_npy_free(&o);
    cr_assert_eq(ta_npy_read(tu_path("lse.npy"), &lse, err, sizeof err), 0, "%s", err);
    cr_assert(lse.ndim == 2 && lse.shape[0] == H && lse.shape[1] == 8);
    ta_npy_free(&lse);

    /* int64 offsets (NumPy's default integer) and masks. */
    write_varlen_qkv(TA_NPY_I64);
    const char *const causal[] = {"--cu-seqlens-q",
                                  tu_path("cu_q.npy"),
                                  "--cu-seqlens-k",
                                  tu_path("cu_k.npy"),
                                  "--causal",
                                  "--softcap",
                                  "3",
                                  NULL};
    run_and_check(causal, 1, 1e-3);
}

Test(cli, run_then_check_float16) {
    write_qkv(TA_NPY_F16, 5);
    run_and_check(NULL, 1, 5e-2);
    ta_npy_array o;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("o.npy"), &o, err, sizeof err), 0, "%s", err);
    cr_assert_eq(o.dtype, TA_NPY_F16);
    ta_npy_free(&o);
    const char *const causal[] = {"--causal", NULL};
    run_and_check(causal, 0, 5e-2);
}

/* Rows that see no key: LSE -inf must match exactly. */
Test(cli, check_matches_minus_infinity_exactly) {
    /* Bottom-right causal with Sq = 6 > Sk = 3: rows 0..2 see no key. */
    const int64_t q[4] = {1, 6, 2, 8}, kv[4] = {1, 3, 1, 8};
    write_random("q.npy", TA_NPY_F32, 4, q, 41, -1, 1);
    write_random("k.npy", TA_NPY_F32, 4, kv, 42, -1, 1);
    write_random("v.npy", TA_NPY_F32, 4, kv, 43, -1, 1);
    const char *const causal[] = {"--causal", NULL};
    run_and_check(causal, 1, 1e-3);
    ta_npy_array lse;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("lse.npy"), &lse, err, sizeof err), 0, "%s", err);
    cr_assert(isinf(((float *)lse.data)[0]) && ((float *)lse.data)[0] < 0);
    cr_assert(isfinite(((float *)lse.data)[5]));
    ta_npy_free(&lse);

    tu_arglist check = {0};
    tu_add(&check, "check", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
           tu_path("v.npy"), "--o", tu_path("o.npy"), "--lse", tu_path("lse_bad.npy"), "--causal",
           "--atol", "1", NULL);
    /* -inf replaced by a finite value, and a finite value by -inf: both fail
     * even under a huge tolerance. */
    perturb("lse.npy", "lse_bad.npy", 0, 0, 1, -30.0);
    char *out, *err_text;
    cr_assert_eq(tu_run_args(&check, &out, &err_text), 1, "%s", out);
    free(out);
    free(err_text);
    perturb("lse.npy", "lse_bad.npy", 5, 0, 1, -INFINITY);
    cr_assert_eq(tu_run_args(&check, &out, &err_text), 1, "%s", out);
    free(out);
    free(err_text);
    /* NaN in O fails whatever the tolerance. */
    perturb("o.npy", "o_bad.npy", 40, 0, 1, NAN);
    check.v[8] = tu_path("o_bad.npy");
    check.v[10] = tu_path("lse.npy");
    cr_assert_eq(tu_run_args(&check, &out, &err_text), 1, "%s", out);
    cr_assert_not_null(strstr(out, "NaN"), "%s", out);
    free(out);
    free(err_text);
}

Test(cli, check_tolerances_and_dtypes) {
    write_qkv(TA_NPY_F32, 6);
    const char *const none[] = {NULL};
    run_and_check(none, 0, 1e-3);
    char *out, *err;
    /* A large error passes under a large tolerance. */
    perturb("o.npy", "o_bad.npy", 7, 0.5, 0, 0);
    tu_arglist check = {0};
    tu_add(&check, "check", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
           tu_path("v.npy"), "--o", tu_path("o_bad.npy"), "--atol", "1", NULL);
    cr_assert_eq(tu_run_args(&check, &out, &err), 0, "%s%s", out, err);
    free(out);
    free(err);
    check.v[--check.n] = NULL; /* drop "1" and "--atol" */
    check.v[--check.n] = NULL;
    tu_add(&check, "--rtol=0", "--atol=0.1", NULL);
    cr_assert_eq(tu_run_args(&check, &out, &err), 1, "%s%s", out, err);
    cr_assert_not_null(strstr(out, "worst [b="), "%s", out);
    free(out);
    free(err);

    /* O stored as float64 (computed in float32): float32 tolerances apply. */
    ta_npy_array o;
    char msg[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("o.npy"), &o, msg, sizeof msg), 0);
    cr_assert_eq(ta_npy_convert(&o, TA_NPY_F64, "o", msg, sizeof msg), 0);
    cr_assert_eq(
        ta_npy_write(tu_path("o64.npy"), o.dtype, o.ndim, o.shape, o.data, msg, sizeof msg), 0);
    ta_npy_free(&o);
    tu_arglist check64 = {0};
    tu_add(&check64, "check", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
           tu_path("v.npy"), "--o", tu_path("o64.npy"), NULL);
    cr_assert_eq(tu_run_args(&check64, &out, &err), 0, "%s%s", out, err);
    free(out);
    free(err);

    /* float64 inputs (the same values) are accepted by check; with a float64
     * O too, the float64 tolerances apply, which an O computed in float32
     * fails, unless told otherwise. */
    const int64_t q[4] = {B, SQ, H, D}, k[4] = {B, SK, HK, D}, v[4] = {B, SK, HK, DV};
    write_random("q.npy", TA_NPY_F64, 4, q, 6, -2, 2);
    write_random("k.npy", TA_NPY_F64, 4, k, 7, -2, 2);
    write_random("v.npy", TA_NPY_F64, 4, v, 8, -1, 1);
    cr_assert_eq(tu_run_args(&check64, &out, &err), 1, "%s%s", out, err);
    cr_assert_not_null(strstr(out, "atol 1e-10"), "%s", out);
    free(out);
    free(err);
    tu_add(&check64, "--atol", "1e-5", "--rtol", "1e-5", NULL);
    cr_assert_eq(tu_run_args(&check64, &out, &err), 0, "%s%s", out, err);
    free(out);
    free(err);
}

/* ------------------------------------------------------------------------ */
/* run and check share the code that turns flags and files into arguments,
 * so check passing cannot catch a wrong stride or a swapped causal mode:
 * compare run with a plain restatement of tileattn.h's formula instead. */

typedef struct naive_options {
    int causal; /* 0 none, 1 bottom right, 2 top left */
    int64_t window_left, window_right;
    double softcap, scale;
    const float *alibi;        /* [B, H] */
    const float *bias;         /* [1, H, Sq, Sk]: broadcast over the batch */
    const unsigned char *mask; /* [B, 1, Sq, Sk]: broadcast over heads */
    const float *sinks;        /* [H] */
} naive_options;

static void naive_attention(const float *q, const float *k, const float *v,
                            const naive_options *opt, double *o, double *lse) {
    const int64_t off = opt->causal == 2 ? 0 : SK - SQ;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < SQ; i++) {
                const int64_t kh = h / (H / HK);
                double s[SK], m = -INFINITY;
                int seen[SK];
                for (int64_t j = 0; j < SK; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)q[((b * SQ + i) * H + h) * D + d] *
                               k[((b * SK + j) * HK + kh) * D + d];
                    double x = opt->scale * dot;
                    if (opt->softcap > 0) x = opt->softcap * tanh(x / opt->softcap);
                    if (opt->alibi) x -= opt->alibi[b * H + h] * fabs((double)(i + off - j));
                    if (opt->bias) x += opt->bias[(h * SQ + i) * SK + j];
                    int64_t right = opt->causal ? 0 : opt->window_right;
                    seen[j] = (opt->window_left < 0 || j >= i + off - opt->window_left) &&
                              (right < 0 || j <= i + off + right) &&
                              (!opt->mask || opt->mask[(b * SQ + i) * SK + j]);
                    s[j] = x;
                    if (seen[j] && x > m) m = x;
                }
                if (opt->sinks && opt->sinks[h] > m) m = opt->sinks[h];
                double sum = opt->sinks && isfinite(m) ? exp(opt->sinks[h] - m) : 0;
                double acc[DV] = {0};
                for (int64_t j = 0; j < SK; j++) {
                    if (!seen[j]) continue;
                    double p = exp(s[j] - m);
                    sum += p;
                    for (int64_t d = 0; d < DV; d++)
                        acc[d] += p * v[((b * SK + j) * HK + kh) * DV + d];
                }
                for (int64_t d = 0; d < DV; d++)
                    o[((b * SQ + i) * H + h) * DV + d] = sum > 0 ? acc[d] / sum : 0;
                lse[(b * H + h) * SQ + i] = sum > 0 ? log(sum) + m : -INFINITY;
            }
}

static float *read_floats(const char *name, ta_npy_array *a) {
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path(name), a, err, sizeof err), 0, "%s", err);
    cr_assert(a->dtype == TA_NPY_F32);
    return a->data;
}

Test(cli, run_matches_a_plain_restatement) {
    write_qkv(TA_NPY_F32, 51);
    const int64_t bh[2] = {B, H}, h1[1] = {H};
    const int64_t bias_shape[4] = {1, H, SQ, SK}, mask_shape[4] = {B, 1, SQ, SK};
    write_random("alibi.npy", TA_NPY_F32, 2, bh, 52, 0, 0.5f);
    write_random("bias.npy", TA_NPY_F32, 4, bias_shape, 53, -1, 1);
    write_random("mask.npy", TA_NPY_BOOL, 4, mask_shape, 54, 0, 1);
    write_random("sinks.npy", TA_NPY_F32, 1, h1, 55, -1, 2);
    ta_npy_array qa, ka, va, alibi, bias, mask, sinks;
    const float *q = read_floats("q.npy", &qa), *k = read_floats("k.npy", &ka),
                *v = read_floats("v.npy", &va);
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path("mask.npy"), &mask, err, sizeof err), 0);
    read_floats("alibi.npy", &alibi);
    read_floats("bias.npy", &bias);
    read_floats("sinks.npy", &sinks);

    const double default_scale = 1.0 / sqrt((double)D);
    struct {
        const char *flags[8];
        naive_options opt;
    } cases[] = {
        {{NULL}, {0, -1, -1, 0, default_scale, NULL, NULL, NULL, NULL}},
        {{"--causal", NULL}, {1, -1, -1, 0, default_scale, NULL, NULL, NULL, NULL}},
        {{"--causal-top-left", NULL}, {2, -1, -1, 0, default_scale, NULL, NULL, NULL, NULL}},
        {{"--window", "2,1", NULL}, {0, 2, 1, 0, default_scale, NULL, NULL, NULL, NULL}},
        {{"--softcap", "3", "--scale", "0.25", NULL}, {0, -1, -1, 3, 0.25, NULL, NULL, NULL, NULL}},
        {{"--alibi", tu_path("alibi.npy"), "--causal-top-left", NULL},
         {2, -1, -1, 0, default_scale, alibi.data, NULL, NULL, NULL}},
        {{"--bias", tu_path("bias.npy"), NULL},
         {0, -1, -1, 0, default_scale, NULL, bias.data, NULL, NULL}},
        {{"--mask", tu_path("mask.npy"), "--sinks", tu_path("sinks.npy"), NULL},
         {0, -1, -1, 0, default_scale, NULL, NULL, mask.data, sinks.data}},
    };
    static double o_want[B * SQ * H * DV], lse_want[B * H * SQ];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tu_arglist run = {0};
        tu_add(&run, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
               tu_path("v.npy"), "--out", tu_path("o.npy"), "--lse", tu_path("lse.npy"), NULL);
        tu_add_list(&run, cases[c].flags);
        char *out, *err_text;
        cr_assert_eq(tu_run_args(&run, &out, &err_text), 0, "%s", err_text);
        free(out);
        free(err_text);
        naive_attention(q, k, v, &cases[c].opt, o_want, lse_want);
        ta_npy_array o, lse;
        const float *o_got = read_floats("o.npy", &o), *lse_got = read_floats("lse.npy", &lse);
        for (size_t i = 0; i < o.count; i++)
            cr_assert(fabs(o_got[i] - o_want[i]) <= 1e-5, "case %zu: O[%zu] = %g, want %g", c, i,
                      o_got[i], o_want[i]);
        for (size_t i = 0; i < lse.count; i++) {
            if (isinf(lse_want[i]))
                cr_assert(lse_got[i] == lse_want[i], "case %zu: LSE[%zu] = %g, want -inf", c, i,
                          lse_got[i]);
            else
                cr_assert(fabs(lse_got[i] - lse_want[i]) <= 1e-5,
                          "case %zu: LSE[%zu] = %g, want %g", c, i, lse_got[i], lse_want[i]);
        }
        ta_npy_free(&o);
        ta_npy_free(&lse);
    }
    ta_npy_free(&qa);
    ta_npy_free(&ka);
    ta_npy_free(&va);
    ta_npy_free(&alibi);
    ta_npy_free(&bias);
    ta_npy_free(&mask);
    ta_npy_free(&sinks);
}

/* Varlen is B separate problems packed together: each sequence run on its
 * own gives the same rows. */
Test(cli, varlen_equals_sequences_run_separately) {
    write_varlen_qkv(TA_NPY_I32);
    tu_arglist run = {0};
    tu_add(&run, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy"),
           "--out", tu_path("o.npy"), "--cu-seqlens-q", tu_path("cu_q.npy"), "--cu-seqlens-k",
           tu_path("cu_k.npy"), "--causal", NULL);
    char *out, *err_text;
    cr_assert_eq(tu_run_args(&run, &out, &err_text), 0, "%s", err_text);
    free(out);
    free(err_text);
    ta_npy_array qa, ka, va, oa;
    const float *q = read_floats("q.npy", &qa), *k = read_floats("k.npy", &ka),
                *v = read_floats("v.npy", &va), *o = read_floats("o.npy", &oa);
    char err[TA_NPY_ERR_LEN];
    for (int b = 0; b < 3; b++) {
        const int64_t sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b];
        if (sq == 0) continue;
        const int64_t qs[4] = {1, sq, H, D}, ks[4] = {1, sk, HK, D}, vs[4] = {1, sk, HK, DV};
        cr_assert_eq(ta_npy_write(tu_path("qb.npy"), TA_NPY_F32, 4, qs, q + cu_q[b] * H * D, err,
                                  sizeof err),
                     0);
        cr_assert_eq(ta_npy_write(tu_path("kb.npy"), TA_NPY_F32, 4, ks, k + cu_k[b] * HK * D, err,
                                  sizeof err),
                     0);
        cr_assert_eq(ta_npy_write(tu_path("vb.npy"), TA_NPY_F32, 4, vs, v + cu_k[b] * HK * DV, err,
                                  sizeof err),
                     0);
        tu_arglist one = {0};
        tu_add(&one, "run", "--q", tu_path("qb.npy"), "--k", tu_path("kb.npy"), "--v",
               tu_path("vb.npy"), "--out", tu_path("ob.npy"), "--causal", NULL);
        cr_assert_eq(tu_run_args(&one, &out, &err_text), 0, "%s", err_text);
        free(out);
        free(err_text);
        ta_npy_array ob;
        const float *o_one = read_floats("ob.npy", &ob);
        for (size_t i = 0; i < ob.count; i++)
            cr_assert(fabsf(o_one[i] - o[cu_q[b] * H * DV + (int64_t)i]) <= 1e-6f,
                      "sequence %d element %zu", b, i);
        ta_npy_free(&ob);
    }
    ta_npy_free(&qa);
    ta_npy_free(&ka);
    ta_npy_free(&va);
    ta_npy_free(&oa);
}

/* ------------------------------------------------------------------------ */
/* Usage. */

Test(cli, help_and_version) {
    static const char *const ok_cases[][4] = {
        {"--help", NULL},          {"help", NULL},           {"-h", NULL},
        {"--version", NULL},       {"help", "run", NULL},    {"run", "--help", NULL},
        {"check", "--help", NULL}, {"info", "--help", NULL},
    };
    for (size_t c = 0; c < sizeof ok_cases / sizeof ok_cases[0]; c++) {
        tu_arglist a = {0};
        tu_add_list(&a, ok_cases[c]);
        char *out, *err;
        cr_assert_eq(tu_run_args(&a, &out, &err), 0, "%s: %s", ok_cases[c][0], err);
        cr_assert(strlen(out) > 0);
        free(out);
        free(err);
    }
    tu_arglist none = {0};
    char *out, *err;
    cr_assert_eq(tu_run_args(&none, &out, &err), 2);
    cr_assert_not_null(strstr(err, "Usage"), "%s", err);
    free(out);
    free(err);
}

Test(cli, info_describes_machine_and_plan) {
    tu_arglist a = {0};
    tu_add(&a, "info", "--seqlen-q", "256", "--head-dim", "64", "--causal", NULL);
    char *out, *err;
    cr_assert_eq(tu_run_args(&a, &out, &err), 0, "%s", err);
    cr_assert_not_null(strstr(out, "instruction set"), "%s", out);
    cr_assert_not_null(strstr(out, "Sk=256"), "--seqlen-q carries Sk: %s", out);
    cr_assert_not_null(strstr(out, "Dv=64"), "--head-dim carries Dv: %s", out);
    free(out);
    free(err);
}

/* bench --ukernels runs every table this CPU has (each kernel once more
 * under the sanitizers) and prints a row for the selected one; a bad flag
 * is a usage error. */
Test(cli, bench_ukernels_lists_the_tables) {
    tu_arglist a = {0};
    tu_add(&a, "info", NULL);
    char *out, *err;
    cr_assert_eq(tu_run_args(&a, &out, &err), 0, "%s", err);
    const char *isa_line = strstr(out, "microkernels: ");
    cr_assert_not_null(isa_line, "%s", out);
    char isa[32] = {0};
    cr_assert_eq(sscanf(isa_line, "microkernels: %31s", isa), 1);
    free(out);
    free(err);

    tu_arglist b = {0};
    tu_add(&b, "bench", "--ukernels", "--head-dim", "64", "--repeats", "1", NULL);
    cr_assert_eq(tu_run_args(&b, &out, &err), 0, "%s", err);
    cr_assert_not_null(strstr(out, "D = Dv = 64"), "%s", out);
    char row[48];
    snprintf(row, sizeof row, "\n%s ", isa);
    cr_assert_not_null(strstr(out, row), "no row for the selected table %s:\n%s", isa, out);
    cr_assert_not_null(strstr(out, "\nscalar "), "no row for the portable table:\n%s", out);
    free(out);
    free(err);

    tu_arglist c = {0};
    tu_add(&c, "bench", "--ukernels", "--rows", "0", NULL);
    cr_assert_eq(tu_run_args(&c, &out, &err), 2, "%s", out);
    cr_assert_not_null(strstr(err, "--rows"), "%s", err);
    free(out);
    free(err);
}

/* bench --decode measures the layout asked for (PyTorch's heads-outer
 * one with bhsd) and refuses any other. */
Test(cli, bench_decode_layouts) {
    const char *layouts[2] = {"bshd", "bhsd"}, *said[2] = {"[.., S, Hk, D]", "[.., Hk, S, D]"};
    char *out, *err;
    for (int i = 0; i < 2; i++) {
        tu_arglist a = {0};
        tu_add(&a, "bench", "--decode", "--seqlen", "256", "--heads", "2", "--heads-kv", "1",
               "--head-dim", "16", "--repeats", "1", "--stream-mib", "64", "--layout", layouts[i],
               NULL);
        cr_assert_eq(tu_run_args(&a, &out, &err), 0, "%s", err);
        cr_assert_not_null(strstr(out, said[i]), "%s", out);
        cr_assert_not_null(strstr(out, "paged 16"), "%s", out);
        free(out);
        free(err);
    }
    tu_arglist b = {0};
    tu_add(&b, "bench", "--decode", "--layout", "sbhd", NULL);
    cr_assert_eq(tu_run_args(&b, &out, &err), 2, "%s", out);
    cr_assert_not_null(strstr(err, "--layout"), "%s", err);
    free(out);
    free(err);
}

/* bench --decode --window times a sliding window (the header says so) and
 * refuses one longer than the cache. */
Test(cli, bench_decode_window) {
    char *out, *err;
    tu_arglist a = {0};
    tu_add(&a, "bench", "--decode", "--seqlen", "512", "--heads", "4", "--heads-kv", "1",
           "--head-dim", "16", "--repeats", "1", "--stream-mib", "64", "--window", "300", NULL);
    cr_assert_eq(tu_run_args(&a, &out, &err), 0, "%s", err);
    cr_assert_not_null(strstr(out, "sliding window of the last 300"), "%s", out);
    cr_assert_not_null(strstr(out, "paged 128"), "%s", out);
    free(out);
    free(err);
    tu_arglist b = {0};
    tu_add(&b, "bench", "--decode", "--seqlen", "512", "--window", "513", NULL);
    cr_assert_eq(tu_run_args(&b, &out, &err), 2, "%s", out);
    cr_assert_not_null(strstr(err, "--window"), "%s", err);
    free(out);
    free(err);
}

/* ------------------------------------------------------------------------ */
/* Bad input: exit 2, one line, nothing written. */

/* Runs args twice: with no output files (none may appear), then with
 * existing ones (they must not change). */
static void expect_usage_error(const char *what, const char *const *args,
                               const char *message_piece) {
    cr_assert_not(tu_exists(tu_path("o.npy")), "%s: o.npy exists before", what);
    int entries = tu_count_entries();
    tu_arglist a = {0};
    tu_add_list(&a, args);
    char *out, *err;
    int status = tu_run_args(&a, &out, &err);
    cr_assert_eq(status, 2, "%s: exit %d, stderr: %s", what, status, err);
    cr_assert_eq(tu_count_lines(err), 1, "%s: stderr is not one line: '%s'", what, err);
    cr_assert_eq(strncmp(err, "tileattn", 8), 0, "%s: '%s'", what, err);
    if (message_piece != NULL)
        cr_assert_not_null(strstr(err, message_piece), "%s: '%s' lacks '%s'", what, err,
                           message_piece);
    cr_assert_str_empty(out, "%s: wrote to stdout: %s", what, out);
    cr_assert_not(tu_exists(tu_path("o.npy")), "%s: created o.npy", what);
    cr_assert_not(tu_exists(tu_path("lse.npy")), "%s: created lse.npy", what);
    cr_assert_eq(tu_count_entries(), entries, "%s: files appeared", what);
    free(out);
    free(err);

    static const char o_bytes[] = "precious O: not to be touched";
    static const char lse_bytes[] = "precious LSE";
    cr_assert_eq(tu_write_file(tu_path("o.npy"), o_bytes, sizeof o_bytes), 0);
    cr_assert_eq(tu_write_file(tu_path("lse.npy"), lse_bytes, sizeof lse_bytes), 0);
    status = tu_run_args(&a, &out, &err);
    cr_assert_eq(status, 2, "%s (existing outputs): exit %d, %s", what, status, err);
    tu_expect_file_equals(tu_path("o.npy"), o_bytes, sizeof o_bytes);
    tu_expect_file_equals(tu_path("lse.npy"), lse_bytes, sizeof lse_bytes);
    cr_assert_not(tu_has_temp_leftovers(), "%s: temporary files left", what);
    cr_assert_eq(tu_count_entries(), entries + 2, "%s: files appeared", what);
    free(out);
    free(err);
    remove(tu_path("o.npy"));
    remove(tu_path("lse.npy"));
}

/* "run" with the standard inputs, then `extra`. */
static void expect_run_error(const char *what, const char *const *extra,
                             const char *message_piece) {
    tu_arglist a = {0};
    tu_add(&a, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy"),
           "--out", tu_path("o.npy"), "--lse", tu_path("lse.npy"), NULL);
    tu_add_list(&a, extra);
    expect_usage_error(what, a.v, message_piece);
}

/* run --device <device> --causal, then check --causal (the CPU reference):
 * returns run's exit status; when it is 0, check must pass. */
static int run_on_device_then_check(const char *device) {
    tu_arglist run = {0};
    tu_add(&run, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy"),
           "--out", tu_path("o.npy"), "--lse", tu_path("lse.npy"), "--device", device, "--causal",
           NULL);
    char *out, *err;
    int status = tu_run_args(&run, &out, &err);
    free(out);
    free(err);
    if (status != 0) return status;
    tu_arglist check = {0};
    tu_add(&check, "check", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
           tu_path("v.npy"), "--o", tu_path("o.npy"), "--lse", tu_path("lse.npy"), "--causal",
           NULL);
    int checked = tu_run_args(&check, &out, &err);
    cr_assert_eq(checked, 0, "--device %s: check failed (%d):\n%s%s", device, checked, out, err);
    free(out);
    free(err);
    remove(tu_path("o.npy"));
    remove(tu_path("lse.npy"));
    return 0;
}

/* --device cuda: where the build has the CUDA backend and a GPU, the output
 * passes check against the CPU reference; anywhere else it is a one-line
 * error that writes nothing. */
Test(cli, run_device) {
    /* What the GPU takes: float16, Dv = D, a multiple of 8. */
    const int64_t q[4] = {B, SQ, H, D}, k[4] = {B, SK, HK, D};
    write_random("q.npy", TA_NPY_F16, 4, q, 6, -2, 2);
    write_random("k.npy", TA_NPY_F16, 4, k, 7, -2, 2);
    write_random("v.npy", TA_NPY_F16, 4, k, 8, -1, 1);
    cr_assert_eq(run_on_device_then_check("cpu"), 0, "--device cpu failed");
    const char *const tpu[] = {"--device", "tpu", NULL};
    expect_run_error("--device tpu", tpu, "--device");
    if (run_on_device_then_check("cuda") == 0) {
        cr_log_info("--device cuda ran here and passed check");
    } else {
        const char *const cuda[] = {"--device=cuda", NULL};
        expect_run_error("--device cuda without a GPU", cuda, "cuda");
    }
}

Test(cli, bad_flags_and_numbers) {
    write_qkv(TA_NPY_F32, 9);
    struct {
        const char *extra[6];
        const char *piece;
    } cases[] = {
        {{"--frobnicate", NULL}, "unknown argument '--frobnicate'"},
        {{"stray", NULL}, "unknown argument 'stray'"},
        {{"--threads", "abc", NULL}, "not an integer"},
        {{"--threads", "1.5", NULL}, "not an integer"},
        {{"--threads", " 4", NULL}, "not an integer"},
        {{"--threads", "-1", NULL}, "out of range"},
        {{"--threads", "99999999999999999999", NULL}, "out of range"},
        {{"--threads", NULL}, "needs a value"},
        {{"--softcap", "nan", NULL}, "finite"},
        {{"--softcap", "inf", NULL}, "finite"},
        {{"--softcap", "1e999", NULL}, "finite"},
        {{"--softcap", "-1", NULL}, ">= 0"},
        {{"--softcap", "2x", NULL}, "not a number"},
        {{"--scale", "0", NULL}, "must be > 0"},
        {{"--scale", "-1", NULL}, "must be > 0"},
        {{"--scale", "1e-50", NULL}, "out of float32 range"},
        {{"--scale=", NULL}, "not a number"},
        {{"--window", "1", NULL}, "want L,R"},
        {{"--window", "-2,0", NULL}, "out of range"},
        {{"--window", "1,2,3", NULL}, "want L,R"},
        {{"--window", "a,1", NULL}, "not an integer"},
        {{"--window", ",1", NULL}, "want L,R"},
        {{"--causal", "--causal-top-left", NULL}, "exclude"},
        {{"--causal-top-left", "--causal", NULL}, "exclude"},
        {{"--bias", "b.npy", "--mask", "m.npy", NULL}, "exclude"},
        {{"--mask", "m.npy", "--bias", "b.npy", NULL}, "exclude"},
        {{"--alibi", "--causal", NULL}, "needs a file name"},
        {{"--batch", "2", NULL}, "takes the shapes from the .npy files"},
        {{"--dtype", "f16", NULL}, "takes the shapes from the .npy files"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        expect_run_error(cases[c].extra[0], cases[c].extra, cases[c].piece);

    const char *const unknown_command[] = {"frobnicate", NULL};
    expect_usage_error("unknown command", unknown_command, "unknown command 'frobnicate'");
    const char *const unknown_option[] = {"--frobnicate", NULL};
    expect_usage_error("unknown option", unknown_option, "unknown option");
    /* run's inputs, then what each case adds. */
#define RUN_QKV "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy")
    const char *const missing_out[] = {RUN_QKV, NULL};
    expect_usage_error("no --out", missing_out, "required");
    const char *const same_out[] = {RUN_QKV, "--out",          tu_path("o.npy"),
                                    "--lse", tu_path("o.npy"), NULL};
    expect_usage_error("--out = --lse", same_out, "same file");
    /* The same file spelled two ways, and an output over an input. */
    const char *const same_out_spelled[] = {
        RUN_QKV, "--out", tu_path("o.npy"), "--lse", tu_path("./o.npy"), NULL};
    expect_usage_error("--out = ./--lse", same_out_spelled, "same file");
    const char *const out_is_input[] = {RUN_QKV, "--out", tu_path("./k.npy"), NULL};
    expect_usage_error("--out = --k", out_is_input, "input file of --k");
#undef RUN_QKV
    const char *const check_bad[] = {"check", "--q", tu_path("q.npy"), "--atol", "-1", NULL};
    expect_usage_error("check --atol -1", check_bad, ">= 0");
    const char *const info_bad[] = {"info", "--head-dim", "100000", NULL};
    expect_usage_error("info --head-dim 100000", info_bad, "out of range");
}

Test(cli, bad_files_and_shapes) {
    write_qkv(TA_NPY_F32, 10);
    cr_assert_eq(tu_write_file(tu_path("garbage.npy"), "this is not numpy", 17), 0);
    /* A valid header whose data is cut short. */
    {
        ta_npy_array k;
        char err[TA_NPY_ERR_LEN];
        cr_assert_eq(ta_npy_read(tu_path("k.npy"), &k, err, sizeof err), 0);
        size_t len;
        char *bytes = tu_read_file(tu_path("k.npy"), &len);
        cr_assert_eq(tu_write_file(tu_path("k_cut.npy"), bytes, len - 7), 0);
        free(bytes);
        ta_npy_free(&k);
    }
    const int64_t k_d8[4] = {B, SK, HK, 8}, v_s6[4] = {B, 6, HK, DV}, k_h3[4] = {B, SK, 3, D};
    const int64_t k_b3[4] = {3, SK, HK, D}, q3[3] = {B * SQ, H, D};
    const int64_t bias_bad[4] = {B, H, SQ, SK + 1}, bias_h3[3] = {3, SQ, SK};
    const int64_t alibi_bad[1] = {H + 1}, sinks_bad[2] = {1, H};
    write_random("k_d8.npy", TA_NPY_F32, 4, k_d8, 1, -1, 1);
    write_random("v_s6.npy", TA_NPY_F32, 4, v_s6, 1, -1, 1);
    write_random("k_h3.npy", TA_NPY_F32, 4, k_h3, 1, -1, 1);
    write_random("k_b3.npy", TA_NPY_F32, 4, k_b3, 1, -1, 1);
    write_random("q3.npy", TA_NPY_F32, 3, q3, 1, -1, 1);
    const int64_t q_empty[4] = {B, 0, H, D};
    write_random("q_empty.npy", TA_NPY_F32, 4, q_empty, 1, -1, 1);
    write_random("bias_bad.npy", TA_NPY_F32, 4, bias_bad, 1, -1, 1);
    write_random("bias_h3.npy", TA_NPY_F32, 3, bias_h3, 1, -1, 1);
    write_random("mask_f32.npy", TA_NPY_F32, 2, bias_bad + 2, 1, -1, 1);
    write_random("alibi_bad.npy", TA_NPY_F32, 1, alibi_bad, 1, 0, 1);
    write_random("sinks_bad.npy", TA_NPY_F32, 2, sinks_bad, 1, 0, 1);
    const int64_t kf16[4] = {B, SK, HK, D}, qf64[4] = {B, SQ, H, D};
    write_random("k_f16.npy", TA_NPY_F16, 4, kf16, 1, -1, 1);
    write_random("q_f64.npy", TA_NPY_F64, 4, qf64, 1, -1, 1);
    write_ints("q_i32.npy", TA_NPY_I32, 4, cu_q);
    const int64_t cu_bad_end[3] = {0, 5, 9}, cu_down[3] = {0, 6, 5}, cu_b3[4] = {0, 1, 2, 3};
    write_ints("cu_q_end.npy", TA_NPY_I32, 3, cu_bad_end);
    write_ints("cu_down.npy", TA_NPY_I32, 3, cu_down);
    write_ints("cu_b3.npy", TA_NPY_I64, 4, cu_b3);
    const int64_t cu_q_ok[3] = {0, 5, 10}, cu_k_ok[3] = {0, 7, 14};
    write_ints("cu_q_ok.npy", TA_NPY_I32, 3, cu_q_ok);
    write_ints("cu_k_ok.npy", TA_NPY_I32, 3, cu_k_ok);
    const int64_t k3[3] = {14, HK, D}, v3[3] = {14, HK, DV};
    write_random("k3.npy", TA_NPY_F32, 3, k3, 1, -1, 1);
    write_random("v3.npy", TA_NPY_F32, 3, v3, 1, -1, 1);

    const char *q = tu_path("q.npy"), *k = tu_path("k.npy"), *v = tu_path("v.npy");
    const char *o = tu_path("o.npy"), *lse = tu_path("lse.npy");
    struct {
        const char *what;
        const char *args[16];
        const char *piece;
    } cases[] = {
        {"missing Q", {"--q", tu_path("missing.npy"), "--k", k, "--v", v}, "No such file"},
        {"garbage Q", {"--q", tu_path("garbage.npy"), "--k", k, "--v", v}, "not a .npy file"},
        {"truncated K", {"--q", q, "--k", tu_path("k_cut.npy"), "--v", v}, "truncated data"},
        {"K head_dim", {"--q", q, "--k", tu_path("k_d8.npy"), "--v", v}, "head_dim 8"},
        {"V seqlen", {"--q", q, "--k", k, "--v", tu_path("v_s6.npy")}, "does not match"},
        {"H % Hk", {"--q", q, "--k", tu_path("k_h3.npy"), "--v", tu_path("k_h3.npy")}, "multiple"},
        {"K batch", {"--q", q, "--k", tu_path("k_b3.npy"), "--v", v}, "batch 3"},
        {"empty Q", {"--q", tu_path("q_empty.npy"), "--k", k, "--v", v}, "empty axis"},
        {"3-D Q without varlen", {"--q", tu_path("q3.npy"), "--k", k, "--v", v}, "4 dimensions"},
        {"K float16 with Q float32", {"--q", q, "--k", tu_path("k_f16.npy"), "--v", v}, "differs"},
        {"Q float64 in run", {"--q", tu_path("q_f64.npy"), "--k", k, "--v", v}, "not supported"},
        {"Q int32", {"--q", tu_path("q_i32.npy"), "--k", k, "--v", v}, "not supported"},
        {"bias shape",
         {"--q", q, "--k", k, "--v", v, "--bias", tu_path("bias_bad.npy")},
         "want shape"},
        {"bias heads",
         {"--q", q, "--k", k, "--v", v, "--bias", tu_path("bias_h3.npy")},
         "want shape"},
        {"mask float",
         {"--q", q, "--k", k, "--v", v, "--mask", tu_path("mask_f32.npy")},
         "bool or uint8"},
        {"bias bool",
         {"--q", q, "--k", k, "--v", v, "--bias", tu_path("q_i32.npy")},
         "float32 or float16"},
        {"alibi shape",
         {"--q", q, "--k", k, "--v", v, "--alibi", tu_path("alibi_bad.npy")},
         "slopes"},
        {"sinks shape",
         {"--q", q, "--k", k, "--v", v, "--sinks", tu_path("sinks_bad.npy")},
         "one logit per head"},
        {"one cu flag",
         {"--q", q, "--k", k, "--v", v, "--cu-seqlens-q", tu_path("cu_b3.npy")},
         "go together"},
        {"cu with 4-D Q",
         {"--q", q, "--k", k, "--v", v, "--cu-seqlens-q", tu_path("cu_q_ok.npy"), "--cu-seqlens-k",
          tu_path("cu_k_ok.npy")},
         "3 dimensions"},
        {"cu end",
         {"--q", tu_path("q3.npy"), "--k", tu_path("k3.npy"), "--v", tu_path("v3.npy"),
          "--cu-seqlens-q", tu_path("cu_q_end.npy"), "--cu-seqlens-k", tu_path("cu_k_ok.npy")},
         "10 tokens, but cu_seqlens_q ends at 9"},
        {"bias with varlen",
         {"--q", tu_path("q3.npy"), "--k", tu_path("k3.npy"), "--v", tu_path("v3.npy"),
          "--cu-seqlens-q", tu_path("cu_q_ok.npy"), "--cu-seqlens-k", tu_path("cu_k_ok.npy"),
          "--bias", tu_path("bias_bad.npy")},
         "not supported with --cu-seqlens"},
        {"cu decreasing",
         {"--q", q, "--k", k, "--v", v, "--cu-seqlens-q", tu_path("cu_down.npy"), "--cu-seqlens-k",
          tu_path("cu_k_ok.npy")},
         "decrease"},
        {"cu lengths differ",
         {"--q", q, "--k", k, "--v", v, "--cu-seqlens-q", tu_path("cu_b3.npy"), "--cu-seqlens-k",
          tu_path("cu_k_ok.npy")},
         "both are [B+1]"},
        {"cu float",
         {"--q", q, "--k", k, "--v", v, "--cu-seqlens-q", q, "--cu-seqlens-k", q},
         "int32 or int64"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tu_arglist a = {0};
        tu_add(&a, "run", NULL);
        tu_add_list(&a, cases[c].args);
        tu_add(&a, "--out", o, "--lse", lse, NULL);
        expect_usage_error(cases[c].what, a.v, cases[c].piece);
    }

    /* check: bad O and LSE files. */
    const int64_t o_bad[4] = {B, SQ, H, DV + 1}, lse_bad[3] = {B, SQ, H};
    write_random("o_shape.npy", TA_NPY_F32, 4, o_bad, 1, -1, 1);
    write_random("lse_shape.npy", TA_NPY_F32, 3, lse_bad, 1, -1, 1);
    const int64_t o_ok[4] = {B, SQ, H, DV}, lse_ok[3] = {B, H, SQ};
    write_random("o_ok.npy", TA_NPY_F32, 4, o_ok, 1, -1, 1);
    write_random("lse_f16.npy", TA_NPY_F16, 3, lse_ok, 1, -1, 1);
    struct {
        const char *what;
        const char *o, *lse, *piece;
    } checks[] = {
        {"O shape", "o_shape.npy", NULL, "but Q and V make O"},
        {"O garbage", "garbage.npy", NULL, "bad magic"},
        {"O missing", "missing.npy", NULL, "No such file"},
        {"O int32", "q_i32.npy", NULL, "not supported"},
        {"LSE shape", "o_ok.npy", "lse_shape.npy", "but Q makes LSE"},
        {"LSE float16", "o_ok.npy", "lse_f16.npy", "not supported"},
    };
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
        tu_arglist a = {0};
        tu_add(&a, "check", "--q", q, "--k", k, "--v", v, "--o", tu_path(checks[c].o), NULL);
        if (checks[c].lse != NULL) tu_add(&a, "--lse", tu_path(checks[c].lse), NULL);
        expect_usage_error(checks[c].what, a.v, checks[c].piece);
    }
}

Test(cli, failed_writes_change_nothing) {
    write_qkv(TA_NPY_F32, 12);
    /* The output's directory does not exist. */
    const char *const no_dir[] = {"run",
                                  "--q",
                                  tu_path("q.npy"),
                                  "--k",
                                  tu_path("k.npy"),
                                  "--v",
                                  tu_path("v.npy"),
                                  "--out",
                                  tu_path("nodir/o.npy"),
                                  NULL};
    expect_usage_error("missing directory", no_dir, "temporary file");

    /* LSE's path is a directory: O must not be replaced either. */
    cr_assert_eq(mkdir(tu_path("lse_dir"), 0700), 0);
    const char *const lse_dir[] = {"run",
                                   "--q",
                                   tu_path("q.npy"),
                                   "--k",
                                   tu_path("k.npy"),
                                   "--v",
                                   tu_path("v.npy"),
                                   "--out",
                                   tu_path("o.npy"),
                                   "--lse",
                                   tu_path("lse_dir"),
                                   NULL};
    expect_usage_error("LSE is a directory", lse_dir, "is a directory");
}
