/*
 * The float64 reference backward: the gradients of attention as the chain
 * rule writes them, one query row at a time. Like reference.c, this is the
 * statement every faster backward is checked against; read it first.
 *
 * For query row i of head h (scores s_j over the keys j the row sees, a
 * sink logit if any, and the loss gradient g = dL/do_i):
 *   1. forward again, in double:  p_j = exp(s_j - lse),
 *      lse = log(sum_j exp(s_j) [+ exp(sink)]),  o_i = sum_j p_j v_j;
 *   2. dL/dv_j += p_j g                      (o_i is linear in v_j)
 *   3. dp_j = g . v_j                        (dL/dp_j)
 *   4. delta = sum_j p_j dp_j = g . o_i      (the softmax's Jacobian is
 *      dS_j = p_j (dp_j - delta)              diag(p) - p p^T; the sink has
 *                                             no value, so its dp is 0)
 *   5. back through the score: s_j = cap tanh(x_j / cap) + const with
 *      x_j = scale q_i . k_j, so dx_j = dS_j (1 - tanh^2(x_j / cap)), or
 *      dx_j = dS_j without softcap. ALiBi and the bias are constants.
 *   6. dL/dq_i += scale sum_j dx_j k_j;  dL/dk_j += scale dx_j q_i
 *   7. dL/dsink = p_sink (0 - delta) = -exp(sink - lse) delta.
 * Everything is summed in double over every row; with GQA the K and V
 * gradients of one KV head sum over its group of query heads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "desc.h"
#include "mask.h"

typedef struct sequence {
    int64_t b, q_start, k_start, seqlen_q, seqlen_k;
} sequence;

/* Element offset of (b, token, head, 0) in a [B, S, H, dim] tensor. */
static int64_t offset_of(const tileattn_tensor *t, int varlen, int64_t b, int64_t token,
                         int64_t head) {
    return (varlen ? 0 : b * t->stride_b) + token * t->stride_s + head * t->stride_h;
}

/* x = scale q_i . k_j, and the final score s_j built from it (-inf if hidden). */
static double raw_score(const tileattn_forward_args *a, const sequence *seq, double scale,
                        int64_t h, int64_t i, int64_t j) {
    int varlen = a->cu_seqlens_q != NULL;
    int64_t kv_head = h / (a->heads_q / a->heads_kv);
    int64_t qo = offset_of(&a->q, varlen, seq->b, seq->q_start + i, h);
    int64_t ko = offset_of(&a->k, varlen, seq->b, seq->k_start + j, kv_head);
    double dot = 0.0;
    for (int64_t c = 0; c < a->head_dim; c++)
        dot += ta_load_f64(a->q.data, a->dtype, qo + c) * ta_load_f64(a->k.data, a->dtype, ko + c);
    return scale * dot;
}

static double final_score(const tileattn_forward_args *a, const sequence *seq, const ta_window *win,
                          int64_t h, int64_t i, int64_t j, double x) {
    if (!ta_key_visible(win, i, j)) return -INFINITY;
    double s = x;
    if (a->softcap > 0.0f) s = a->softcap * tanh(x / a->softcap);
    if (a->alibi_slopes)
        s -= (double)a->alibi_slopes[seq->b * a->alibi_stride_b + h] *
             (double)llabs(i + win->offset - j);
    if (a->bias_kind != TILEATTN_BIAS_NONE) {
        int64_t bo = seq->b * a->bias_stride_b + h * a->bias_stride_h + i * a->bias_stride_q + j;
        if (a->bias_kind == TILEATTN_BIAS_ADDITIVE)
            s += ta_load_f64(a->bias, a->bias_dtype, bo);
        else if (!((const unsigned char *)a->bias)[bo])
            s = -INFINITY;
    }
    return s;
}

/* Scratch for one row: raw scores x_j, then probabilities p_j, then dp_j. */
typedef struct row_scratch {
    double *x, *p, *o;
} row_scratch;

