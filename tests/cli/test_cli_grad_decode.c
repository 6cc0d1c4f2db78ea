/*
 * tileattn grad, check-grad and decode end to end, spawned by path
 * ($TILEATTN_CLI), in the style of test_cli.c: grad then check-grad passes
 * with mask flags, GQA, float32 and float16, with and without a given O and
 * LSE; a perturbed gradient fails check-grad, which names it; grad agrees
 * with a plain restatement of the backward; decode gives the same bytes from
 * a contiguous cache and from a shuffled paged pool, agrees with `run` on
 * the equivalent (varlen) problem and appends new tokens where it should;
 * every bad input exits 2 with one line on stderr, creates no file, leaves
 * existing outputs byte for byte unchanged and leaves no temporary file.
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

static int kept_count;

static void setup(void) {
    cr_assert_not_null(tu_make_temp_dir(), "cannot make a temp dir");
    kept_count = 0;
}
static void teardown(void) {
    tu_remove_temp_dir();
}

TestSuite(cli_grad_decode, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------ */
/* Helpers. */

/* work/name that stays valid for the whole test: tu_path's ring is reused
 * after 512 calls, which a table of cases, each run twice, goes past. */
static const char *keep(const char *name) {
    static char kept[1024][512];
    cr_assert_lt(kept_count, 1024);
    const char *path = tu_path(name);
    cr_assert_lt(strlen(path), sizeof kept[0]);
    return strcpy(kept[kept_count++], path);
}

/* Runs a command that must succeed silently on stderr; returns its stdout. */
static char *run_ok(const char *what, const tu_arglist *a) {
    char *out = NULL, *err = NULL;
    int status = tu_run_args(a, &out, &err);
    cr_assert_eq(status, 0, "%s failed (%d): %s%s", what, status, out, err);
    cr_assert_str_empty(err, "%s wrote to stderr: %s", what, err);
    free(err);
    return out;
}

/* Writes count floats, stored as dtype (float32, float16 or float64). */
static void write_floats(const char *name, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                         const float *values) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= (size_t)shape[i];
    unsigned char *data = malloc(count * 8 + 1);
    cr_assert_not_null(data);
    for (size_t i = 0; i < count; i++) {
        if (dtype == TA_NPY_F32) {
            memcpy(data + 4 * i, &values[i], 4);
        } else if (dtype == TA_NPY_F16) {
            uint16_t h = ta_npy_float_to_half(values[i]);
            memcpy(data + 2 * i, &h, 2);
        } else {
            cr_assert_eq(dtype, TA_NPY_F64);
            double d = values[i];
            memcpy(data + 8 * i, &d, 8);
        }
    }
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_write(tu_path(name), dtype, ndim, shape, data, err, sizeof err), 0, "%s",
                 err);
    free(data);
}

static void fill_random(float *values, size_t count, uint64_t seed, float lo, float hi) {
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < count; i++)
        values[i] = tu_random_float(&state, lo, hi);
}

static void write_random(const char *name, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                         uint64_t seed, float lo, float hi) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= (size_t)shape[i];
    float *values = malloc(count * sizeof *values + 1);
    cr_assert_not_null(values);
    fill_random(values, count, seed, lo, hi);
    write_floats(name, dtype, ndim, shape, values);
    free(values);
}

/* Integers of any shape, stored as int32 or int64. */
static void write_ints(const char *name, ta_npy_dtype dtype, int ndim, const int64_t *shape,
                       const int64_t *values) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= (size_t)shape[i];
    int32_t narrow[64];
    const void *data = values;
    if (dtype == TA_NPY_I32) {
        cr_assert_leq(count, 64);
        for (size_t i = 0; i < count; i++)
            narrow[i] = (int32_t)values[i];
        data = narrow;
    }
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_write(tu_path(name), dtype, ndim, shape, data, err, sizeof err), 0, "%s",
                 err);
}

static void read_npy(const char *name, ta_npy_array *a) {
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_read(tu_path(name), a, err, sizeof err), 0, "%s", err);
}

static float *read_f32(const char *name, ta_npy_array *a) {
    read_npy(name, a);
    cr_assert_eq(a->dtype, TA_NPY_F32, "%s is not float32", name);
    return a->data;
}

static void expect_shape(const ta_npy_array *a, ta_npy_dtype dtype, int ndim,
                         const int64_t *shape) {
    cr_assert_eq(a->dtype, dtype);
    cr_assert_eq(a->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        cr_assert_eq(a->shape[i], shape[i], "axis %d: %lld, want %lld", i, (long long)a->shape[i],
                     (long long)shape[i]);
}

/* 1 if the two files (work/ names) hold the same bytes. */
static int same_bytes(const char *a, const char *b) {
    size_t la, lb;
    char *x = tu_read_file(tu_path(a), &la), *y = tu_read_file(tu_path(b), &lb);
    cr_assert(x != NULL && y != NULL, "%s or %s missing", a, b);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void copy_file(const char *src, const char *dst) {
    size_t len;
    char *bytes = tu_read_file(tu_path(src), &len);
    cr_assert_not_null(bytes, "%s missing", src);
    cr_assert_eq(tu_write_file(tu_path(dst), bytes, len), 0);
    free(bytes);
}

/* Copies src to dst (work/ names) with element `index` (SIZE_MAX: the last)
 * of a float array moved by delta. */
static void perturb(const char *src, const char *dst, size_t index, double delta) {
    ta_npy_array a;
    char err[TA_NPY_ERR_LEN];
    read_npy(src, &a);
    if (index == SIZE_MAX) index = a.count - 1;
    cr_assert_lt(index, a.count);
    if (a.dtype == TA_NPY_F32) {
        float *f = a.data;
        f[index] = (float)(f[index] + delta);
    } else {
        cr_assert_eq(a.dtype, TA_NPY_F16);
        uint16_t *h = a.data;
        h[index] = ta_npy_float_to_half((float)(ta_npy_half_to_float(h[index]) + delta));
    }
    cr_assert_eq(ta_npy_write(tu_path(dst), a.dtype, a.ndim, a.shape, a.data, err, sizeof err), 0);
    ta_npy_free(&a);
}

/* The line of check-grad's report that starts with label ("dQ "...), copied
 * into buf. */
static const char *report_line(const char *out, const char *label, char *buf, size_t len) {
    size_t n = strlen(label);
    for (const char *line = out; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t line_len = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, label, n) == 0 && line[n] == ' ') {
            snprintf(buf, len, "%.*s", (int)line_len, line);
            return buf;
        }
        line = end ? end + 1 : NULL;
    }
    cr_assert_fail("no '%s' line in:\n%s", label, out);
    return NULL;
}

/* Runs args twice: with none of `outputs` (work/ names) present (none may
 * appear, nor any other file), then with all of them present (they must
 * keep their exact bytes). Exit 2, one line on stderr, nothing on stdout,
 * no temporary file left. */
static void expect_error(const char *what, const char *const *args, const char *piece,
                         const char *const *outputs) {
    for (int i = 0; outputs[i] != NULL; i++)
        cr_assert_not(tu_exists(tu_path(outputs[i])), "%s: %s exists before", what, outputs[i]);
    int entries = tu_count_entries();
    tu_arglist a = {0};
    tu_add_list(&a, args);
    char *out, *err;
    int status = tu_run_args(&a, &out, &err);
    cr_assert_eq(status, 2, "%s: exit %d, stdout: %s, stderr: %s", what, status, out, err);
    cr_assert_eq(tu_count_lines(err), 1, "%s: stderr is not one line: '%s'", what, err);
    cr_assert_eq(strncmp(err, "tileattn", 8), 0, "%s: '%s'", what, err);
    if (piece != NULL)
        cr_assert_not_null(strstr(err, piece), "%s: '%s' lacks '%s'", what, err, piece);
    cr_assert_str_empty(out, "%s: wrote to stdout: %s", what, out);
    for (int i = 0; outputs[i] != NULL; i++)
        cr_assert_not(tu_exists(tu_path(outputs[i])), "%s: created %s", what, outputs[i]);
    cr_assert_eq(tu_count_entries(), entries, "%s: files appeared", what);
    free(out);
    free(err);

    int n = 0;
    char precious[8][64];
    for (; outputs[n] != NULL; n++) {
        cr_assert_lt(n, 8);
        snprintf(precious[n], sizeof precious[n], "precious %s: not to be touched", outputs[n]);
        cr_assert_eq(tu_write_file(tu_path(outputs[n]), precious[n], strlen(precious[n])), 0);
    }
    status = tu_run_args(&a, &out, &err);
    cr_assert_eq(status, 2, "%s (existing outputs): exit %d, %s", what, status, err);
    for (int i = 0; i < n; i++)
        tu_expect_file_equals(tu_path(outputs[i]), precious[i], strlen(precious[i]));
    cr_assert_not(tu_has_temp_leftovers(), "%s: temporary files left", what);
    cr_assert_eq(tu_count_entries(), entries + n, "%s: files appeared", what);
    free(out);
    free(err);
    for (int i = 0; i < n; i++)
        remove(tu_path(outputs[i]));
}

