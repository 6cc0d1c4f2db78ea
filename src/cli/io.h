/*
 * Loading a problem's tensors from .npy files, shared by run, check and
 * info: every shape is checked against the others before the library sees
 * a pointer, so the buffers always hold exactly what the arguments claim.
 */
#ifndef TA_CLI_IO_H
#define TA_CLI_IO_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "npy.h"
#include "tileattn.h"

/* The problem's sizes, as the files (or, for info, the flags) give them. */
typedef struct ta_cli_dims {
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, head_dim_v;
    int varlen;
    int64_t total_q, total_k; /* varlen: tokens in Q and in K/V */
} ta_cli_dims;

/* The arrays behind one problem. bias holds the --mask file too. */
typedef struct ta_cli_inputs {
    ta_npy_array q, k, v;
    ta_npy_array cu_seqlens_q, cu_seqlens_k;
    ta_npy_array alibi, bias, sinks;
    ta_cli_dims dims;
    tileattn_dtype dtype; /* of Q, K and V */
} ta_cli_inputs;

/* Prints "tileattn <cmd>: <message>" on stderr. */
void ta_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the cu_seqlens files if p names them (both or neither), checking
 * that they are [B+1] offsets starting at 0 and never decreasing; sets
 * dims.varlen, batch, total_q/k and seqlen_q/k (the longest sequences). */
int ta_cli_load_cu_seqlens(const char *cmd, const ta_cli_problem *p, ta_cli_inputs *in);

/* Loads Q, K and V (float32 or float16, or float64 if allow_f64; all three
 * the same), checks their shapes against each other and against the
 * cu_seqlens already loaded, and sets dims and dtype. */
int ta_cli_load_qkv(const char *cmd, const char *q_path, const char *k_path, const char *v_path,
                    int allow_f64, ta_cli_inputs *in);

/* Loads the ALiBi slopes, bias or mask, and sinks named in p, checked
 * against dims. */
int ta_cli_load_extras(const char *cmd, const ta_cli_problem *p, ta_cli_inputs *in);

/* Fills args from p and the loaded arrays (NULL data where none is
 * loaded, as info does). O gets its contiguous strides and a NULL data
 * pointer, for the caller to set. */
void ta_cli_fill_args(const ta_cli_problem *p, const ta_cli_inputs *in,
                      tileattn_forward_args *args);

/* All of the above, for run and check. */
int ta_cli_load_problem(const char *cmd, const ta_cli_problem *p, const char *q_path,
                        const char *k_path, const char *v_path, int allow_f64, ta_cli_inputs *in,
                        tileattn_forward_args *args);

void ta_cli_inputs_free(ta_cli_inputs *in);

/* O's shape (4 or 3 dims) and LSE's (3 or 2 dims); returns ndim. */
int ta_cli_o_shape(const ta_cli_dims *dims, int64_t shape[4]);
int ta_cli_lse_shape(const ta_cli_dims *dims, int64_t shape[3]);

/* Number of elements of a shape, or -1 if the product overflows int64 or
 * size_t. */
int64_t ta_cli_shape_count(int ndim, const int64_t *shape);

/* Writes "(2, 3)" into buf. */
void ta_cli_format_shape(char *buf, size_t len, int ndim, const int64_t *shape);

/* The tileattn dtype of a float .npy dtype (F32, F16, F64). */
tileattn_dtype ta_cli_dtype_of(ta_npy_dtype dtype);

#endif /* TA_CLI_IO_H */
