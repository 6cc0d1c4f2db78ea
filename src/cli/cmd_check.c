/*
 * tileattn check: compares an O (and optionally LSE) computed elsewhere,
 * for instance by a GPU kernel, with the library's float64 reference, by
 * numpy.allclose's rule |o - ref| <= atol + rtol * |ref| for every element.
 * NaN never passes; an infinite value (a -inf LSE for a row that sees no
 * key) passes only where the reference has the same infinity.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flags.h"
#include "io.h"
#include "npy.h"

/*
 * Default tolerances, from the precision the tested output was computed
 * and stored in: the coarser of the inputs' dtype and the output's dtype.
 *
 * float32 (unit roundoff u = 2^-24 ~ 6.0e-8): storing O costs 1 u; the
 *   float32 sums behind it (D-term dot products, Sk-term softmax sums, Sk-term
 *   P.V sums) grow like sqrt(n) u in practice, about 1.1e-5 relative for
 *   n = 32k keys, and a vectorised exp adds a few u. Hence rtol = 1e-5. Near
 *   zero, O = sum_j p_j v_j can cancel, so its error scales with |v| rather
 *   than |O|: atol = 1e-5 covers sqrt(Sk) u |v| for |v| ~ 1 up to Sk ~ 32k.
 * float16 (u = 2^-11 ~ 4.9e-4): storing O alone costs up to 2^-11 relative.
 *   Inputs given as float16 are exact in the reference, and float32
 *   accumulation adds little, but kernels that round P to float16 before P.V
 *   (as FlashAttention's GPU kernels do) add up to 2^-11 sum_j p_j |v_j|,
 *   an absolute error of 2^-11 |v|. Hence rtol = atol = 2^-10 ~ 9.8e-4: one
 *   rounding unit for storage, one for the computation.
 * float64 against the float64 reference: only summation order differs,
 *   ~ sqrt(n) 2^-53 ~ 2e-14; 1e-10 leaves room for a different exp/log.
 * LSE is float32 at best even for float16 inputs (kernels keep it in
 *   float32, and float16 inputs are exact), so it takes the float32 (or
 *   float64) tolerances by its own dtype. --atol/--rtol replace the
 *   defaults of both O and LSE.
 */
typedef struct tolerance {
    double atol, rtol;
} tolerance;

static const tolerance tolerance_f16 = {0x1p-10, 0x1p-10};
static const tolerance tolerance_f32 = {1e-5, 1e-5};
static const tolerance tolerance_f64 = {1e-10, 1e-10};

/* 0 for float16, 1 for float32, 2 for float64: larger is finer. */
static int precision_rank(ta_npy_dtype dtype) {
    return dtype == TA_NPY_F16 ? 0 : dtype == TA_NPY_F32 ? 1 : 2;
}

static tolerance tolerance_of_rank(int rank) {
    return rank == 0 ? tolerance_f16 : rank == 1 ? tolerance_f32 : tolerance_f64;
}

typedef struct comparison {
    size_t count;
    size_t violations;
    size_t nonfinite; /* elements whose error is NaN or infinite */
    double max_abs;   /* over finite errors */
    double sum_abs;
    double max_rel; /* over finite errors where the reference is nonzero */
    size_t worst;   /* the element furthest outside (or closest to) its tolerance */
    double worst_ratio;
    double worst_got, worst_want, worst_allowed;
} comparison;

static double load_value(const void *data, ta_npy_dtype dtype, size_t i) {
    switch (dtype) {
    case TA_NPY_F16: {
        uint16_t h;
        memcpy(&h, (const unsigned char *)data + 2 * i, 2);
        return ta_npy_half_to_float(h);
    }
    case TA_NPY_F32: {
        float f;
        memcpy(&f, (const unsigned char *)data + 4 * i, 4);
        return f;
    }
    default: {
        double d;
        memcpy(&d, (const unsigned char *)data + 8 * i, 8);
        return d;
    }
    }
}