/* ------------------------------------------------------------------------ */
/* grad and check-grad. The problem: B=2, Sq=5, Sk=7, H=4, Hk=2 (GQA), D=16,
 * Dv=8. */

enum { B = 2, SQ = 5, SK = 7, H = 4, HK = 2, D = 16, DV = 8 };

static const int64_t q_shape[4] = {B, SQ, H, D}, k_shape[4] = {B, SK, HK, D},
                     v_shape[4] = {B, SK, HK, DV}, o_shape[4] = {B, SQ, H, DV};

static void write_grad_inputs(ta_npy_dtype dtype, uint64_t seed) {
    write_random("q.npy", dtype, 4, q_shape, seed, -2, 2);
    write_random("k.npy", dtype, 4, k_shape, seed + 1, -2, 2);
    write_random("v.npy", dtype, 4, v_shape, seed + 2, -1, 1);
    write_random("do.npy", dtype, 4, o_shape, seed + 3, -1, 1);
}

static const char *const grad_outputs[] = {"dq.npy", "dk.npy", "dv.npy", NULL};

/* "grad" or "check-grad" on q/k/v/do.npy with gradients dq/dk/dv = the
 * given names. */
static void grad_args(tu_arglist *a, const char *cmd, const char *dq, const char *dk,
                      const char *dv) {
    tu_add(a, cmd, "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v", tu_path("v.npy"),
           "--do", tu_path("do.npy"), "--dq", tu_path(dq), "--dk", tu_path(dk), "--dv", tu_path(dv),
           NULL);
}

/* check-grad on dq/dk/dv (names) with `extra`: returns the exit status,
 * and stdout in *out. */
static int check_grad(const char *dq, const char *dk, const char *dv, const char *const *extra,
                      char **out) {
    tu_arglist check = {0};
    grad_args(&check, "check-grad", dq, dk, dv);
    tu_add_list(&check, extra);
    char *err;
    int status = tu_run_args(&check, out, &err);
    cr_assert_str_empty(err, "check-grad wrote to stderr: %s", err);
    free(err);
    return status;
}

/* Asserts the report line of `label` counts `bad` elements outside. */
static void expect_outside(const char *out, const char *label, int bad) {
    char line[512], want[32];
    report_line(out, label, line, sizeof line);
    snprintf(want, sizeof want, "; %d of ", bad);
    cr_assert_not_null(strstr(line, want), "%s: want %d outside: '%s'", label, bad, line);
}

/* grad (with O and LSE from `tileattn run` if with_o), then check-grad
 * passes; each of dQ, dK, dV moved by delta in one element fails, and the
 * report names that tensor alone. */
static void grad_then_check(const char *const *extra, int with_o, double delta,
                            ta_npy_dtype dtype) {
    if (with_o) {
        tu_arglist run = {0};
        tu_add(&run, "run", "--q", tu_path("q.npy"), "--k", tu_path("k.npy"), "--v",
               tu_path("v.npy"), "--out", tu_path("o.npy"), "--lse", tu_path("lse.npy"), NULL);
        tu_add_list(&run, extra);
        free(run_ok("run", &run));
    }
    tu_arglist grad = {0};
    grad_args(&grad, "grad", "dq.npy", "dk.npy", "dv.npy");
    if (with_o) tu_add(&grad, "--o", tu_path("o.npy"), "--lse", tu_path("lse.npy"), NULL);
    tu_add_list(&grad, extra);
    char *out = run_ok("grad", &grad);
    cr_assert_str_empty(out, "grad wrote to stdout: %s", out);
    free(out);

    /* The gradients have their tensors' shapes and the inputs' dtype. */
    const char *names[3] = {"dq.npy", "dk.npy", "dv.npy"};
    const int64_t *shapes[3] = {q_shape, k_shape, v_shape};
    for (int t = 0; t < 3; t++) {
        ta_npy_array g;
        read_npy(names[t], &g);
        expect_shape(&g, dtype, 4, shapes[t]);
        ta_npy_free(&g);
    }

    int status = check_grad("dq.npy", "dk.npy", "dv.npy", extra, &out);
    cr_assert_eq(status, 0, "check-grad failed (%d):\n%s", status, out);
    cr_assert_not_null(strstr(out, "PASS"), "%s", out);
    expect_outside(out, "dQ", 0);
    expect_outside(out, "dK", 0);
    expect_outside(out, "dV", 0);
    free(out);

    const char *labels[3] = {"dQ", "dK", "dV"};
    const size_t index[3] = {3, SIZE_MAX, 5};
    for (int t = 0; t < 3; t++) {
        const char *g[3] = {"dq.npy", "dk.npy", "dv.npy"};
        perturb(names[t], "bad.npy", index[t], delta);
        g[t] = "bad.npy";
        status = check_grad(g[0], g[1], g[2], extra, &out);
        cr_assert_eq(status, 1, "a perturbed %s passed (%d):\n%s", labels[t], status, out);
        cr_assert_not_null(strstr(out, "FAIL"), "%s", out);
        for (int u = 0; u < 3; u++)
            expect_outside(out, labels[u], u == t);
        free(out);
    }
    remove(tu_path("bad.npy"));
    cr_assert_not(tu_has_temp_leftovers());
}

Test(cli_grad_decode, grad_then_check_grad_float32) {
    write_grad_inputs(TA_NPY_F32, 1);
    static const char *const flag_sets[][6] = {
        {NULL},
        {"--causal", NULL},
        {"--causal-top-left", NULL},
        {"--window", "2,1", NULL},
        {"--window=3,-1", "--causal", "--threads", "2", NULL},
        {"--softcap", "3", "--scale", "0.3", NULL},
    };
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++)
        for (int with_o = 0; with_o < 2; with_o++)
            grad_then_check(flag_sets[f], with_o, 1e-2, TA_NPY_F32);
}

Test(cli_grad_decode, grad_then_check_grad_float16) {
    write_grad_inputs(TA_NPY_F16, 2);
    static const char *const flag_sets[][4] = {
        {NULL}, {"--causal", NULL}, {"--window", "1,1", NULL}};
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++)
        for (int with_o = 0; with_o < 2; with_o++)
            grad_then_check(flag_sets[f], with_o, 0.25, TA_NPY_F16);
}

/* With O and LSE from run, grad must give the very bytes it gives when it
 * runs the forward itself (the same forward, and a deterministic
 * backward); and it must use the O it is given: a wrong O changes Delta,
 * hence dQ and dK, but not dV = P^T dO. The mask flags must reach the
 * backward too: causal gradients fail a check without --causal. */
Test(cli_grad_decode, grad_uses_the_given_o_and_the_mask) {
    write_grad_inputs(TA_NPY_F32, 3);
    const char *const causal[] = {"--causal", NULL};
    grad_then_check(causal, 0, 1e-2, TA_NPY_F32);
    copy_file("dq.npy", "dq_self.npy");
    copy_file("dk.npy", "dk_self.npy");
    copy_file("dv.npy", "dv_self.npy");
    grad_then_check(causal, 1, 1e-2, TA_NPY_F32);
    cr_assert(same_bytes("dq.npy", "dq_self.npy"), "dQ differs with --o/--lse");
    cr_assert(same_bytes("dk.npy", "dk_self.npy"), "dK differs with --o/--lse");
    cr_assert(same_bytes("dv.npy", "dv_self.npy"), "dV differs with --o/--lse");

    /* Without the mask flag the causal gradients are wrong. */
    char *out;
    const char *const none[] = {NULL};
    int status = check_grad("dq.npy", "dk.npy", "dv.npy", none, &out);
    cr_assert_eq(status, 1, "causal gradients pass a non-causal check:\n%s", out);
    free(out);
    const char *const top_left[] = {"--causal-top-left", NULL};
    status = check_grad("dq.npy", "dk.npy", "dv.npy", top_left, &out);
    cr_assert_eq(status, 1, "bottom-right gradients pass a top-left check:\n%s", out);
    free(out);

    /* A wrong O: every element of O moved by 0.5. */
    ta_npy_array o;
    float *of = read_f32("o.npy", &o);
    for (size_t i = 0; i < o.count; i++)
        of[i] += 0.5f;
    write_floats("o_bad.npy", TA_NPY_F32, 4, o_shape, of);
    ta_npy_free(&o);
    tu_arglist grad = {0};
    grad_args(&grad, "grad", "dq.npy", "dk.npy", "dv.npy");
    tu_add(&grad, "--o", tu_path("o_bad.npy"), "--lse", tu_path("lse.npy"), "--causal", NULL);
    free(run_ok("grad with a wrong O", &grad));
    status = check_grad("dq.npy", "dk.npy", "dv.npy", causal, &out);
    cr_assert_eq(status, 1, "a wrong O gave right gradients:\n%s", out);
    char line[512];
    cr_assert_null(strstr(report_line(out, "dQ", line, sizeof line), "; 0 of "), "%s", out);
    cr_assert_null(strstr(report_line(out, "dK", line, sizeof line), "; 0 of "), "%s", out);
    expect_outside(out, "dV", 0);
    cr_assert(same_bytes("dv.npy", "dv_self.npy"), "dV depends on O");
    free(out);
}