static void backward_row(const tileattn_backward_args *args, const sequence *seq,
                         const ta_window *win, double scale, int64_t h, int64_t i, row_scratch *w,
                         double *dq, double *dk, double *dv, double *d_sinks) {
    const tileattn_forward_args *a = &args->fwd;
    int varlen = a->cu_seqlens_q != NULL;
    int64_t d = a->head_dim, dvd = a->head_dim_v ? a->head_dim_v : d;
    int64_t kv_head = h / (a->heads_q / a->heads_kv);
    int64_t n = seq->seqlen_k;

    /* Step 1: the forward, in double. */
    double max = a->sinks ? (double)a->sinks[h] : -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        w->x[j] = raw_score(a, seq, scale, h, i, j);
        w->p[j] = final_score(a, seq, win, h, i, j, w->x[j]);
        if (w->p[j] > max) max = w->p[j];
    }
    if (max == -INFINITY) return; /* the row sees nothing: every gradient is 0 */
    double denominator = a->sinks ? exp((double)a->sinks[h] - max) : 0.0;
    for (int64_t j = 0; j < n; j++) {
        w->p[j] = w->p[j] == -INFINITY ? 0.0 : exp(w->p[j] - max);
        denominator += w->p[j];
    }
    for (int64_t c = 0; c < dvd; c++)
        w->o[c] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        w->p[j] /= denominator;
        int64_t vo = offset_of(&a->v, varlen, seq->b, seq->k_start + j, kv_head);
        for (int64_t c = 0; c < dvd; c++)
            w->o[c] += w->p[j] * ta_load_f64(a->v.data, a->dtype, vo + c);
    }
    double lse = max + log(denominator);

    int64_t go = offset_of(&args->d_o, varlen, seq->b, seq->q_start + i, h);
    int64_t qo = offset_of(&a->q, varlen, seq->b, seq->q_start + i, h);
    /* Step 4's delta = g . o. */
    double delta = 0.0;
    for (int64_t c = 0; c < dvd; c++)
        delta += ta_load_f64(args->d_o.data, a->dtype, go + c) * w->o[c];

    int64_t q_token = varlen ? seq->q_start + i : seq->b * a->seqlen_q + i;
    double *dq_row = dq + (q_token * a->heads_q + h) * d;
    for (int64_t j = 0; j < n; j++) {
        if (w->p[j] == 0.0) continue; /* hidden (or underflowed): contributes nothing */
        int64_t k_token = varlen ? seq->k_start + j : seq->b * a->seqlen_k + j;
        int64_t vo = offset_of(&a->v, varlen, seq->b, seq->k_start + j, kv_head);
        int64_t ko = offset_of(&a->k, varlen, seq->b, seq->k_start + j, kv_head);
        double *dv_row = dv + (k_token * a->heads_kv + kv_head) * dvd;
        double *dk_row = dk + (k_token * a->heads_kv + kv_head) * d;
        /* Steps 2 and 3. */
        double dp = 0.0;
        for (int64_t c = 0; c < dvd; c++) {
            double g = ta_load_f64(args->d_o.data, a->dtype, go + c);
            dv_row[c] += w->p[j] * g;
            dp += g * ta_load_f64(a->v.data, a->dtype, vo + c);
        }
        /* Steps 4 and 5. */
        double ds = w->p[j] * (dp - delta);
        if (a->softcap > 0.0f) {
            double th = tanh(w->x[j] / a->softcap);
            ds *= 1.0 - th * th;
        }
        /* Step 6. */
        for (int64_t c = 0; c < d; c++) {
            dq_row[c] += scale * ds * ta_load_f64(a->k.data, a->dtype, ko + c);
            dk_row[c] += scale * ds * ta_load_f64(a->q.data, a->dtype, qo + c);
        }
    }
    /* Step 7. */
    if (d_sinks && a->sinks) d_sinks[h] -= exp((double)a->sinks[h] - lse) * delta;
}

tileattn_status tileattn_reference_backward(const tileattn_backward_args *args, double *dq,
                                            double *dk, double *dv, double *d_sinks) {
    if (!args) return TILEATTN_ERR_NULL_POINTER;
    const tileattn_forward_args *a = &args->fwd;
    tileattn_status st = ta_validate(a, TA_VALIDATE_REFERENCE);
    if (st) return st;
    if (!dq || !dk || !dv || !args->d_o.data) return TILEATTN_ERR_NULL_POINTER;
    if (d_sinks && !a->sinks) return TILEATTN_ERR_BAD_VALUE;

    int varlen = a->cu_seqlens_q != NULL;
    int64_t d = a->head_dim, dvd = a->head_dim_v ? a->head_dim_v : d;
    int64_t rows_q = varlen ? a->cu_seqlens_q[a->batch] : a->batch * a->seqlen_q;
    int64_t rows_k = varlen ? a->cu_seqlens_k[a->batch] : a->batch * a->seqlen_k;
    double scale = a->scale > 0.0f ? (double)a->scale : 1.0 / sqrt((double)d);

    int64_t longest_k = 0;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t len = varlen ? (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b] : a->seqlen_k;
        if (len > longest_k) longest_k = len;
    }
    size_t nk = (size_t)(longest_k > 0 ? longest_k : 1);
    row_scratch w = {malloc(nk * sizeof(double)), malloc(nk * sizeof(double)),
                     malloc((size_t)dvd * sizeof(double))};
    if (!w.x || !w.p || !w.o) {
        free(w.x);
        free(w.p);
        free(w.o);
        return TILEATTN_ERR_OUT_OF_MEMORY;
    }
    memset(dq, 0, (size_t)(rows_q * a->heads_q * d) * sizeof(double));
    memset(dk, 0, (size_t)(rows_k * a->heads_kv * d) * sizeof(double));
    memset(dv, 0, (size_t)(rows_k * a->heads_kv * dvd) * sizeof(double));
    if (d_sinks) memset(d_sinks, 0, (size_t)a->heads_q * sizeof(double));

    for (int64_t b = 0; b < a->batch; b++) {
        sequence seq = {b, 0, 0, a->seqlen_q, a->seqlen_k};
        if (varlen) {
            seq.q_start = a->cu_seqlens_q[b];
            seq.k_start = a->cu_seqlens_k[b];
            seq.seqlen_q = a->cu_seqlens_q[b + 1] - seq.q_start;
            seq.seqlen_k = a->cu_seqlens_k[b + 1] - seq.k_start;
        }
        ta_window win = {
            .offset = a->causal == TILEATTN_CAUSAL_TOP_LEFT ? 0 : seq.seqlen_k - seq.seqlen_q,
            .left = a->window_left,
            .right = a->causal != TILEATTN_CAUSAL_NONE ? 0 : a->window_right,
            .seqlen_k = seq.seqlen_k,
        };
        for (int64_t h = 0; h < a->heads_q; h++)
            for (int64_t i = 0; i < seq.seqlen_q; i++)
                backward_row(args, &seq, &win, scale, h, i, &w, dq, dk, dv, d_sinks);
    }
    free(w.x);
    free(w.p);
    free(w.o);
    return TILEATTN_OK;
}
