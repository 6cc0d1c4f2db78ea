/*
 * Loading a problem from .npy files. The library validates its arguments
 * too, but only the command knows which file a size came from, so the
 * shapes are checked here first, each with a message naming the file.
 */
#define _POSIX_C_SOURCE 200809L

#include "io.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ta_cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tileattn %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void ta_cli_format_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, len, "(");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%lld", i > 0 ? ", " : "", (long long)shape[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
    if (used < len) snprintf(buf + used, len - used, ndim == 1 ? ",)" : ")");
}

int64_t ta_cli_shape_count(int ndim, const int64_t *shape) {
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(count, shape[i], &count)) return -1;
    }
    if ((uint64_t)count > SIZE_MAX) return -1;
    return count;
}

tileattn_dtype ta_cli_dtype_of(ta_npy_dtype dtype) {
    switch (dtype) {
    case TA_NPY_F16: return TILEATTN_F16;
    case TA_NPY_F64: return TILEATTN_F64;
    default: return TILEATTN_F32;
    }
}

/* Reads a file, printing the reader's message on failure. */
static int read_array(const char *cmd, const char *path, ta_npy_array *array) {
    char err[TA_NPY_ERR_LEN];
    if (ta_npy_read(path, array, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        return -1;
    }
    return 0;
}

static int convert_array(const char *cmd, const char *path, ta_npy_array *array, ta_npy_dtype to) {
    char err[TA_NPY_ERR_LEN];
    if (ta_npy_convert(array, to, path, err, sizeof err) != 0) {
        ta_cli_error(cmd, "%s", err);
        return -1;
    }
    return 0;
}

static int is_float_dtype(ta_npy_dtype dtype) {
    return dtype == TA_NPY_F32 || dtype == TA_NPY_F16 || dtype == TA_NPY_F64;
}

static int load_one_cu_seqlens(const char *cmd, const char *flag, const char *path,
                               ta_npy_array *cu, int64_t *total, int64_t *longest) {
    if (read_array(cmd, path, cu) != 0) return -1;
    if (cu->dtype != TA_NPY_I32 && cu->dtype != TA_NPY_I64) {
        ta_cli_error(cmd, "%s (%s): want int32 or int64 offsets, got %s", path, flag,
                     ta_npy_dtype_name(cu->dtype));
        return -1;
    }
    if (convert_array(cmd, path, cu, TA_NPY_I32) != 0) return -1;
    if (cu->ndim != 1 || cu->shape[0] < 2) {
        char shape[128];
        ta_cli_format_shape(shape, sizeof shape, cu->ndim, cu->shape);
        ta_cli_error(cmd, "%s (%s): want a 1-D array of B+1 offsets (B >= 1), got shape %s", path,
                     flag, shape);
        return -1;
    }
    const int32_t *offsets = cu->data;
    if (offsets[0] != 0) {
        ta_cli_error(cmd, "%s (%s): offsets must start at 0, not %d", path, flag, offsets[0]);
        return -1;
    }
    *longest = 0;
    for (size_t b = 1; b < cu->count; b++) {
        if (offsets[b] < offsets[b - 1]) {
            ta_cli_error(cmd, "%s (%s): offsets decrease at index %zu (%d after %d)", path, flag, b,
                         offsets[b], offsets[b - 1]);
            return -1;
        }
        int64_t length = (int64_t)offsets[b] - offsets[b - 1];
        if (length > *longest) *longest = length;
    }
    *total = offsets[cu->count - 1];
    return 0;
}

int ta_cli_load_cu_seqlens(const char *cmd, const ta_cli_problem *p, ta_cli_inputs *in) {
    in->dims.varlen = 0;
    if (p->cu_seqlens_q_path == NULL && p->cu_seqlens_k_path == NULL) return 0;
    if (p->cu_seqlens_q_path == NULL || p->cu_seqlens_k_path == NULL) {
        ta_cli_error(cmd, "--cu-seqlens-q and --cu-seqlens-k go together");
        return -1;
    }
    ta_cli_dims *d = &in->dims;
    if (load_one_cu_seqlens(cmd, "--cu-seqlens-q", p->cu_seqlens_q_path, &in->cu_seqlens_q,
                            &d->total_q, &d->seqlen_q) != 0 ||
        load_one_cu_seqlens(cmd, "--cu-seqlens-k", p->cu_seqlens_k_path, &in->cu_seqlens_k,
                            &d->total_k, &d->seqlen_k) != 0)
        return -1;
    if (in->cu_seqlens_q.count != in->cu_seqlens_k.count) {
        ta_cli_error(cmd, "%s has %zu offsets but %s has %zu: both are [B+1]", p->cu_seqlens_q_path,
                     in->cu_seqlens_q.count, p->cu_seqlens_k_path, in->cu_seqlens_k.count);
        return -1;
    }
    d->varlen = 1;
    d->batch = (int64_t)in->cu_seqlens_q.count - 1;
    return 0;
}

int ta_cli_load_qkv(const char *cmd, const char *q_path, const char *k_path, const char *v_path,
                    int allow_f64, ta_cli_inputs *in) {
    if (read_array(cmd, q_path, &in->q) != 0 || read_array(cmd, k_path, &in->k) != 0 ||
        read_array(cmd, v_path, &in->v) != 0)
        return -1;
    ta_npy_dtype dtype = in->q.dtype;
    if (!(dtype == TA_NPY_F32 || dtype == TA_NPY_F16 || (allow_f64 && dtype == TA_NPY_F64))) {
        ta_cli_error(cmd, "%s: dtype %s is not supported (want float32 or float16%s)", q_path,
                     ta_npy_dtype_name(dtype), allow_f64 ? " or float64" : "");
        return -1;
    }
    const char *kv_paths[2] = {k_path, v_path};
    const ta_npy_array *kv[2] = {&in->k, &in->v};
    for (int t = 0; t < 2; t++) {
        if (kv[t]->dtype != dtype) {
            ta_cli_error(cmd, "%s: dtype %s differs from %s's %s (Q, K and V share one dtype)",
                         kv_paths[t], ta_npy_dtype_name(kv[t]->dtype), q_path,
                         ta_npy_dtype_name(dtype));
            return -1;
        }
    }
    in->dtype = ta_cli_dtype_of(dtype);

    ta_cli_dims *d = &in->dims;
    const int varlen = d->varlen;
    const int want = varlen ? 3 : 4;
    const char *names[3] = {q_path, k_path, v_path};
    const ta_npy_array *arrays[3] = {&in->q, &in->k, &in->v};
    static const char *const layouts[2][3] = {
        {"[batch, seqlen_q, heads, head_dim]", "[batch, seqlen_k, heads_kv, head_dim]",
         "[batch, seqlen_k, heads_kv, head_dim_v]"},
        {"[total_q, heads, head_dim]", "[total_k, heads_kv, head_dim]",
         "[total_k, heads_kv, head_dim_v]"},
    };
    for (int t = 0; t < 3; t++) {
        if (arrays[t]->ndim != want) {
            char shape[256];
            ta_cli_format_shape(shape, sizeof shape, arrays[t]->ndim, arrays[t]->shape);
            const char *hint = varlen                 ? " (varlen)"
                               : arrays[t]->ndim == 3 ? " (3-D tensors need --cu-seqlens-q/k)"
                                                      : "";
            ta_cli_error(cmd, "%s: want %d dimensions %s, got shape %s%s", names[t], want,
                         layouts[varlen][t], shape, hint);
            return -1;
        }
    }
    const int64_t *qs = in->q.shape, *ks = in->k.shape, *vs = in->v.shape;
    if (!varlen) {
        d->batch = qs[0];
        d->seqlen_q = qs[1];
        d->seqlen_k = ks[1];
    }
    const int o = varlen ? 0 : 1; /* where the sequence axis sits */
    d->heads_q = qs[o + 1];
    d->head_dim = qs[o + 2];
    d->heads_kv = ks[o + 1];
    d->head_dim_v = vs[o + 2];
    if (!varlen && ks[0] != d->batch) {
        ta_cli_error(cmd, "%s: batch %lld differs from %s's %lld", k_path, (long long)ks[0], q_path,
                     (long long)d->batch);
        return -1;
    }
    if (ks[o + 2] != d->head_dim) {
        ta_cli_error(cmd, "%s: head_dim %lld differs from %s's %lld", k_path, (long long)ks[o + 2],
                     q_path, (long long)d->head_dim);
        return -1;
    }
    for (int axis = 0; axis < o + 2; axis++) {
        if (vs[axis] != ks[axis]) {
            char k_shape[256], v_shape[256];
            ta_cli_format_shape(k_shape, sizeof k_shape, in->k.ndim, ks);
            ta_cli_format_shape(v_shape, sizeof v_shape, in->v.ndim, vs);
            ta_cli_error(cmd, "%s: shape %s does not match %s's %s in all but the last axis",
                         v_path, v_shape, k_path, k_shape);
            return -1;
        }
    }
    if (varlen) {
        if (qs[0] != d->total_q) {
            ta_cli_error(cmd, "%s: %lld tokens, but cu_seqlens_q ends at %lld", q_path,
                         (long long)qs[0], (long long)d->total_q);
            return -1;
        }
        if (ks[0] != d->total_k) {
            ta_cli_error(cmd, "%s: %lld tokens, but cu_seqlens_k ends at %lld", k_path,
                         (long long)ks[0], (long long)d->total_k);
            return -1;
        }
    }
    for (int t = 0; t < 3; t++) {
        /* Varlen's token axis may be empty (every sequence empty); no other. */
        for (int axis = varlen ? 1 : 0; axis < want; axis++) {
            if (arrays[t]->shape[axis] == 0) {
                char shape[256];
                ta_cli_format_shape(shape, sizeof shape, arrays[t]->ndim, arrays[t]->shape);
                ta_cli_error(cmd, "%s: shape %s has an empty axis %s", names[t], shape,
                             layouts[varlen][t]);
                return -1;
            }
        }
    }
    if (d->heads_q % d->heads_kv != 0) {
        ta_cli_error(cmd,
                     "%s has %lld heads and %s %lld: the query heads must be a multiple "
                     "of the key/value heads",
                     q_path, (long long)d->heads_q, k_path, (long long)d->heads_kv);
        return -1;
    }
    if (d->head_dim > TILEATTN_MAX_HEAD_DIM || d->head_dim_v > TILEATTN_MAX_HEAD_DIM) {
        ta_cli_error(cmd, "head dimension %lld is above the library's limit of %d",
                     (long long)(d->head_dim > d->head_dim_v ? d->head_dim : d->head_dim_v),
                     TILEATTN_MAX_HEAD_DIM);
        return -1;
    }
    return 0;
}

static int load_float_vector(const char *cmd, const char *flag, const char *path,
                             ta_npy_array *array) {
    if (read_array(cmd, path, array) != 0) return -1;
    if (!is_float_dtype(array->dtype)) {
        ta_cli_error(cmd, "%s (%s): want floating-point values, got %s", path, flag,
                     ta_npy_dtype_name(array->dtype));
        return -1;
    }
    return convert_array(cmd, path, array, TA_NPY_F32);
}

static int load_bias(const char *cmd, const ta_cli_problem *p, ta_cli_inputs *in) {
    const int is_mask = p->mask_path != NULL;
    const char *flag = is_mask ? "--mask" : "--bias";
    const char *path = is_mask ? p->mask_path : p->bias_path;
    const ta_cli_dims *d = &in->dims;
    if (d->varlen) {
        ta_cli_error(cmd, "%s is not supported with --cu-seqlens (varlen)", flag);
        return -1;
    }
    ta_npy_array *bias = &in->bias;
    if (read_array(cmd, path, bias) != 0) return -1;
    if (is_mask) {
        if (bias->dtype != TA_NPY_BOOL && bias->dtype != TA_NPY_U8) {
            ta_cli_error(cmd,
                         "%s (--mask): want bool or uint8, got %s (use --bias for an "
                         "additive bias)",
                         path, ta_npy_dtype_name(bias->dtype));
            return -1;
        }
    } else {
        if (!is_float_dtype(bias->dtype)) {
            ta_cli_error(cmd,
                         "%s (--bias): want float32 or float16, got %s (use --mask for a "
                         "boolean mask)",
                         path, ta_npy_dtype_name(bias->dtype));
            return -1;
        }
        if (bias->dtype == TA_NPY_F64 && convert_array(cmd, path, bias, TA_NPY_F32) != 0) return -1;
    }
    /* Shapes broadcast as in NumPy: [Sq, Sk], [H|1, Sq, Sk] or
     * [B|1, H|1, Sq, Sk]. */
    const int n = bias->ndim;
    const int64_t *s = bias->shape;
    int ok = n >= 2 && n <= 4 && s[n - 2] == d->seqlen_q && s[n - 1] == d->seqlen_k;
    if (ok && n >= 3) ok = s[n - 3] == 1 || s[n - 3] == d->heads_q;
    if (ok && n == 4) ok = s[0] == 1 || s[0] == d->batch;
    if (!ok) {
        char shape[256];
        ta_cli_format_shape(shape, sizeof shape, n, s);
        ta_cli_error(cmd,
                     "%s (%s): want shape (B|1, H|1, Sq, Sk) = (%lld|1, %lld|1, %lld, %lld), "
                     "got %s",
                     path, flag, (long long)d->batch, (long long)d->heads_q, (long long)d->seqlen_q,
                     (long long)d->seqlen_k, shape);
        return -1;
    }
    return 0;
}

int ta_cli_load_extras(const char *cmd, const ta_cli_problem *p, ta_cli_inputs *in) {
    const ta_cli_dims *d = &in->dims;
    if (p->alibi_path != NULL) {
        if (load_float_vector(cmd, "--alibi", p->alibi_path, &in->alibi) != 0) return -1;
        const ta_npy_array *a = &in->alibi;
        int ok = (a->ndim == 1 && a->shape[0] == d->heads_q) ||
                 (a->ndim == 2 && a->shape[0] == d->batch && a->shape[1] == d->heads_q);
        if (!ok) {
            char shape[256];
            ta_cli_format_shape(shape, sizeof shape, a->ndim, a->shape);
            ta_cli_error(cmd,
                         "%s (--alibi): want slopes of shape (H,) = (%lld,) or (B, H) = "
                         "(%lld, %lld), got %s",
                         p->alibi_path, (long long)d->heads_q, (long long)d->batch,
                         (long long)d->heads_q, shape);
            return -1;
        }
    }
    if (p->sinks_path != NULL) {
        if (load_float_vector(cmd, "--sinks", p->sinks_path, &in->sinks) != 0) return -1;
        const ta_npy_array *a = &in->sinks;
        if (!(a->ndim == 1 && a->shape[0] == d->heads_q)) {
            char shape[256];
            ta_cli_format_shape(shape, sizeof shape, a->ndim, a->shape);
            ta_cli_error(cmd, "%s (--sinks): want one logit per head, shape (%lld,), got %s",
                         p->sinks_path, (long long)d->heads_q, shape);
            return -1;
        }
    }
    if (p->bias_path != NULL && p->mask_path != NULL) {
        ta_cli_error(cmd, "--bias and --mask exclude each other");
        return -1;
    }
    if ((p->bias_path != NULL || p->mask_path != NULL) && load_bias(cmd, p, in) != 0) return -1;
    return 0;
}

void ta_cli_fill_args(const ta_cli_problem *p, const ta_cli_inputs *in,
                      tileattn_forward_args *args) {
    const ta_cli_dims *d = &in->dims;
    tileattn_forward_args_init(args);
    args->batch = d->batch;
    args->seqlen_q = d->seqlen_q;
    args->seqlen_k = d->seqlen_k;
    args->heads_q = d->heads_q;
    args->heads_kv = d->heads_kv;
    args->head_dim = d->head_dim;
    args->head_dim_v = d->head_dim_v;
    args->dtype = in->dtype;
    /* For varlen the tensors are [total, H, dim]; their batch stride is
     * ignored. */
    const int64_t rows_q = d->varlen ? d->total_q : d->seqlen_q;
    const int64_t rows_k = d->varlen ? d->total_k : d->seqlen_k;
    args->q = tileattn_tensor_contiguous(in->q.data, rows_q, d->heads_q, d->head_dim);
    args->k = tileattn_tensor_contiguous(in->k.data, rows_k, d->heads_kv, d->head_dim);
    args->v = tileattn_tensor_contiguous(in->v.data, rows_k, d->heads_kv, d->head_dim_v);
    /* O's strides without its buffer, which the caller allocates: planning
     * (info, bench) needs the layout only. */
    args->o = tileattn_tensor_out_contiguous(NULL, rows_q, d->heads_q, d->head_dim_v);

    args->scale = p->scale;
    args->causal = p->causal            ? TILEATTN_CAUSAL_BOTTOM_RIGHT
                   : p->causal_top_left ? TILEATTN_CAUSAL_TOP_LEFT
                                        : TILEATTN_CAUSAL_NONE;
    args->window_left = p->window_left;
    args->window_right = p->window_right;
    args->softcap = p->softcap;

    if (in->alibi.data != NULL) {
        args->alibi_slopes = in->alibi.data;
        args->alibi_stride_b = in->alibi.ndim == 2 ? d->heads_q : 0;
    }
    if (in->bias.data != NULL) {
        const ta_npy_array *b = &in->bias;
        const int n = b->ndim;
        const int64_t heads = n >= 3 ? b->shape[n - 3] : 1;
        const int64_t batch = n == 4 ? b->shape[0] : 1;
        /* These products are at most the file's element count: no overflow. */
        const int64_t plane = d->seqlen_q * d->seqlen_k;
        args->bias = b->data;
        args->bias_stride_q = d->seqlen_k;
        args->bias_stride_h = heads == 1 ? 0 : plane;
        args->bias_stride_b = batch == 1 ? 0 : heads * plane;
        if (b->dtype == TA_NPY_BOOL || b->dtype == TA_NPY_U8) {
            args->bias_kind = TILEATTN_BIAS_BOOL_MASK;
        } else {
            args->bias_kind = TILEATTN_BIAS_ADDITIVE;
            args->bias_dtype = b->dtype == TA_NPY_F16 ? TILEATTN_F16 : TILEATTN_F32;
        }
    }
    if (in->sinks.data != NULL) args->sinks = in->sinks.data;
    if (d->varlen) {
        args->cu_seqlens_q = in->cu_seqlens_q.data;
        args->cu_seqlens_k = in->cu_seqlens_k.data;
    }
    args->num_threads = p->threads;
    args->p_precision = p->p_input_dtype ? TILEATTN_P_INPUT_DTYPE : TILEATTN_P_FLOAT32;
}

int ta_cli_load_problem(const char *cmd, const ta_cli_problem *p, const char *q_path,
                        const char *k_path, const char *v_path, int allow_f64, ta_cli_inputs *in,
                        tileattn_forward_args *args) {
    memset(in, 0, sizeof *in);
    if (ta_cli_load_cu_seqlens(cmd, p, in) != 0 ||
        ta_cli_load_qkv(cmd, q_path, k_path, v_path, allow_f64, in) != 0 ||
        ta_cli_load_extras(cmd, p, in) != 0)
        return -1;
    ta_cli_fill_args(p, in, args);
    return 0;
}

void ta_cli_inputs_free(ta_cli_inputs *in) {
    ta_npy_free(&in->q);
    ta_npy_free(&in->k);
    ta_npy_free(&in->v);
    ta_npy_free(&in->cu_seqlens_q);
    ta_npy_free(&in->cu_seqlens_k);
    ta_npy_free(&in->alibi);
    ta_npy_free(&in->bias);
    ta_npy_free(&in->sinks);
}

int ta_cli_o_shape(const ta_cli_dims *d, int64_t shape[4]) {
    if (d->varlen) {
        shape[0] = d->total_q;
        shape[1] = d->heads_q;
        shape[2] = d->head_dim_v;
        return 3;
    }
    shape[0] = d->batch;
    shape[1] = d->seqlen_q;
    shape[2] = d->heads_q;
    shape[3] = d->head_dim_v;
    return 4;
}

int ta_cli_lse_shape(const ta_cli_dims *d, int64_t shape[3]) {
    if (d->varlen) {
        shape[0] = d->heads_q;
        shape[1] = d->total_q;
        return 2;
    }
    shape[0] = d->batch;
    shape[1] = d->heads_q;
    shape[2] = d->seqlen_q;
    return 3;
}