/* grad and check-grad share the code that turns flags and files into
 * arguments, so check-grad passing cannot catch a dropped flag: compare grad
 * with a plain restatement of the backward's formulas (tileattn.h). */
typedef struct naive_options {
    int causal; /* 0 none, 1 bottom right, 2 top left */
    int64_t window_left, window_right;
    double softcap, scale;
} naive_options;

static void naive_backward(const float *q, const float *k, const float *v, const float *d_o,
                           const naive_options *opt, double *dq, double *dk, double *dv) {
    memset(dq, 0, sizeof(double) * B * SQ * H * D);
    memset(dk, 0, sizeof(double) * B * SK * HK * D);
    memset(dv, 0, sizeof(double) * B * SK * HK * DV);
    const int64_t off = opt->causal == 2 ? 0 : SK - SQ;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < SQ; i++) {
                const int64_t kh = h / (H / HK);
                const float *qi = q + ((b * SQ + i) * H + h) * D;
                const float *doi = d_o + ((b * SQ + i) * H + h) * DV;
                double s[SK], raw[SK], p[SK], m = -INFINITY, sum = 0;
                int seen[SK];
                for (int64_t j = 0; j < SK; j++) {
                    const float *kj = k + ((b * SK + j) * HK + kh) * D;
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)qi[d] * kj[d];
                    raw[j] = opt->scale * dot;
                    s[j] = opt->softcap > 0 ? opt->softcap * tanh(raw[j] / opt->softcap) : raw[j];
                    int64_t right = opt->causal ? 0 : opt->window_right;
                    seen[j] = (opt->window_left < 0 || j >= i + off - opt->window_left) &&
                              (right < 0 || j <= i + off + right);
                    if (seen[j] && s[j] > m) m = s[j];
                }
                for (int64_t j = 0; j < SK; j++) {
                    p[j] = seen[j] ? exp(s[j] - m) : 0;
                    sum += p[j];
                }
                cr_assert_gt(sum, 0, "every row sees a key in these tests");
                double o[DV] = {0}, delta = 0;
                for (int64_t j = 0; j < SK; j++) {
                    p[j] /= sum;
                    for (int64_t c = 0; c < DV; c++)
                        o[c] += p[j] * v[((b * SK + j) * HK + kh) * DV + c];
                }
                for (int64_t c = 0; c < DV; c++)
                    delta += (double)doi[c] * o[c];
                for (int64_t j = 0; j < SK; j++) {
                    if (!seen[j]) continue;
                    const float *kj = k + ((b * SK + j) * HK + kh) * D;
                    const float *vj = v + ((b * SK + j) * HK + kh) * DV;
                    double dp = 0;
                    for (int64_t c = 0; c < DV; c++) {
                        dp += (double)doi[c] * vj[c];
                        dv[((b * SK + j) * HK + kh) * DV + c] += p[j] * doi[c];
                    }
                    double ds = p[j] * (dp - delta);
                    if (opt->softcap > 0) {
                        double t = tanh(raw[j] / opt->softcap);
                        ds *= 1 - t * t;
                    }
                    for (int64_t d = 0; d < D; d++) {
                        dq[((b * SQ + i) * H + h) * D + d] += opt->scale * ds * kj[d];
                        dk[((b * SK + j) * HK + kh) * D + d] += opt->scale * ds * qi[d];
                    }
                }
            }
}

Test(cli_grad_decode, grad_matches_a_plain_restatement) {
    write_grad_inputs(TA_NPY_F32, 4);
    ta_npy_array qa, ka, va, doa;
    const float *q = read_f32("q.npy", &qa), *k = read_f32("k.npy", &ka),
                *v = read_f32("v.npy", &va), *d_o = read_f32("do.npy", &doa);
    const double default_scale = 1.0 / sqrt((double)D);
    struct {
        const char *flags[6];
        naive_options opt;
    } cases[] = {
        {{NULL}, {0, -1, -1, 0, default_scale}},
        {{"--causal", NULL}, {1, -1, -1, 0, default_scale}},
        {{"--causal-top-left", NULL}, {2, -1, -1, 0, default_scale}},
        {{"--window", "2,1", NULL}, {0, 2, 1, 0, default_scale}},
        {{"--softcap", "2", "--scale", "0.4", NULL}, {0, -1, -1, 2, 0.4}},
    };
    static double want[3][B * SQ * H * D];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tu_arglist grad = {0};
        grad_args(&grad, "grad", "dq.npy", "dk.npy", "dv.npy");
        tu_add_list(&grad, cases[c].flags);
        free(run_ok("grad", &grad));
        naive_backward(q, k, v, d_o, &cases[c].opt, want[0], want[1], want[2]);
        const char *names[3] = {"dq.npy", "dk.npy", "dv.npy"};
        for (int t = 0; t < 3; t++) {
            ta_npy_array g;
            const float *got = read_f32(names[t], &g);
            double worst = 0;
            for (size_t i = 0; i < g.count; i++) {
                double e = fabs(got[i] - want[t][i]);
                cr_assert(e <= 1e-5 + 1e-5 * fabs(want[t][i]), "case %zu %s[%zu] = %.9g, want %.9g",
                          c, names[t], i, got[i], want[t][i]);
                worst = fmax(worst, fabs(want[t][i]));
            }
            cr_assert_gt(worst, 1e-3, "case %zu %s: all zero", c, names[t]);
            ta_npy_free(&g);
        }
    }
    ta_npy_free(&qa);
    ta_npy_free(&ka);
    ta_npy_free(&va);
    ta_npy_free(&doa);
}

/* grad writes all three gradients or none. */
Test(cli_grad_decode, grad_failed_writes_change_nothing) {
    write_grad_inputs(TA_NPY_F32, 5);
    const int64_t v_s6[4] = {B, 6, HK, DV};
    write_random("v_s6.npy", TA_NPY_F32, 4, v_s6, 1, -1, 1);

    /* The run fails before any write: a bad V shape. */
    tu_arglist bad_v = {0};
    tu_add(&bad_v, "grad", "--q", keep("q.npy"), "--k", keep("k.npy"), "--v", keep("v_s6.npy"),
           "--do", keep("do.npy"), "--dq", keep("dq.npy"), "--dk", keep("dk.npy"), "--dv",
           keep("dv.npy"), NULL);
    expect_error("bad V shape", bad_v.v, "does not match", grad_outputs);

    /* The third output cannot be written: dQ's and dK's temporary files,
     * already complete, must go and their targets stay as they were. */
    tu_arglist no_dir = {0};
    grad_args(&no_dir, "grad", "dq.npy", "dk.npy", "nodir/dv.npy");
    const char *const first_two[] = {"dq.npy", "dk.npy", NULL};
    expect_error("dV in a missing directory", no_dir.v, "temporary file", first_two);

    cr_assert_eq(mkdir(keep("dv_dir"), 0700), 0);
    tu_arglist dv_dir = {0};
    grad_args(&dv_dir, "grad", "dq.npy", "dk.npy", "dv_dir");
    expect_error("dV is a directory", dv_dir.v, "is a directory", first_two);

    /* The second one, and the first. */
    tu_arglist dk_dir = {0};
    grad_args(&dk_dir, "grad", "dq.npy", "nodir/dk.npy", "dv.npy");
    const char *const first_last[] = {"dq.npy", "dv.npy", NULL};
    expect_error("dK in a missing directory", dk_dir.v, "temporary file", first_last);
    tu_arglist dq_dir = {0};
    grad_args(&dq_dir, "grad", "dv_dir", "dk.npy", "dv.npy");
    const char *const last_two[] = {"dk.npy", "dv.npy", NULL};
    expect_error("dQ is a directory", dq_dir.v, "is a directory", last_two);

    /* And a successful run replaces all three existing files. */
    for (int t = 0; t < 3; t++)
        cr_assert_eq(tu_write_file(keep(grad_outputs[t]), "old", 3), 0);
    tu_arglist ok = {0};
    grad_args(&ok, "grad", "dq.npy", "dk.npy", "dv.npy");
    free(run_ok("grad over old files", &ok));
    char *out;
    const char *const none[] = {NULL};
    cr_assert_eq(check_grad("dq.npy", "dk.npy", "dv.npy", none, &out), 0, "%s", out);
    free(out);
    cr_assert_not(tu_has_temp_leftovers());
}