static void compare(const void *got, ta_npy_dtype got_dtype, const double *want, size_t count,
                    tolerance tol, comparison *c) {
    memset(c, 0, sizeof *c);
    c->count = count;
    c->worst_ratio = -1.0;
    for (size_t i = 0; i < count; i++) {
        double g = load_value(got, got_dtype, i);
        double w = want[i];
        double err, allowed = tol.atol + tol.rtol * fabs(w);
        int ok;
        if (isfinite(g) && isfinite(w)) {
            err = fabs(g - w);
            ok = err <= allowed;
        } else {
            /* allclose: infinities must match exactly, NaN never does. */
            ok = g == w;
            err = ok ? 0.0 : INFINITY;
        }
        if (isfinite(err)) {
            c->sum_abs += err;
            if (err > c->max_abs) c->max_abs = err;
            if (w != 0.0 && isfinite(w) && err / fabs(w) > c->max_rel) c->max_rel = err / fabs(w);
        } else {
            c->nonfinite++;
        }
        if (!ok) c->violations++;
        double ratio = !isfinite(err) ? INFINITY : allowed > 0 ? err / allowed : ok ? 0 : INFINITY;
        if (ratio > c->worst_ratio) {
            c->worst_ratio = ratio;
            c->worst = i;
            c->worst_got = g;
            c->worst_want = w;
            c->worst_allowed = allowed;
        }
    }
}

