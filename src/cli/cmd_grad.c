/*
 * tileattn grad: the attention backward on .npy files (dQ, dK, dV from Q,
 * K, V and dO, running the forward first unless O and LSE are given), and
 * tileattn check-grad: gradients computed elsewhere against the float64
 * reference backward, by numpy.allclose's rule.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_grad.h"
#include "flags.h"
#include "io.h"
#include "npy.h"
#include "paths.h"

/* Reads a float array, checks its shape, converts it to dtype `to`. */
static int load_shaped(const char *cmd, const char *path, int ndim, const int64_t *shape,
                       ta_npy_dtype to, ta_npy_array *out) {
    char err[TA_NPY_ERR_LEN];
    if (ta_npy_read(path, out, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        return -1;
    }
    if (out->dtype != TA_NPY_F32 && out->dtype != TA_NPY_F16 && out->dtype != TA_NPY_F64) {
        ta_cli_error(cmd, "%s: dtype %s is not supported (want float32, float16 or float64)", path,
                     ta_npy_dtype_name(out->dtype));
        return -1;
    }
    if (out->ndim != ndim || memcmp(out->shape, shape, (size_t)ndim * sizeof shape[0]) != 0) {
        char got[256], want[256];
        ta_cli_format_shape(got, sizeof got, out->ndim, out->shape);
        ta_cli_format_shape(want, sizeof want, ndim, shape);
        ta_cli_error(cmd, "%s: shape %s, but the inputs make it %s", path, got, want);
        return -1;
    }
    if (ta_npy_convert(out, to, path, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        return -1;
    }
    return 0;
}

/* The contiguous view of a [B, S, H, dim] (or [tokens, H, dim]) array. */
static tileattn_tensor view_of(const void *data, const ta_cli_dims *d, int keys, int64_t heads,
                               int64_t dim) {
    int64_t rows = d->varlen ? (keys ? d->total_k : d->total_q) : keys ? d->seqlen_k : d->seqlen_q;
    return tileattn_tensor_contiguous(data, rows, heads, dim);
}

static tileattn_tensor_out view_out_of(void *data, const ta_cli_dims *d, int keys, int64_t heads,
                                       int64_t dim) {
    int64_t rows = d->varlen ? (keys ? d->total_k : d->total_q) : keys ? d->seqlen_k : d->seqlen_q;
    return tileattn_tensor_out_contiguous(data, rows, heads, dim);
}

typedef struct grad_paths {
    const char *q, *k, *v, *d_o, *dq, *dk, *dv, *o, *lse;
} grad_paths;

/* Parses the flags shared by grad and check-grad. Returns 0, or an exit
 * status (help printed: TA_EXIT_OK + 100, so callers can tell). */
static int parse_grad_flags(const char *cmd, int argc, char **argv, ta_cli_problem *problem,
                            grad_paths *paths, float *atol, float *rtol) {
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        if (ta_cli_is_shape_flag(arg)) {
            ta_cli_error(cmd, "%s is for bench and info: shapes come from the .npy files", arg);
            return TA_EXIT_USAGE;
        }
        int r = ta_cli_parse_problem_flag(argc, argv, &i, problem);
        struct {
            const char *flag;
            const char **path;
        } files[] = {{"--q", &paths->q},    {"--k", &paths->k},   {"--v", &paths->v},
                     {"--do", &paths->d_o}, {"--dq", &paths->dq}, {"--dk", &paths->dk},
                     {"--dv", &paths->dv},  {"--o", &paths->o},   {"--lse", &paths->lse}};
        for (size_t f = 0; r == 0 && f < sizeof files / sizeof files[0]; f++)
            r = ta_cli_path_flag(argc, argv, &i, files[f].flag, files[f].path);
        if (r == 0 && atol) r = ta_cli_float_flag(argc, argv, &i, "--atol", atol);
        if (r == 0 && rtol) r = ta_cli_float_flag(argc, argv, &i, "--rtol", rtol);
        if (r < 0) return TA_EXIT_USAGE;
        if (r == 0) {
            ta_cli_error(cmd, "unknown argument '%s' (try 'tileattn %s --help')", arg, cmd);
            return TA_EXIT_USAGE;
        }
    }
    if (!paths->q || !paths->k || !paths->v || !paths->d_o || !paths->dq || !paths->dk ||
        !paths->dv) {
        ta_cli_error(cmd,
                     "--q, --k, --v, --do, --dq, --dk and --dv are required (try "
                     "'tileattn %s --help')",
                     cmd);
        return TA_EXIT_USAGE;
    }
    return 0;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (ta_cli_is_help(argv[i])) return 1;
    return 0;
}

/* The shapes of O, dK (= K's) and dV (= V's) for the loaded problem. */
static void shapes_of(const ta_cli_inputs *in, int *o_ndim, int64_t o_shape[4], int *k_ndim,
                      int64_t k_shape[4], int64_t v_shape[4]) {
    *o_ndim = ta_cli_o_shape(&in->dims, o_shape);
    *k_ndim = in->k.ndim;
    memcpy(k_shape, in->k.shape, (size_t)in->k.ndim * sizeof k_shape[0]);
    memcpy(v_shape, in->v.shape, (size_t)in->v.ndim * sizeof v_shape[0]);
}

int ta_cmd_grad(int argc, char **argv) {
    const char *cmd = "grad";
    if (wants_help(argc, argv)) {
        fputs("Usage: tileattn grad --q Q.npy --k K.npy --v V.npy --do DO.npy\n"
              "                     --dq DQ.npy --dk DK.npy --dv DV.npy\n"
              "                     [--o O.npy --lse LSE.npy] [mask flags]\n"
              "\n"
              "The attention backward: writes dL/dQ, dL/dK, dL/dV (the inputs' dtype) for\n"
              "the loss gradient dO = dL/dO. O and LSE are those of the forward; without\n"
              "them the forward runs first. All three outputs are written atomically:\n"
              "each to a temporary file first, then renamed once all three are complete.\n"
              "The bias/mask and ALiBi get no gradient.\n\n",
              stdout);
        ta_cli_print_problem_flags(stdout, 0);
        return TA_EXIT_OK;
    }
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);
    grad_paths paths = {0};
    int status = parse_grad_flags(cmd, argc, argv, &problem, &paths, NULL, NULL);
    if (status) return status;
    if ((paths.o == NULL) != (paths.lse == NULL)) {
        ta_cli_error(cmd, "--o and --lse go together (or neither: the forward runs)");
        return TA_EXIT_USAGE;
    }
    const ta_cli_path outputs[3] = {{"--dq", paths.dq}, {"--dk", paths.dk}, {"--dv", paths.dv}};
    ta_cli_path inputs[12] = {{"--q", paths.q},    {"--k", paths.k}, {"--v", paths.v},
                              {"--do", paths.d_o}, {"--o", paths.o}, {"--lse", paths.lse}};
    int n_inputs = 6 + ta_cli_problem_inputs(&problem, inputs + 6);
    if (ta_cli_check_paths(cmd, outputs, 3, inputs, n_inputs) != 0) return TA_EXIT_USAGE;

    status = TA_EXIT_USAGE;
    ta_cli_inputs in;
    tileattn_forward_args args;
    ta_npy_array d_o = {0}, o_file = {0}, lse_file = {0};
    void *o = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    float *lse = NULL;
    ta_npy_pending pending[3] = {{0}};
    char err[TA_NPY_ERR_LEN];
    if (ta_cli_load_problem(cmd, &problem, paths.q, paths.k, paths.v, 0, &in, &args) != 0)
        goto done;
    const ta_cli_dims *dims = &in.dims;
    int o_ndim, k_ndim;
    int64_t o_shape[4], k_shape[4], v_shape[4], lse_shape[3];
    shapes_of(&in, &o_ndim, o_shape, &k_ndim, k_shape, v_shape);
    int lse_ndim = ta_cli_lse_shape(dims, lse_shape);
    if (load_shaped(cmd, paths.d_o, o_ndim, o_shape, in.q.dtype, &d_o)) goto done;

    size_t es = tileattn_dtype_size(in.dtype);
    size_t o_count = d_o.count, lse_count = (size_t)ta_cli_shape_count(lse_ndim, lse_shape);
    if (paths.o) {
        if (load_shaped(cmd, paths.o, o_ndim, o_shape, in.q.dtype, &o_file) ||
            load_shaped(cmd, paths.lse, lse_ndim, lse_shape, TA_NPY_F32, &lse_file))
            goto done;
    } else {
        o = malloc(o_count * es + 1);
        lse = malloc(lse_count * sizeof(float) + 1);
        if (!o || !lse) {
            ta_cli_error(cmd, "out of memory for O and LSE");
            goto done;
        }
        args.o = view_out_of(o, dims, 0, dims->heads_q, dims->head_dim_v);
        args.lse = lse;
        tileattn_status st = tileattn_forward(&args);
        if (st != TILEATTN_OK) {
            ta_cli_error(cmd, "forward: %s", tileattn_status_string(st));
            goto done;
        }
    }
    dq = malloc(in.q.count * es + 1);
    dk = malloc(in.k.count * es + 1);
    dv = malloc(in.v.count * es + 1);
    if (!dq || !dk || !dv) {
        ta_cli_error(cmd, "out of memory for the gradients");
        goto done;
    }
    tileattn_backward_args bwd;
    tileattn_backward_args_init(&bwd);
    bwd.fwd = args;
    bwd.o = view_of(paths.o ? o_file.data : o, dims, 0, dims->heads_q, dims->head_dim_v);
    bwd.d_o = view_of(d_o.data, dims, 0, dims->heads_q, dims->head_dim_v);
    bwd.lse = paths.o ? lse_file.data : lse;
    bwd.dq = view_out_of(dq, dims, 0, dims->heads_q, dims->head_dim);
    bwd.dk = view_out_of(dk, dims, 1, dims->heads_kv, dims->head_dim);
    bwd.dv = view_out_of(dv, dims, 1, dims->heads_kv, dims->head_dim_v);
    tileattn_status st = tileattn_backward(&bwd);
    if (st != TILEATTN_OK) {
        ta_cli_error(cmd, "backward: %s", tileattn_status_string(st));
        goto done;
    }

    /* All three to temporary files, then all three renamed: a failure
     * before the renames leaves every target as it was. */
    const char *out_paths[3] = {paths.dq, paths.dk, paths.dv};
    const void *out_data[3] = {dq, dk, dv};
    const int64_t *out_shapes[3] = {in.q.shape, k_shape, v_shape};
    int out_ndim[3] = {in.q.ndim, k_ndim, in.v.ndim};
    for (int t = 0; t < 3; t++)
        if (ta_npy_write_temp(out_paths[t], in.q.dtype, out_ndim[t], out_shapes[t], out_data[t],
                              &pending[t], err, sizeof err) != 0) {
            ta_cli_error(cmd, "%s", err);
            goto done;
        }
    if (ta_npy_commit_all(pending, 3, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        goto done;
    }
    status = TA_EXIT_OK;

done:
    for (int t = 0; t < 3; t++)
        ta_npy_discard(&pending[t]);
    free(o), free(lse), free(dq), free(dk), free(dv);
    ta_npy_free(&d_o);
    ta_npy_free(&o_file);
    ta_npy_free(&lse_file);
    ta_cli_inputs_free(&in);
    return status;
}

/*
 * check-grad's default tolerances, |g - ref| <= atol + rtol |ref| per
 * element, by the coarser of the inputs' and the gradients' dtype:
 *   float32: 1e-4 both. A gradient element sums O(Sq) or O(Sk) float32
 *     products of dS = P (dP - Delta), itself a difference of two float32
 *     dot products of size ~|dO| |V|: errors of ~sqrt(n) u |dO| |V| |K| per
 *     element, 1e-5 for unit-scale inputs and n ~ 32k; the gradients also
 *     cancel (dS sums to ~0 over a row), so the floor is absolute.
 *   float16: 2^-8 both: storing the gradient costs 2^-11 relative, and Delta
 *     is formed from a float16 O (another 2^-11 relative on dS).
 *   float64 (against the float64 reference): 1e-10.
 */
typedef struct grad_tolerance {
    double atol, rtol;
} grad_tolerance;

static grad_tolerance default_tolerance(ta_npy_dtype a, ta_npy_dtype b) {
    if (a == TA_NPY_F16 || b == TA_NPY_F16) return (grad_tolerance){0x1p-8, 0x1p-8};
    if (a == TA_NPY_F32 || b == TA_NPY_F32) return (grad_tolerance){1e-4, 1e-4};
    return (grad_tolerance){1e-10, 1e-10};
}

/* Compares and reports one gradient; returns the number of violations. */
static size_t compare_report(const char *label, const ta_npy_array *got, const double *want,
                             grad_tolerance tol) {
    size_t bad = 0;
    double max_abs = 0.0, worst_ratio = -1.0, worst_err = 0.0, worst_allowed = 0.0;
    for (size_t i = 0; i < got->count; i++) {
        double g = got->dtype == TA_NPY_F64 ? ((const double *)got->data)[i]
                   : got->dtype == TA_NPY_F32
                       ? ((const float *)got->data)[i]
                       : ta_npy_half_to_float(((const uint16_t *)got->data)[i]);
        double err = fabs(g - want[i]), allowed = tol.atol + tol.rtol * fabs(want[i]);
        if (!(err <= allowed)) bad++; /* NaN never passes */
        if (isnan(err)) err = INFINITY;
        if (err > max_abs) max_abs = err;
        double ratio = allowed > 0 ? err / allowed : err > 0 ? INFINITY : 0.0;
        if (ratio > worst_ratio) worst_ratio = ratio, worst_err = err, worst_allowed = allowed;
    }
    printf("%-3s max abs err %.3e, worst |err| %.3e where %.3e is allowed; %zu of %zu elements "
           "outside (atol %.3g, rtol %.3g)\n",
           label, max_abs, worst_err, worst_allowed, bad, got->count, tol.atol, tol.rtol);
    return bad;
}

int ta_cmd_check_grad(int argc, char **argv) {
    const char *cmd = "check-grad";
    if (wants_help(argc, argv)) {
        fputs("Usage: tileattn check-grad --q Q.npy --k K.npy --v V.npy --do DO.npy\n"
              "                           --dq DQ.npy --dk DK.npy --dv DV.npy\n"
              "                           [--atol A] [--rtol R] [mask flags]\n"
              "\n"
              "Checks gradients computed elsewhere against the float64 reference backward:\n"
              "every element must satisfy |g - ref| <= atol + rtol*|ref| (NaN never passes).\n"
              "Defaults by the coarser dtype: float16 2^-8, float32 1e-4, float64 1e-10.\n"
              "Exit status: 0 PASS, 1 FAIL, 2 bad usage or input.\n\n",
              stdout);
        ta_cli_print_problem_flags(stdout, 0);
        return TA_EXIT_OK;
    }
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);
    grad_paths paths = {0};
    float atol = -1.0f, rtol = -1.0f;
    int status = parse_grad_flags(cmd, argc, argv, &problem, &paths, &atol, &rtol);
    if (status) return status;
    if (paths.o || paths.lse) {
        ta_cli_error(cmd, "--o and --lse are for grad: the reference recomputes the forward");
        return TA_EXIT_USAGE;
    }

    status = TA_EXIT_USAGE;
    ta_cli_inputs in;
    tileattn_forward_args args;
    ta_npy_array d_o = {0}, got[3] = {{0}};
    double *ref[3] = {NULL, NULL, NULL};
    if (ta_cli_load_problem(cmd, &problem, paths.q, paths.k, paths.v, 1, &in, &args) != 0)
        goto done;
    int o_ndim, k_ndim;
    int64_t o_shape[4], k_shape[4], v_shape[4];
    shapes_of(&in, &o_ndim, o_shape, &k_ndim, k_shape, v_shape);
    if (load_shaped(cmd, paths.d_o, o_ndim, o_shape, in.q.dtype, &d_o)) goto done;
    const char *grad_paths_[3] = {paths.dq, paths.dk, paths.dv};
    const int64_t *shapes[3] = {in.q.shape, k_shape, v_shape};
    int ndims[3] = {in.q.ndim, k_ndim, in.v.ndim};
    char err[TA_NPY_ERR_LEN];
    for (int t = 0; t < 3; t++) {
        /* Keep the file's own dtype (for the tolerance): check, don't convert. */
        if (load_shaped(cmd, grad_paths_[t], ndims[t], shapes[t], TA_NPY_F64, &got[t])) goto done;
        ta_npy_free(&got[t]);
        if (ta_npy_read(grad_paths_[t], &got[t], err, sizeof err) != 0) {
            ta_cli_error(cmd, "%s", err);
            goto done;
        }
        ref[t] = malloc(got[t].count * sizeof(double) + 1);
        if (!ref[t]) {
            ta_cli_error(cmd, "out of memory for the reference");
            goto done;
        }
    }
    tileattn_backward_args bwd;
    tileattn_backward_args_init(&bwd);
    bwd.fwd = args;
    bwd.d_o = view_of(d_o.data, &in.dims, 0, in.dims.heads_q, in.dims.head_dim_v);
    tileattn_status st = tileattn_reference_backward(&bwd, ref[0], ref[1], ref[2], NULL);
    if (st != TILEATTN_OK) {
        ta_cli_error(cmd, "reference: %s", tileattn_status_string(st));
        goto done;
    }
    const char *labels[3] = {"dQ", "dK", "dV"};
    size_t bad = 0;
    for (int t = 0; t < 3; t++) {
        grad_tolerance tol = default_tolerance(in.q.dtype, got[t].dtype);
        if (atol >= 0.0f) tol.atol = atol;
        if (rtol >= 0.0f) tol.rtol = rtol;
        bad += compare_report(labels[t], &got[t], ref[t], tol);
    }
    puts(bad ? "FAIL" : "PASS");
    status = bad ? TA_EXIT_MISMATCH : TA_EXIT_OK;

done:
    for (int t = 0; t < 3; t++) {
        free(ref[t]);
        ta_npy_free(&got[t]);
    }
    ta_npy_free(&d_o);
    ta_cli_inputs_free(&in);
    return status;
}