Test(cli_grad_decode, grad_and_check_grad_bad_input) {
    write_grad_inputs(TA_NPY_F32, 6);
    cr_assert_eq(tu_write_file(keep("garbage.npy"), "this is not numpy", 17), 0);
    {
        size_t len;
        char *bytes = tu_read_file(keep("do.npy"), &len);
        cr_assert_eq(tu_write_file(keep("do_cut.npy"), bytes, len - 5), 0);
        free(bytes);
    }
    const int64_t o_dv9[4] = {B, SQ, H, DV + 1}, o_sq4[4] = {B, SQ - 1, H, DV};
    const int64_t lse_ok[3] = {B, H, SQ}, lse_bad[3] = {B, SQ, H}, cnt[1] = {4};
    const int64_t ints[4] = {1, 2, 3, 4};
    write_random("do_dv9.npy", TA_NPY_F32, 4, o_dv9, 1, -1, 1);
    write_random("do_sq4.npy", TA_NPY_F32, 4, o_sq4, 1, -1, 1);
    write_random("o_ok.npy", TA_NPY_F32, 4, o_shape, 1, -1, 1);
    write_random("lse_ok.npy", TA_NPY_F32, 3, lse_ok, 1, -1, 1);
    write_random("lse_bad.npy", TA_NPY_F32, 3, lse_bad, 1, -1, 1);
    write_random("k_f16.npy", TA_NPY_F16, 4, k_shape, 1, -1, 1);
    write_random("q_f64.npy", TA_NPY_F64, 4, q_shape, 1, -1, 1);
    write_ints("i32.npy", TA_NPY_I32, 1, cnt, ints);

    const char *q = keep("q.npy"), *k = keep("k.npy"), *v = keep("v.npy");
    const char *d_o = keep("do.npy"), *dq = keep("dq.npy"), *dk = keep("dk.npy"),
               *dv = keep("dv.npy");
    struct {
        const char *what;
        const char *args[24];
        const char *piece;
    } cases[] = {
        {"unknown flag",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--frobnicate"},
         "unknown argument '--frobnicate'"},
        {"stray word",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "stray"},
         "unknown argument 'stray'"},
        {"shape flag",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--batch", "2"},
         "shapes come from the .npy files"},
        {"bad window",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--window", "1"},
         "want L,R"},
        {"no --do",
         {"grad", "--q", q, "--k", k, "--v", v, "--dq", dq, "--dk", dk, "--dv", dv},
         "required"},
        {"no --dv",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk},
         "required"},
        {"--do without value",
         {"grad", "--q", q, "--k", k, "--v", v, "--dq", dq, "--dk", dk, "--dv", dv, "--do"},
         "needs a value"},
        {"--o without --lse",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--o", keep("o_ok.npy")},
         "go together"},
        {"--dq = --dv",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dq},
         "same file"},
        {"--dv = --q",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", q},
         "input file of --q"},
        {"missing dO",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", keep("missing.npy"), "--dq", dq, "--dk", dk,
          "--dv", dv},
         "No such file"},
        {"missing Q",
         {"grad", "--q", keep("missing.npy"), "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk",
          dk, "--dv", dv},
         "No such file"},
        {"truncated dO",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", keep("do_cut.npy"), "--dq", dq, "--dk", dk,
          "--dv", dv},
         "truncated data"},
        {"garbage K",
         {"grad", "--q", q, "--k", keep("garbage.npy"), "--v", v, "--do", d_o, "--dq", dq, "--dk",
          dk, "--dv", dv},
         "not a .npy file"},
        {"dO Dv differs from O's",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", keep("do_dv9.npy"), "--dq", dq, "--dk", dk,
          "--dv", dv},
         "but the inputs make it (2, 5, 4, 8)"},
        {"dO Sq differs from O's",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", keep("do_sq4.npy"), "--dq", dq, "--dk", dk,
          "--dv", dv},
         "but the inputs make it"},
        {"K float16 with Q float32",
         {"grad", "--q", q, "--k", keep("k_f16.npy"), "--v", v, "--do", d_o, "--dq", dq, "--dk", dk,
          "--dv", dv},
         "differs"},
        {"Q float64 in grad",
         {"grad", "--q", keep("q_f64.npy"), "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk,
          "--dv", dv},
         "not supported"},
        {"dO int32",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", keep("i32.npy"), "--dq", dq, "--dk", dk,
          "--dv", dv},
         "not supported"},
        {"LSE shape",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--o", keep("o_ok.npy"), "--lse", keep("lse_bad.npy")},
         "but the inputs make it (2, 4, 5)"},
        {"O shape",
         {"grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", dq, "--dk", dk, "--dv", dv,
          "--o", keep("do_dv9.npy"), "--lse", keep("lse_ok.npy")},
         "but the inputs make it"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        expect_error(cases[c].what, cases[c].args, cases[c].piece, grad_outputs);

    /* check-grad: the gradients are inputs; nothing may be written. */
    tu_arglist ok = {0};
    grad_args(&ok, "grad", "dq_ok.npy", "dk_ok.npy", "dv_ok.npy");
    free(run_ok("grad", &ok));
    const char *gq = keep("dq_ok.npy"), *gk = keep("dk_ok.npy"), *gv = keep("dv_ok.npy");
    const char *const no_outputs[] = {NULL};
    struct {
        const char *what;
        const char *args[24];
        const char *piece;
    } checks[] = {
        {"check unknown flag",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          gv, "--frobnicate"},
         "unknown argument '--frobnicate'"},
        {"check --o",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          gv, "--o", keep("o_ok.npy"), "--lse", keep("lse_ok.npy")},
         "for grad"},
        {"check --atol -1",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          gv, "--atol", "-1"},
         ">= 0"},
        {"check --rtol nan",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          gv, "--rtol", "nan"},
         "finite"},
        {"check no --dk",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dv", gv},
         "required"},
        {"check missing dV",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          keep("missing.npy")},
         "No such file"},
        {"check truncated dO",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", keep("do_cut.npy"), "--dq", gq,
          "--dk", gk, "--dv", gv},
         "truncated data"},
        {"check dO shape",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", keep("do_dv9.npy"), "--dq", gq,
          "--dk", gk, "--dv", gv},
         "but the inputs make it"},
        {"check dK with dQ's shape",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gq, "--dv",
          gv},
         "but the inputs make it (2, 7, 2, 16)"},
        {"check dQ int32",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", keep("i32.npy"), "--dk",
          gk, "--dv", gv},
         "not supported"},
        {"check garbage dV",
         {"check-grad", "--q", q, "--k", k, "--v", v, "--do", d_o, "--dq", gq, "--dk", gk, "--dv",
          keep("garbage.npy")},
         "not a .npy file"},
        {"check K float16 with Q float32",
         {"check-grad", "--q", q, "--k", keep("k_f16.npy"), "--v", v, "--do", d_o, "--dq", gq,
          "--dk", gk, "--dv", gv},
         "differs"},
    };
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++)
        expect_error(checks[c].what, checks[c].args, checks[c].piece, no_outputs);
}

/* ------------------------------------------------------------------------ */
/* decode. B=3 sequences of Sq_new=3 new tokens, H=4, Hk=2 (GQA), D=16,
 * Dv=8; a contiguous cache of S_max=40 slots, and the same keys in a pool
 * of 11 blocks of 16 slots (capacity 3 blocks = 48 per sequence) through a
 * shuffled block table. Slots past each sequence's length hold NaN: decode
 * must never read them. */

enum {
    DB = 3,
    SN = 3,
    DH = 4,
    DHK = 2,
    DD = 16,
    DDV = 8,
    SMAX = 40,
    BS = 16,
    MAXBLK = 3,
    NBLK = 11
};

static const int64_t dq_shape[4] = {DB, SN, DH, DD}, kn_shape[4] = {DB, SN, DHK, DD},
                     vn_shape[4] = {DB, SN, DHK, DDV}, do_shape[4] = {DB, SN, DH, DDV},
                     dlse_shape[3] = {DB, DH, SN}, kc_shape[4] = {DB, SMAX, DHK, DD},
                     vc_shape[4] = {DB, SMAX, DHK, DDV}, kp_shape[4] = {NBLK, BS, DHK, DD},
                     vp_shape[4] = {NBLK, BS, DHK, DDV}, bt_shape[2] = {DB, MAXBLK},
                     cs_shape[1] = {DB};

