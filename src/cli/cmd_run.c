/*
 * tileattn run: attention on tensors from .npy files, O (and LSE) written
 * back as .npy. Outputs are replaced atomically and together: both are
 * written to temporary files first, and only when both are complete are they
 * renamed into place, so a failed run changes no file.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flags.h"
#include "io.h"
#include "npy.h"
#include "paths.h"

#ifdef TILEATTN_CLI_HAVE_CUDA
#include "tileattn_cuda.h"
#endif

static void print_run_help(FILE *out) {
    fputs("Usage: tileattn run --q Q.npy --k K.npy --v V.npy --out O.npy [--lse LSE.npy]\n"
          "                    [mask flags]\n"
          "\n"
          "Computes O = softmax(scale * Q K^T + masks) V with the library's fast path.\n"
          "  Q [B, Sq, H, D], K [B, Sk, Hk, D], V [B, Sk, Hk, Dv]: float32 or float16\n"
          "  (with --cu-seqlens: [total, heads, dim]). O has Q's dtype and shape\n"
          "  [B, Sq, H, Dv]; LSE is float32 [B, H, Sq] ([H, total_q] for varlen).\n"
          "Outputs are replaced atomically: a failed run changes no file.\n"
          "\n"
          "  --device D           cpu, or cuda: the CUDA backend (float16 inputs; a build\n"
          "                       with -Dcuda, an NVIDIA GPU of compute capability 8.0+)\n"
          "                       [cpu]\n"
          "\n",
          out);
    ta_cli_print_problem_flags(out, 0);
}

int ta_cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    const char *q_path = NULL, *k_path = NULL, *v_path = NULL;
    const char *out_path = NULL, *lse_path = NULL, *device = "cpu";
    ta_cli_problem problem;
    ta_cli_problem_init(&problem);

    for (int i = 1; i < argc; i++) {
        if (ta_cli_is_help(argv[i])) {
            print_run_help(stdout);
            return TA_EXIT_OK;
        }
    }
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        if (ta_cli_is_shape_flag(arg)) {
            ta_cli_error(cmd,
                         "%s is for bench and info: run takes the shapes from the .npy "
                         "files",
                         arg);
            return TA_EXIT_USAGE;
        }
        int r = ta_cli_parse_problem_flag(argc, argv, &i, &problem);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--q", &q_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--k", &k_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--v", &v_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--out", &out_path);
        if (r == 0) r = ta_cli_path_flag(argc, argv, &i, "--lse", &lse_path);
        if (r == 0) r = ta_cli_text_flag(argc, argv, &i, "--device", &device);
        if (r < 0) return TA_EXIT_USAGE;
        if (r == 0) {
            ta_cli_error(cmd, "unknown argument '%s' (try 'tileattn run --help')", arg);
            return TA_EXIT_USAGE;
        }
    }
    if (q_path == NULL || k_path == NULL || v_path == NULL || out_path == NULL) {
        ta_cli_error(cmd, "--q, --k, --v and --out are required (try 'tileattn run --help')");
        return TA_EXIT_USAGE;
    }
    int on_gpu = strcmp(device, "cuda") == 0;
    if (!on_gpu && strcmp(device, "cpu") != 0) {
        ta_cli_error(cmd, "--device: want cpu or cuda, got '%s'", device);
        return TA_EXIT_USAGE;
    }
#ifndef TILEATTN_CLI_HAVE_CUDA
    if (on_gpu) {
        ta_cli_error(cmd, "--device cuda: this build has no CUDA backend (meson setup "
                          "-Dcuda=enabled, with nvcc)");
        return TA_EXIT_USAGE;
    }
#endif
    const ta_cli_path outputs[2] = {{"--out", out_path}, {"--lse", lse_path}};
    ta_cli_path inputs[9] = {{"--q", q_path}, {"--k", k_path}, {"--v", v_path}};
    int n_inputs = 3 + ta_cli_problem_inputs(&problem, inputs + 3);
    if (ta_cli_check_paths(cmd, outputs, 2, inputs, n_inputs) != 0) return TA_EXIT_USAGE;

    int status = TA_EXIT_USAGE;
    void *o = NULL;
    float *lse = NULL;
    ta_npy_pending pending[2] = {{0}}; /* O, LSE */
    ta_cli_inputs in;
    tileattn_forward_args args;
    if (ta_cli_load_problem(cmd, &problem, q_path, k_path, v_path, 0, &in, &args) != 0) goto done;

    int64_t o_shape[4], lse_shape[3];
    int o_ndim = ta_cli_o_shape(&in.dims, o_shape);
    int lse_ndim = ta_cli_lse_shape(&in.dims, lse_shape);
    int64_t o_count = ta_cli_shape_count(o_ndim, o_shape);
    int64_t lse_count = ta_cli_shape_count(lse_ndim, lse_shape);
    size_t o_bytes;
    if (o_count < 0 || lse_count < 0 ||
        __builtin_mul_overflow((size_t)o_count, tileattn_dtype_size(args.dtype), &o_bytes)) {
        ta_cli_error(cmd, "the output is too large for this machine");
        goto done;
    }
    /* One spare element: malloc(0) may return NULL. */
    o = malloc(o_bytes + 1);
    if (lse_path != NULL) lse = malloc(((size_t)lse_count + 1) * sizeof *lse);
    if (o == NULL || (lse_path != NULL && lse == NULL)) {
        ta_cli_error(cmd, "out of memory for the output (%zu bytes)", o_bytes);
        goto done;
    }
    const int64_t rows_q = in.dims.varlen ? in.dims.total_q : in.dims.seqlen_q;
    args.o = tileattn_tensor_out_contiguous(o, rows_q, in.dims.heads_q, in.dims.head_dim_v);
    args.lse = lse;

    tileattn_status forward_status = TILEATTN_OK;
    if (!on_gpu) {
        forward_status = tileattn_forward(&args);
    } else {
#ifdef TILEATTN_CLI_HAVE_CUDA
        if (!tileattn_cuda_available()) {
            ta_cli_error(cmd, "--device cuda: no CUDA device of compute capability 8.0 or newer");
            goto done;
        }
        forward_status = tileattn_cuda_forward_host(&args);
        if (forward_status != TILEATTN_OK) {
            const char *why = tileattn_cuda_last_error_string();
            ta_cli_error(cmd, "--device cuda: %s%s%s", tileattn_status_string(forward_status),
                         *why ? ": " : "", why);
            goto done;
        }
#endif
    }
    if (forward_status != TILEATTN_OK) {
        ta_cli_error(cmd, "%s", tileattn_status_string(forward_status));
        goto done;
    }

    char err[TA_NPY_ERR_LEN];
    ta_npy_dtype o_dtype = in.q.dtype;
    if (ta_npy_write_temp(out_path, o_dtype, o_ndim, o_shape, o, &pending[0], err, sizeof err) !=
            0 ||
        (lse_path != NULL && ta_npy_write_temp(lse_path, TA_NPY_F32, lse_ndim, lse_shape, lse,
                                               &pending[1], err, sizeof err) != 0)) {
        ta_cli_error(cmd, "%s", err);
        goto done;
    }
    /* Both files are complete on disk; only the renames remain, and a
     * failed second one puts the first target back. */
    if (ta_npy_commit_all(pending, lse_path != NULL ? 2 : 1, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        goto done;
    }
    status = TA_EXIT_OK;

done:
    ta_npy_discard(&pending[0]);
    ta_npy_discard(&pending[1]);
    free(o);
    free(lse);
    ta_cli_inputs_free(&in);
    return status;
}