/* Sequence b holding token t of a varlen batch. */
static int64_t sequence_of_token(const ta_cli_inputs *in, int64_t t) {
    const int32_t *cu = in->cu_seqlens_q.data;
    int64_t lo = 0, hi = in->dims.batch - 1;
    while (lo < hi) { /* the last b with cu[b] <= t */
        int64_t mid = (lo + hi + 1) / 2;
        if (cu[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void format_o_index(char *buf, size_t len, const ta_cli_inputs *in, size_t flat) {
    const ta_cli_dims *d = &in->dims;
    int64_t i = (int64_t)flat;
    int64_t dv = i % d->head_dim_v;
    int64_t h = i / d->head_dim_v % d->heads_q;
    int64_t row = i / d->head_dim_v / d->heads_q;
    if (d->varlen) {
        int64_t b = sequence_of_token(in, row);
        int64_t s = row - ((const int32_t *)in->cu_seqlens_q.data)[b];
        snprintf(buf, len, "[t=%lld (b=%lld, s=%lld), h=%lld, d=%lld]", (long long)row,
                 (long long)b, (long long)s, (long long)h, (long long)dv);
    } else {
        snprintf(buf, len, "[b=%lld, s=%lld, h=%lld, d=%lld]", (long long)(row / d->seqlen_q),
                 (long long)(row % d->seqlen_q), (long long)h, (long long)dv);
    }
}

static void format_lse_index(char *buf, size_t len, const ta_cli_inputs *in, size_t flat) {
    const ta_cli_dims *d = &in->dims;
    int64_t i = (int64_t)flat;
    if (d->varlen) {
        int64_t h = i / d->total_q, t = i % d->total_q;
        int64_t b = sequence_of_token(in, t);
        int64_t s = t - ((const int32_t *)in->cu_seqlens_q.data)[b];
        snprintf(buf, len, "[h=%lld, t=%lld (b=%lld, s=%lld)]", (long long)h, (long long)t,
                 (long long)b, (long long)s);
    } else {
        snprintf(buf, len, "[b=%lld, h=%lld, s=%lld]", (long long)(i / d->seqlen_q / d->heads_q),
                 (long long)(i / d->seqlen_q % d->heads_q), (long long)(i % d->seqlen_q));
    }
}

static void report(const char *label, const comparison *c, tolerance tol, const char *where) {
    printf("%-4s max abs err %.3e, mean abs err %.3e, max rel err %.3e\n", label, c->max_abs,
           c->count > c->nonfinite ? c->sum_abs / (double)(c->count - c->nonfinite) : 0.0,
           c->max_rel);
    if (c->count > 0)
        printf("     worst %s: got %.9g, want %.9g, |err| %.3e %s allowed %.3e\n", where,
               c->worst_got, c->worst_want,
               isfinite(c->worst_got) && isfinite(c->worst_want)
                   ? fabs(c->worst_got - c->worst_want)
                   : (c->worst_got == c->worst_want ? 0.0 : INFINITY),
               c->worst_ratio <= 1.0 ? "<=" : ">", c->worst_allowed);
    if (c->nonfinite > 0)
        printf("     %zu elements are NaN or an infinity the reference does not have\n",
               c->nonfinite);
    printf("     %zu of %zu elements outside |got - ref| <= atol + rtol*|ref| "
           "(atol %.3g, rtol %.3g)\n",
           c->violations, c->count, tol.atol, tol.rtol);
}

static void print_check_help(FILE *out) {
    fputs("Usage: tileattn check --q Q.npy --k K.npy --v V.npy --o O.npy [--lse LSE.npy]\n"
          "                      [--atol A] [--rtol R] [mask flags]\n"
          "\n"
          "Checks an attention output computed elsewhere against the float64 reference:\n"
          "every element must satisfy |o - ref| <= atol + rtol*|ref| (numpy.allclose),\n"
          "NaN never passes, and -inf LSE (rows that see no key) must match exactly.\n"
          "  Q, K, V: float32, float16 or float64 (one dtype), shapes as for run.\n"
          "  O: float32, float16 or float64 [B, Sq, H, Dv] ([total_q, H, Dv] for varlen).\n"
          "  LSE: float32 or float64 [B, H, Sq] ([H, total_q] for varlen).\n"
          "  Default tolerances (by the coarser of the inputs' and the output's dtype):\n"
          "  float16 atol = rtol = 2^-10, float32 1e-5, float64 1e-10; LSE by its own dtype.\n"
          "Exit status: 0 PASS, 1 FAIL, 2 bad usage or input.\n"
          "\n",
          out);
    ta_cli_print_problem_flags(out, 0);
}

int ta_cmd_check(int argc, char **argv) {
    const char *cmd = "check";
    const char *q_path = NULL, *k_path = NULL, *v_path = NULL;
    const char *o_path = NULL, *lse_path = NULL;
    float atol = -1.0f, rtol = -1.0f;
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);

    for (int i = 1; i < argc; i++) {
        if (ta_cli_is_help(argv[i])) {
            print_check_help(stdout);
            return TA_EXIT_OK;
        }
    }
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        if (ta_cli_is_shape_flag(arg)) {
            ta_cli_error(cmd,
                         "%s is for bench and info: check takes the shapes from the .npy "
                         "files",
                         arg);
            return TA_EXIT_USAGE;
        }
        int r = ta_cli_parse_problem_flag(argc, argv, &i, &problem);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--q", &q_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--k", &k_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--v", &v_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--o", &o_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--lse", &lse_path);
        if (r == 0) r = ta_cli_float_flag(argc, argv, &i, "--atol", &atol);
        if (r == 0) r = ta_cli_float_flag(argc, argv, &i, "--rtol", &rtol);
        if (r < 0) return TA_EXIT_USAGE;
        if (r == 0) {
            ta_cli_error(cmd, "unknown argument '%s' (try 'tileattn check --help')", arg);
            return TA_EXIT_USAGE;
        }
    }
    if (q_path == NULL || k_path == NULL || v_path == NULL || o_path == NULL) {
        ta_cli_error(cmd, "--q, --k, --v and --o are required (try 'tileattn check --help')");
        return TA_EXIT_USAGE;
    }

    int status = TA_EXIT_USAGE;
    ta_cli_inputs in;
    tileattn_forward_args args;
    ta_npy_array o = {0}, lse = {0};
    double *ref_o = NULL, *ref_lse = NULL;
    if (ta_cli_load_problem(cmd, &problem, q_path, k_path, v_path, 1, &in, &args) != 0) goto done;

    char err[TA_NPY_ERR_LEN];
    int64_t o_shape[4], lse_shape[3];
    int o_ndim = ta_cli_o_shape(&in.dims, o_shape);
    int lse_ndim = ta_cli_lse_shape(&in.dims, lse_shape);
    if (ta_npy_read(o_path, &o, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        goto done;
    }
    if (o.dtype != TA_NPY_F32 && o.dtype != TA_NPY_F16 && o.dtype != TA_NPY_F64) {
        ta_cli_error(cmd, "%s: dtype %s is not supported (want float32, float16 or float64)",
                     o_path, ta_npy_dtype_name(o.dtype));
        goto done;
    }
    if (o.ndim != o_ndim || memcmp(o.shape, o_shape, (size_t)o_ndim * sizeof o_shape[0]) != 0) {
        char got[256], want[256];
        ta_cli_format_shape(got, sizeof got, o.ndim, o.shape);
        ta_cli_format_shape(want, sizeof want, o_ndim, o_shape);
        ta_cli_error(cmd, "%s: shape %s, but Q and V make O %s", o_path, got, want);
        goto done;
    }
    if (lse_path != NULL) {
        if (ta_npy_read(lse_path, &lse, err, sizeof err) != 0) {
            ta_cli_error(cmd, "%s", err);
            goto done;
        }
        if (lse.dtype != TA_NPY_F32 && lse.dtype != TA_NPY_F64) {
            ta_cli_error(cmd, "%s: dtype %s is not supported (want float32 or float64)", lse_path,
                         ta_npy_dtype_name(lse.dtype));
            goto done;
        }
        if (lse.ndim != lse_ndim ||
            memcmp(lse.shape, lse_shape, (size_t)lse_ndim * sizeof lse_shape[0]) != 0) {
            char got[256], want[256];
            ta_cli_format_shape(got, sizeof got, lse.ndim, lse.shape);
            ta_cli_format_shape(want, sizeof want, lse_ndim, lse_shape);
            ta_cli_error(cmd, "%s: shape %s, but Q makes LSE %s", lse_path, got, want);
            goto done;
        }
    }

    /* The counts were checked against the files, whose sizes fit in memory;
     * a double is at most 8x a float16 element. */
    size_t ref_o_bytes, ref_lse_bytes;
    if (__builtin_mul_overflow(o.count + 1, sizeof(double), &ref_o_bytes) ||
        __builtin_mul_overflow(lse.count + 1, sizeof(double), &ref_lse_bytes)) {
        ta_cli_error(cmd, "the reference output is too large for this machine");
        goto done;
    }
    ref_o = malloc(ref_o_bytes);
    ref_lse = lse_path != NULL ? malloc(ref_lse_bytes) : NULL;
    if (ref_o == NULL || (lse_path != NULL && ref_lse == NULL)) {
        ta_cli_error(cmd, "out of memory for the reference (%zu bytes)", ref_o_bytes);
        goto done;
    }
    tileattn_status ref_status = tileattn_reference_forward(&args, ref_o, ref_lse);
    if (ref_status != TILEATTN_OK) {
        ta_cli_error(cmd, "reference: %s", tileattn_status_string(ref_status));
        goto done;
    }

    int input_rank = precision_rank(in.q.dtype);
    int o_rank = precision_rank(o.dtype);
    tolerance o_tol = tolerance_of_rank(o_rank < input_rank ? o_rank : input_rank);
    /* float16 inputs are exact: LSE keeps float32 precision (see above). */
    int lse_input_rank = input_rank < 1 ? 1 : input_rank;
    int lse_rank = precision_rank(lse.dtype);
    tolerance lse_tol = tolerance_of_rank(lse_rank < lse_input_rank ? lse_rank : lse_input_rank);
    if (atol >= 0.0f) o_tol.atol = lse_tol.atol = atol;
    if (rtol >= 0.0f) o_tol.rtol = lse_tol.rtol = rtol;

    comparison o_cmp, lse_cmp;
    char where[160] = "";
    compare(o.data, o.dtype, ref_o, o.count, o_tol, &o_cmp);
    if (o.count > 0) format_o_index(where, sizeof where, &in, o_cmp.worst);
    report("O", &o_cmp, o_tol, where);
    int failed = o_cmp.violations > 0;
    if (lse_path != NULL) {
        compare(lse.data, lse.dtype, ref_lse, lse.count, lse_tol, &lse_cmp);
        if (lse.count > 0) format_lse_index(where, sizeof where, &in, lse_cmp.worst);
        report("LSE", &lse_cmp, lse_tol, where);
        failed |= lse_cmp.violations > 0;
    }
    puts(failed ? "FAIL" : "PASS");
    status = failed ? TA_EXIT_MISMATCH : TA_EXIT_OK;

done:
    free(ref_o);
    free(ref_lse);
    ta_npy_free(&o);
    ta_npy_free(&lse);
    ta_cli_inputs_free(&in);
    return status;
}