/* Sequence 0 fills the contiguous cache exactly when 3 tokens are
 * appended; sequence 1 is shorter than a block; sequence 2 ends inside its
 * second block. */
static const int64_t lens[DB] = {37, 5, 20};

typedef struct decode_data {
    float q[DB * SN * DH * DD], kn[DB * SN * DHK * DD], vn[DB * SN * DHK * DDV];
    float kc[DB * SMAX * DHK * DD], vc[DB * SMAX * DHK * DDV];
    float kp[NBLK * BS * DHK * DD], vp[NBLK * BS * DHK * DDV];
    int64_t table[DB * MAXBLK];
} decode_data;

static decode_data dd;

/* Fills dd and writes q, kn, vn, kc, vc, kp, vp (in dtype) and bt, cs. */
static void write_decode_inputs(ta_npy_dtype dtype, uint64_t seed) {
    fill_random(dd.q, sizeof dd.q / sizeof dd.q[0], seed, -2, 2);
    fill_random(dd.kn, sizeof dd.kn / sizeof dd.kn[0], seed + 1, -2, 2);
    fill_random(dd.vn, sizeof dd.vn / sizeof dd.vn[0], seed + 2, -1, 1);
    fill_random(dd.kc, sizeof dd.kc / sizeof dd.kc[0], seed + 3, -2, 2);
    fill_random(dd.vc, sizeof dd.vc / sizeof dd.vc[0], seed + 4, -1, 1);
    for (int64_t b = 0; b < DB; b++)
        for (int64_t j = lens[b]; j < SMAX; j++) {
            for (int64_t c = 0; c < DHK * DD; c++)
                dd.kc[(b * SMAX + j) * DHK * DD + c] = NAN;
            for (int64_t c = 0; c < DHK * DDV; c++)
                dd.vc[(b * SMAX + j) * DHK * DDV + c] = NAN;
        }
    /* A shuffled permutation of the blocks; two stay unused. */
    int64_t perm[NBLK];
    for (int64_t i = 0; i < NBLK; i++)
        perm[i] = i;
    uint64_t state = seed * 77 + 5;
    for (int64_t i = NBLK - 1; i > 0; i--) {
        int64_t j = (int64_t)tu_random_float(&state, 0, (float)(i + 1));
        if (j > i) j = i;
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < DB * MAXBLK; i++)
        dd.table[i] = perm[i];
    for (size_t i = 0; i < sizeof dd.kp / sizeof dd.kp[0]; i++)
        dd.kp[i] = NAN;
    for (size_t i = 0; i < sizeof dd.vp / sizeof dd.vp[0]; i++)
        dd.vp[i] = NAN;
    for (int64_t b = 0; b < DB; b++)
        for (int64_t j = 0; j < SMAX; j++) {
            int64_t blk = dd.table[b * MAXBLK + j / BS], slot = j % BS;
            memcpy(&dd.kp[(blk * BS + slot) * DHK * DD], &dd.kc[(b * SMAX + j) * DHK * DD],
                   DHK * DD * sizeof(float));
            memcpy(&dd.vp[(blk * BS + slot) * DHK * DDV], &dd.vc[(b * SMAX + j) * DHK * DDV],
                   DHK * DDV * sizeof(float));
        }
    write_floats("q.npy", dtype, 4, dq_shape, dd.q);
    write_floats("kn.npy", dtype, 4, kn_shape, dd.kn);
    write_floats("vn.npy", dtype, 4, vn_shape, dd.vn);
    write_floats("kc.npy", dtype, 4, kc_shape, dd.kc);
    write_floats("vc.npy", dtype, 4, vc_shape, dd.vc);
    write_floats("kp.npy", dtype, 4, kp_shape, dd.kp);
    write_floats("vp.npy", dtype, 4, vp_shape, dd.vp);
    write_ints("bt.npy", TA_NPY_I32, 2, bt_shape, dd.table);
    write_ints("cs.npy", TA_NPY_I32, 1, cs_shape, lens);
}

static const char *const decode_outputs[] = {"o.npy", "lse.npy", "k2.npy", "v2.npy", NULL};

/* decode over the contiguous cache (paged = 0) or the pool, writing
 * <o>.npy and <lse>.npy (names), then `extra`. */
static void decode_args(tu_arglist *a, int paged, const char *o, const char *lse) {
    tu_add(a, "decode", "--q", keep("q.npy"), NULL);
    if (paged)
        tu_add(a, "--k-pool", keep("kp.npy"), "--v-pool", keep("vp.npy"), "--block-table",
               keep("bt.npy"), NULL);
    else
        tu_add(a, "--k-cache", keep("kc.npy"), "--v-cache", keep("vc.npy"), NULL);
    tu_add(a, "--cache-seqlens", keep("cs.npy"), "--out", keep(o), "--lse", keep(lse), NULL);
}

static void add_append(tu_arglist *a, const char *k2, const char *v2) {
    tu_add(a, "--k-new", keep("kn.npy"), "--v-new", keep("vn.npy"), "--k-cache-out", keep(k2),
           "--v-cache-out", keep(v2), NULL);
}

/* O and LSE of decode: the right shapes, finite, not all zero. */
static void expect_decode_output(const char *o, const char *lse, ta_npy_dtype dtype) {
    ta_npy_array oa, la;
    read_npy(o, &oa);
    expect_shape(&oa, dtype, 4, do_shape);
    cr_assert_eq(ta_npy_convert(&oa, TA_NPY_F32, "o", (char[TA_NPY_ERR_LEN]){0}, TA_NPY_ERR_LEN),
                 0);
    double norm = 0;
    for (size_t i = 0; i < oa.count; i++) {
        float x = ((float *)oa.data)[i];
        cr_assert(isfinite(x), "%s[%zu] = %g: a NaN slot was read?", o, i, x);
        norm += fabs(x);
    }
    cr_assert_gt(norm, 1.0, "%s is all zero", o);
    read_npy(lse, &la);
    expect_shape(&la, TA_NPY_F32, 3, dlse_shape);
    for (size_t i = 0; i < la.count; i++)
        cr_assert(isfinite(((float *)la.data)[i]), "%s[%zu] = %g", lse, i, ((float *)la.data)[i]);
    ta_npy_free(&oa);
    ta_npy_free(&la);
}

/* The paged path gathers the same rows through the block table and runs the
 * same kernels with the same key tiles (decode.c: the tile size comes from
 * L1, not from block_size) and the same split-KV plan: the arithmetic is
 * identical, so O and LSE must match byte for byte. */
static void expect_paged_equals_contiguous(const char *const *extra, int append,
                                           ta_npy_dtype dtype) {
    tu_arglist c = {0}, p = {0};
    decode_args(&c, 0, "o_c.npy", "lse_c.npy");
    decode_args(&p, 1, "o_p.npy", "lse_p.npy");
    if (append) {
        add_append(&c, "k2_c.npy", "v2_c.npy");
        add_append(&p, "k2_p.npy", "v2_p.npy");
    }
    tu_add_list(&c, extra);
    tu_add_list(&p, extra);
    char *out = run_ok("decode (contiguous)", &c);
    cr_assert_str_empty(out, "%s", out);
    free(out);
    free(run_ok("decode (paged)", &p));
    expect_decode_output("o_c.npy", "lse_c.npy", dtype);
    cr_assert(same_bytes("o_c.npy", "o_p.npy"), "paged O differs (%s)", extra[0]);
    cr_assert(same_bytes("lse_c.npy", "lse_p.npy"), "paged LSE differs (%s)", extra[0]);
}

Test(cli_grad_decode, decode_paged_equals_contiguous) {
    write_decode_inputs(TA_NPY_F32, 7);
    const char *const sets[][8] = {
        {NULL},
        {"--causal", NULL},
        {"--window", "4,0", "--softcap", "5", NULL},
        {"--causal", "--window", "9,0", "--scale", "0.3", "--threads", "2", NULL},
    };
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        for (int append = 0; append < 2; append++)
            expect_paged_equals_contiguous(sets[s], append, TA_NPY_F32);

    /* float16 everywhere (Q, new tokens, caches). */
    write_decode_inputs(TA_NPY_F16, 8);
    const char *const causal[] = {"--causal", NULL};
    expect_paged_equals_contiguous(causal, 0, TA_NPY_F16);
    expect_paged_equals_contiguous(causal, 1, TA_NPY_F16);

    /* An int64 block table, and table entries past a sequence's last used
     * block (never read) out of range: the same bytes again. */
    write_decode_inputs(TA_NPY_F32, 9);
    write_ints("bt.npy", TA_NPY_I64, 2, bt_shape, dd.table);
    expect_paged_equals_contiguous(causal, 1, TA_NPY_F32);
    copy_file("o_p.npy", "o_p_ref.npy");
    int64_t table[DB * MAXBLK];
    memcpy(table, dd.table, sizeof table);
    table[1 * MAXBLK + 1] = 999; /* sequence 1: 5 + 3 keys, one block */
    table[1 * MAXBLK + 2] = -7;
    write_ints("bt.npy", TA_NPY_I32, 2, bt_shape, table);
    expect_paged_equals_contiguous(causal, 1, TA_NPY_F32);
    cr_assert(same_bytes("o_p.npy", "o_p_ref.npy"));
    cr_assert_not(tu_has_temp_leftovers());
}

/* decode is attention of the new tokens against each sequence's keys with
 * the bottom-right alignment (tileattn.h: off = Sk_b - Sq_new), which is
 * what `run --cu-seqlens-q/k` (varlen) does per sequence: Q = the new
 * tokens, K/V = the first cache_seqlens rows (then the new tokens, with an
 * append). Both accumulate in float32 but tile differently: 2e-5 on O
 * (|V| <= 1) and on LSE. */
static void expect_decode_equals_run(const char *const *extra, int append) {
    int64_t cu_q[DB + 1] = {0}, cu_k[DB + 1] = {0};
    for (int64_t b = 0; b < DB; b++) {
        cu_q[b + 1] = cu_q[b] + SN;
        cu_k[b + 1] = cu_k[b] + lens[b] + (append ? SN : 0);
    }
    const int64_t total_k = cu_k[DB];
    float *k = malloc((size_t)total_k * DHK * DD * sizeof(float));
    float *v = malloc((size_t)total_k * DHK * DDV * sizeof(float));
    cr_assert(k && v);
    for (int64_t b = 0; b < DB; b++) {
        memcpy(k + cu_k[b] * DHK * DD, dd.kc + b * SMAX * DHK * DD,
               (size_t)lens[b] * DHK * DD * sizeof(float));
        memcpy(v + cu_k[b] * DHK * DDV, dd.vc + b * SMAX * DHK * DDV,
               (size_t)lens[b] * DHK * DDV * sizeof(float));
        if (append) {
            memcpy(k + (cu_k[b] + lens[b]) * DHK * DD, dd.kn + b * SN * DHK * DD,
                   SN * DHK * DD * sizeof(float));
            memcpy(v + (cu_k[b] + lens[b]) * DHK * DDV, dd.vn + b * SN * DHK * DDV,
                   SN * DHK * DDV * sizeof(float));
        }
    }
    const int64_t q3[3] = {DB * SN, DH, DD}, k3[3] = {total_k, DHK, DD},
                  v3[3] = {total_k, DHK, DDV}, cu[1] = {DB + 1};
    write_floats("q3.npy", TA_NPY_F32, 3, q3, dd.q); /* [B, Sq, H, D] is [B*Sq, H, D] */
    write_floats("k3.npy", TA_NPY_F32, 3, k3, k);
    write_floats("v3.npy", TA_NPY_F32, 3, v3, v);
    write_ints("cu_q.npy", TA_NPY_I32, 1, cu, cu_q);
    write_ints("cu_k.npy", TA_NPY_I64, 1, cu, cu_k);
    free(k);
    free(v);

    tu_arglist run = {0};
    tu_add(&run, "run", "--q", tu_path("q3.npy"), "--k", tu_path("k3.npy"), "--v",
           tu_path("v3.npy"), "--out", tu_path("o_run.npy"), "--lse", tu_path("lse_run.npy"),
           "--cu-seqlens-q", tu_path("cu_q.npy"), "--cu-seqlens-k", tu_path("cu_k.npy"), NULL);
    tu_add_list(&run, extra);
    free(run_ok("run", &run));
    for (int paged = 0; paged < 2; paged++) {
        tu_arglist dec = {0};
        decode_args(&dec, paged, "o.npy", "lse.npy");
        if (append) add_append(&dec, "k2.npy", "v2.npy");
        tu_add_list(&dec, extra);
        free(run_ok("decode", &dec));
        expect_decode_output("o.npy", "lse.npy", TA_NPY_F32);
        ta_npy_array oa, la, ora, lra;
        const float *o = read_f32("o.npy", &oa), *lse = read_f32("lse.npy", &la);
        const float *o_run = read_f32("o_run.npy", &ora), *lse_run = read_f32("lse_run.npy", &lra);
        cr_assert_eq(oa.count, ora.count);
        for (size_t i = 0; i < oa.count; i++)
            cr_assert(fabsf(o[i] - o_run[i]) <= 2e-5f,
                      "%s append %d paged %d: O[%zu] = %.8g, run %.8g", extra[0], append, paged, i,
                      o[i], o_run[i]);
        /* decode's LSE is [B, H, Sq_new]; varlen run's [H, total_q]. */
        for (int64_t b = 0; b < DB; b++)
            for (int64_t h = 0; h < DH; h++)
                for (int64_t i = 0; i < SN; i++) {
                    float got = lse[(b * DH + h) * SN + i];
                    float want = lse_run[h * DB * SN + b * SN + i];
                    cr_assert(fabsf(got - want) <= 2e-5f, "LSE[%lld, %lld, %lld] = %.8g, run %.8g",
                              (long long)b, (long long)h, (long long)i, got, want);
                }
        ta_npy_free(&oa);
        ta_npy_free(&la);
        ta_npy_free(&ora);
        ta_npy_free(&lra);
    }
}

Test(cli_grad_decode, decode_equals_run) {
    write_decode_inputs(TA_NPY_F32, 10);
    const int64_t h1[1] = {DH};
    write_random("alibi.npy", TA_NPY_F32, 1, h1, 11, 0, 0.5f);
    write_random("sinks.npy", TA_NPY_F32, 1, h1, 12, -1, 2);
    const char *const sets[][8] = {
        {"--causal", NULL},
        {"--softcap", "4", "--scale", "0.3", NULL},
        {"--window", "3,1", NULL},
        {"--causal", "--alibi", tu_path("alibi.npy"), "--sinks", tu_path("sinks.npy"), NULL},
    };
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        for (int append = 0; append < 2; append++)
            expect_decode_equals_run(sets[s], append);
    /* Causal matters: without it the first new token sees more keys. */
    tu_arglist a = {0}, b = {0};
    decode_args(&a, 0, "o_causal.npy", "lse_causal.npy");
    tu_add(&a, "--causal", NULL);
    decode_args(&b, 0, "o_full.npy", "lse_full.npy");
    free(run_ok("decode --causal", &a));
    free(run_ok("decode", &b));
    cr_assert_not(same_bytes("o_causal.npy", "o_full.npy"), "--causal changed nothing");
}

/* The caches written with --k-new/--v-new: the input caches, with the new
 * tokens (converted to the cache's dtype) at cache_seqlens[b] ..
 * cache_seqlens[b] + Sq_new - 1 - through the block table when paged; the
 * input files stay as they were. */
static void expect_appended(int paged, ta_npy_dtype cache_dtype, const char *const *extra) {
    const char *kin = paged ? "kp.npy" : "kc.npy", *vin = paged ? "vp.npy" : "vc.npy";
    size_t klen, vlen;
    char *k_before = tu_read_file(tu_path(kin), &klen),
         *v_before = tu_read_file(tu_path(vin), &vlen);
    cr_assert(k_before && v_before);
    tu_arglist dec = {0};
    decode_args(&dec, paged, "o.npy", "lse.npy");
    add_append(&dec, "k2.npy", "v2.npy");
    tu_add_list(&dec, extra);
    free(run_ok("decode with an append", &dec));
    tu_expect_file_equals(tu_path(kin), k_before, klen);
    tu_expect_file_equals(tu_path(vin), v_before, vlen);
    free(k_before);
    free(v_before);

    const float *src[2] = {paged ? dd.kp : dd.kc, paged ? dd.vp : dd.vc};
    const float *new_rows[2] = {dd.kn, dd.vn};
    const int64_t row_len[2] = {DHK * DD, DHK * DDV};
    const char *outs[2] = {"k2.npy", "v2.npy"};
    const int64_t *shapes[2] = {paged ? kp_shape : kc_shape, paged ? vp_shape : vc_shape};
    for (int t = 0; t < 2; t++) {
        ta_npy_array got;
        read_npy(outs[t], &got);
        expect_shape(&got, cache_dtype, 4, shapes[t]);
        const int64_t slots = shapes[t][0] * shapes[t][1];
        /* What each slot must hold: the input, or a new token's row. */
        const float **want = malloc((size_t)slots * sizeof *want);
        cr_assert_not_null(want);
        for (int64_t s = 0; s < slots; s++)
            want[s] = src[t] + s * row_len[t];
        int64_t appended = 0;
        for (int64_t b = 0; b < DB; b++)
            for (int64_t i = 0; i < SN; i++) {
                int64_t j = lens[b] + i;
                int64_t slot = paged ? dd.table[b * MAXBLK + j / BS] * BS + j % BS : b * SMAX + j;
                want[slot] = new_rows[t] + (b * SN + i) * row_len[t];
                appended++;
            }
        cr_assert_eq(appended, DB * SN);
        size_t es = ta_npy_dtype_size(cache_dtype);
        for (int64_t s = 0; s < slots; s++)
            for (int64_t c = 0; c < row_len[t]; c++) {
                /* Bytes, not values: the NaN slots must be kept too. */
                const unsigned char *g =
                    (const unsigned char *)got.data + (size_t)(s * row_len[t] + c) * es;
                float w = want[s][c];
                if (cache_dtype == TA_NPY_F16) {
                    uint16_t h = ta_npy_float_to_half(w), gh;
                    memcpy(&gh, g, 2);
                    cr_assert(gh == h || (isnan(w) && isnan(ta_npy_half_to_float(gh))),
                              "%s slot %lld [%lld]: %g, want %g", outs[t], (long long)s,
                              (long long)c, ta_npy_half_to_float(gh), w);
                } else {
                    float gf;
                    memcpy(&gf, g, 4);
                    cr_assert(memcmp(&gf, &w, 4) == 0, "%s slot %lld [%lld]: %g, want %g", outs[t],
                              (long long)s, (long long)c, gf, w);
                }
            }
        free(want);
        ta_npy_free(&got);
    }
}

Test(cli_grad_decode, decode_append_writes_the_caches) {
    write_decode_inputs(TA_NPY_F32, 13);
    const char *const none[] = {NULL}, *const causal[] = {"--causal", NULL};
    expect_appended(0, TA_NPY_F32, none);
    expect_appended(1, TA_NPY_F32, causal);

    /* float16 caches under float32 queries and new tokens: the tokens are
     * rounded to float16 on the way in. */
    write_decode_inputs(TA_NPY_F32, 14);
    write_floats("kc.npy", TA_NPY_F16, 4, kc_shape, dd.kc);
    write_floats("vc.npy", TA_NPY_F16, 4, vc_shape, dd.vc);
    write_floats("kp.npy", TA_NPY_F16, 4, kp_shape, dd.kp);
    write_floats("vp.npy", TA_NPY_F16, 4, vp_shape, dd.vp);
    expect_appended(0, TA_NPY_F16, causal);
    copy_file("o.npy", "o_c.npy");
    expect_appended(1, TA_NPY_F16, causal);
    ta_npy_array o;
    read_npy("o.npy", &o);
    expect_shape(&o, TA_NPY_F32, 4, do_shape);
    ta_npy_free(&o);
    cr_assert(same_bytes("o.npy", "o_c.npy"), "float16 paged O differs from contiguous");

    /* The written cache is a valid cache: decoding from it without an
     * append, with the lengths advanced, gives the same O. */
    int64_t advanced[DB];
    for (int64_t b = 0; b < DB; b++)
        advanced[b] = lens[b] + SN;
    write_ints("cs2.npy", TA_NPY_I64, 1, cs_shape, advanced);
    tu_arglist again = {0};
    tu_add(&again, "decode", "--q", tu_path("q.npy"), "--k-pool", tu_path("k2.npy"), "--v-pool",
           tu_path("v2.npy"), "--block-table", tu_path("bt.npy"), "--cache-seqlens",
           tu_path("cs2.npy"), "--out", tu_path("o_again.npy"), "--causal", NULL);
    free(run_ok("decode from the written cache", &again));
    cr_assert(same_bytes("o.npy", "o_again.npy"), "decoding the appended cache differs");
    cr_assert_not(tu_has_temp_leftovers());
}

Test(cli_grad_decode, decode_bad_input) {
    write_decode_inputs(TA_NPY_F32, 15);
    cr_assert_eq(tu_write_file(keep("garbage.npy"), "this is not numpy", 17), 0);
    {
        size_t len;
        char *bytes = tu_read_file(keep("kc.npy"), &len);
        cr_assert_eq(tu_write_file(keep("kc_cut.npy"), bytes, len - 9), 0);
        free(bytes);
    }
    const int64_t kc_d8[4] = {DB, SMAX, DHK, 8}, vc_s39[4] = {DB, SMAX - 1, DHK, DDV};
    const int64_t kc_b2[4] = {2, SMAX, DHK, DD}, kn_s2[4] = {DB, 2, DHK, DD}, q3[3] = {DB, DH, DD};
    const int64_t kc_h3[4] = {DB, SMAX, 3, DD}, vc_h3[4] = {DB, SMAX, 3, DDV};
    const int64_t cs4[1] = {DB + 1}, bt_rows[2] = {DB - 1, MAXBLK}, h5[1] = {DH + 1};
    write_random("kc_d8.npy", TA_NPY_F32, 4, kc_d8, 1, -1, 1);
    write_random("vc_s39.npy", TA_NPY_F32, 4, vc_s39, 1, -1, 1);
    write_random("kc_b2.npy", TA_NPY_F32, 4, kc_b2, 1, -1, 1);
    write_random("vc_b2.npy", TA_NPY_F32, 4, (const int64_t[4]){2, SMAX, DHK, DDV}, 1, -1, 1);
    write_random("kc_h3.npy", TA_NPY_F32, 4, kc_h3, 1, -1, 1);
    write_random("vc_h3.npy", TA_NPY_F32, 4, vc_h3, 1, -1, 1);
    write_random("kn_s2.npy", TA_NPY_F32, 4, kn_s2, 1, -1, 1);
    write_random("q_3d.npy", TA_NPY_F32, 3, q3, 1, -1, 1);
    write_random("cs_f32.npy", TA_NPY_F32, 1, cs_shape, 1, 0, 4);
    write_random("alibi5.npy", TA_NPY_F32, 1, h5, 1, 0, 1);
    const int64_t lens4[DB + 1] = {1, 2, 3, 4};
    write_ints("cs4.npy", TA_NPY_I32, 1, cs4, lens4);
    write_ints("bt_rows.npy", TA_NPY_I32, 2, bt_rows, dd.table);
    write_random("bt_f32.npy", TA_NPY_F32, 2, bt_shape, 1, 0, 4);
    {
        /* Q as int32, and an int32 K cache (a dtype decode cannot take). */
        int64_t q_ints[DB * SN * DH * DD];
        for (size_t i = 0; i < sizeof q_ints / sizeof q_ints[0]; i++)
            q_ints[i] = (int64_t)(i % 5);
        char err[TA_NPY_ERR_LEN];
        int32_t narrow[DB * SN * DH * DD];
        for (size_t i = 0; i < sizeof narrow / sizeof narrow[0]; i++)
            narrow[i] = (int32_t)q_ints[i];
        cr_assert_eq(
            ta_npy_write(keep("q_i32.npy"), TA_NPY_I32, 4, dq_shape, narrow, err, sizeof err), 0);
        int32_t *kc_ints = calloc(DB * SMAX * DHK * DD, sizeof *kc_ints);
        cr_assert_not_null(kc_ints);
        cr_assert_eq(
            ta_npy_write(keep("kc_i32.npy"), TA_NPY_I32, 4, kc_shape, kc_ints, err, sizeof err), 0);
        free(kc_ints);
    }
    /* Bad block tables and lengths. */
    int64_t table[DB * MAXBLK], lengths[DB];
    memcpy(table, dd.table, sizeof table);
    table[2 * MAXBLK + 1] = NBLK; /* sequence 2's second block: used */
    write_ints("bt_big.npy", TA_NPY_I32, 2, bt_shape, table);
    memcpy(table, dd.table, sizeof table);
    table[0 * MAXBLK + 0] = -1;
    write_ints("bt_neg.npy", TA_NPY_I64, 2, bt_shape, table);
    memcpy(table, dd.table, sizeof table);
    table[2 * MAXBLK + 1] = dd.table[1 * MAXBLK + 0]; /* sequences 1 and 2 share a block */
    write_ints("bt_shared.npy", TA_NPY_I32, 2, bt_shape, table);
    memcpy(lengths, lens, sizeof lengths);
    lengths[1] = SMAX + 1; /* beyond the contiguous capacity */
    write_ints("cs_41.npy", TA_NPY_I32, 1, cs_shape, lengths);
    lengths[1] = MAXBLK * BS + 1; /* beyond the paged capacity */
    write_ints("cs_49.npy", TA_NPY_I32, 1, cs_shape, lengths);
    lengths[1] = SMAX - SN + 1; /* fits, but the append does not */
    write_ints("cs_38.npy", TA_NPY_I32, 1, cs_shape, lengths);
    lengths[1] = -1;
    write_ints("cs_neg.npy", TA_NPY_I32, 1, cs_shape, lengths);

    const char *q = keep("q.npy"), *kc = keep("kc.npy"), *vc = keep("vc.npy");
    const char *kp = keep("kp.npy"), *vp = keep("vp.npy"), *bt = keep("bt.npy");
    const char *cs = keep("cs.npy"), *o = keep("o.npy"), *lse = keep("lse.npy");
    const char *kn = keep("kn.npy"), *vn = keep("vn.npy"), *k2 = keep("k2.npy"),
               *v2 = keep("v2.npy");
    struct {
        const char *what;
        const char *args[28];
        const char *piece;
    } cases[] = {
        /* Flags. */
        {"unknown flag",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--frobnicate"},
         "unknown argument '--frobnicate'"},
        {"top-left causal",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--causal-top-left"},
         "unknown argument '--causal-top-left'"},
        {"no --out",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs},
         "required"},
        {"no --cache-seqlens",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--out", o},
         "required"},
        {"no --q",
         {"decode", "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o},
         "required"},
        {"no cache", {"decode", "--q", q, "--cache-seqlens", cs, "--out", o}, "required"},
        {"--k-cache alone",
         {"decode", "--q", q, "--k-cache", kc, "--cache-seqlens", cs, "--out", o},
         "required"},
        {"both caches",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--k-pool", kp, "--v-pool", vp,
          "--block-table", bt, "--cache-seqlens", cs, "--out", o},
         "required"},
        {"pool without table",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--cache-seqlens", cs, "--out", o},
         "required"},
        {"--k-new alone",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-new", kn, "--k-cache-out", k2, "--v-cache-out", v2},
         "go together"},
        {"--k-new without cache outputs",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-new", kn, "--v-new", vn},
         "go together"},
        {"cache outputs without --k-new",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-cache-out", k2, "--v-cache-out", v2},
         "go together"},
        {"--out = --lse",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--lse", o},
         "same file"},
        {"--k-cache-out = --k-cache",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-new", kn, "--v-new", vn, "--k-cache-out", kc, "--v-cache-out", v2},
         "input file of --k-cache"},
        {"--k-cache-out = --v-cache-out",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-new", kn, "--v-new", vn, "--k-cache-out", k2, "--v-cache-out", k2},
         "same file"},
        {"bad window",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--window", "x,1"},
         "not an integer"},
        {"bad threads",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--threads", "-2"},
         "out of range"},
        {"bad softcap",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--softcap", "-1"},
         ">= 0"},
        {"--out without value",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out"},
         "needs a value"},
        /* Files. */
        {"missing Q",
         {"decode", "--q", keep("missing.npy"), "--k-cache", kc, "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "No such file"},
        {"garbage V cache",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", keep("garbage.npy"), "--cache-seqlens",
          cs, "--out", o},
         "not a .npy file"},
        {"truncated K cache",
         {"decode", "--q", q, "--k-cache", keep("kc_cut.npy"), "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "truncated data"},
        {"Q 3-D",
         {"decode", "--q", keep("q_3d.npy"), "--k-cache", kc, "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "3 dimensions, want 4"},
        {"Q int32",
         {"decode", "--q", keep("q_i32.npy"), "--k-cache", kc, "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "q_i32.npy"},
        {"K cache int32",
         {"decode", "--q", q, "--k-cache", keep("kc_i32.npy"), "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "kc_i32.npy"},
        {"K cache head_dim",
         {"decode", "--q", q, "--k-cache", keep("kc_d8.npy"), "--v-cache", vc, "--cache-seqlens",
          cs, "--out", o},
         "head dimension"},
        {"V cache length",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", keep("vc_s39.npy"), "--cache-seqlens",
          cs, "--out", o},
         "alike but for the last axis"},
        {"cache batch",
         {"decode", "--q", q, "--k-cache", keep("kc_b2.npy"), "--v-cache", keep("vc_b2.npy"),
          "--cache-seqlens", cs, "--out", o},
         "batch 2"},
        {"H % Hk",
         {"decode", "--q", q, "--k-cache", keep("kc_h3.npy"), "--v-cache", keep("vc_h3.npy"),
          "--cache-seqlens", cs, "--out", o},
         "do not divide"},
        {"cache_seqlens [B+1]",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", keep("cs4.npy"),
          "--out", o},
         "but the other inputs make it (3,)"},
        {"cache_seqlens float32",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens",
          keep("cs_f32.npy"), "--out", o},
         "cs_f32.npy"},
        {"K new length",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--k-new", keep("kn_s2.npy"), "--v-new", vn, "--k-cache-out", k2, "--v-cache-out", v2},
         "but the other inputs make it (3, 3, 2, 16)"},
        {"alibi shape",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens", cs, "--out", o,
          "--alibi", keep("alibi5.npy")},
         "but the other inputs make it (4,)"},
        /* Block tables and lengths. */
        {"block table rows",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--block-table", keep("bt_rows.npy"),
          "--cache-seqlens", cs, "--out", o},
         "2 rows, but Q has batch 3"},
        {"block table float",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--block-table", keep("bt_f32.npy"),
          "--cache-seqlens", cs, "--out", o},
         "bt_f32.npy"},
        {"block index = num_blocks",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--block-table", keep("bt_big.npy"),
          "--cache-seqlens", cs, "--out", o, "--lse", lse},
         "outside the pool's"},
        {"negative block index",
         {"decode",
          "--q",
          q,
          "--k-pool",
          kp,
          "--v-pool",
          vp,
          "--block-table",
          keep("bt_neg.npy"),
          "--cache-seqlens",
          cs,
          "--out",
          o,
          "--lse",
          lse,
          "--k-new",
          kn,
          "--v-new",
          vn,
          "--k-cache-out",
          k2,
          "--v-cache-out",
          v2},
         "outside the pool's"},
        {"a block appended to by two sequences",
         {"decode",
          "--q",
          q,
          "--k-pool",
          kp,
          "--v-pool",
          vp,
          "--block-table",
          keep("bt_shared.npy"),
          "--cache-seqlens",
          cs,
          "--out",
          o,
          "--lse",
          lse,
          "--k-new",
          kn,
          "--v-new",
          vn,
          "--k-cache-out",
          k2,
          "--v-cache-out",
          v2},
         "inconsistent"},
        {"length beyond the contiguous capacity",
         {"decode", "--q", q, "--k-cache", kc, "--v-cache", vc, "--cache-seqlens",
          keep("cs_41.npy"), "--out", o, "--lse", lse},
         "has room for"},
        {"length beyond the paged capacity",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--block-table", bt,
          "--cache-seqlens", keep("cs_49.npy"), "--out", o, "--lse", lse},
         "has room for"},
        {"append beyond the capacity",
         {"decode",
          "--q",
          q,
          "--k-cache",
          kc,
          "--v-cache",
          vc,
          "--cache-seqlens",
          keep("cs_38.npy"),
          "--out",
          o,
          "--lse",
          lse,
          "--k-new",
          kn,
          "--v-new",
          vn,
          "--k-cache-out",
          k2,
          "--v-cache-out",
          v2},
         "has room for"},
        {"negative length",
         {"decode", "--q", q, "--k-pool", kp, "--v-pool", vp, "--block-table", bt,
          "--cache-seqlens", keep("cs_neg.npy"), "--out", o, "--lse", lse},
         "has room for"},
        /* The last of four outputs cannot be written. */
        {"V cache output in a missing directory",
         {"decode",
          "--q",
          q,
          "--k-cache",
          kc,
          "--v-cache",
          vc,
          "--cache-seqlens",
          cs,
          "--out",
          o,
          "--lse",
          lse,
          "--k-new",
          kn,
          "--v-new",
          vn,
          "--k-cache-out",
          k2,
          "--v-cache-out",
          keep("nodir/v2.npy")},
         "temporary file"},
    };
    const char *const first_three[] = {"o.npy", "lse.npy", "k2.npy", NULL};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int nodir = strstr(cases[c].what, "missing directory") != NULL;
        expect_error(cases[c].what, cases[c].args, cases[c].piece,
                     nodir ? first_three : decode_outputs);
    }
    /* The inputs were never written. */
    size_t len;
    char *bytes = tu_read_file(keep("kp.npy"), &len);
    ta_npy_array kpa;
    char err[TA_NPY_ERR_LEN];
    cr_assert_eq(ta_npy_parse(bytes, len, "kp", &kpa, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(kpa.data, dd.kp, sizeof dd.kp), 0, "the K pool changed");
    ta_npy_free(&kpa);
    free(bytes);
}
