/*
 * The float64 reference: attention as the formula writes it, one query row
 * at a time. No tiles, no online softmax, no cleverness - this is the
 * statement of what every other backend must compute, and what the tests
 * and `tileattn check` compare against. Read it first.
 *
 * For query row i of head h in sequence b:
 *   1. score every key j the mask lets i see:
 *        s_j = scale * (q_i . k_j), then softcap, ALiBi and bias;
 *   2. softmax: p_j = exp(s_j - max) / (sum_j exp(s_j - max) [+ exp(sink - max)]);
 *   3. o_i = sum_j p_j v_j,  lse_i = max + log(the denominator).
 * Subtracting the max changes nothing mathematically; it keeps exp() from
 * overflowing, and FlashAttention's online softmax is this same trick done
 * incrementally.
 */
#include <math.h>
#include <stdlib.h>

#include "convert.h"
#include "desc.h"
#include "mask.h"

/* The pieces of one sequence that a row needs. */
typedef struct sequence {
    int64_t b;                /* batch index (for varlen: sequence index) */
    int64_t q_start, k_start; /* first token on the token axis */
    int64_t seqlen_q, seqlen_k;
} sequence;

/* Element offset of (b, token, head, 0) in a [B, S, H, dim] tensor. */
static int64_t offset_of(const tileattn_tensor *t, int varlen, int64_t b, int64_t token,
                         int64_t head) {
    return (varlen ? 0 : b * t->stride_b) + token * t->stride_s + head * t->stride_h;
}

/* Step 1: the score of query i against key j, or -inf if the mask hides j. */
static double score(const tileattn_forward_args *a, const sequence *seq, const ta_window *win,
                    double scale, int64_t h, int64_t i, int64_t j) {
    if (!ta_key_visible(win, i, j)) return -INFINITY;
    int varlen = a->cu_seqlens_q != NULL;
    int64_t kv_head = h / (a->heads_q / a->heads_kv);
    int64_t qo = offset_of(&a->q, varlen, seq->b, seq->q_start + i, h);
    int64_t ko = offset_of(&a->k, varlen, seq->b, seq->k_start + j, kv_head);

    double dot = 0.0;
    for (int64_t c = 0; c < a->head_dim; c++)
        dot += ta_load_f64(a->q.data, a->dtype, qo + c) * ta_load_f64(a->k.data, a->dtype, ko + c);
    double s = scale * dot;

    if (a->softcap > 0.0f) s = a->softcap * tanh(s / a->softcap);
    if (a->alibi_slopes) {
        double slope = a->alibi_slopes[seq->b * a->alibi_stride_b + h];
        s -= slope * (double)llabs(i + win->offset - j);
    }
    if (a->bias_kind != TILEATTN_BIAS_NONE) {
        int64_t bo = seq->b * a->bias_stride_b + h * a->bias_stride_h + i * a->bias_stride_q + j;
        if (a->bias_kind == TILEATTN_BIAS_ADDITIVE)
            s += ta_load_f64(a->bias, a->bias_dtype, bo);
        else if (!((const unsigned char *)a->bias)[bo])
            s = -INFINITY;
    }
    return s;
}

/* Steps 2 and 3 for one query row; scores has room for seqlen_k values. */
static void reference_row(const tileattn_forward_args *a, const sequence *seq, const ta_window *win,
                          double scale, int64_t h, int64_t i, double *scores, double *o_row,
                          double *lse) {
    int varlen = a->cu_seqlens_q != NULL;
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    int64_t kv_head = h / (a->heads_q / a->heads_kv);

    double max = a->sinks ? (double)a->sinks[h] : -INFINITY;
    for (int64_t j = 0; j < seq->seqlen_k; j++) {
        scores[j] = score(a, seq, win, scale, h, i, j);
        if (scores[j] > max) max = scores[j];
    }

    for (int64_t c = 0; c < dv; c++)
        o_row[c] = 0.0;
    if (max == -INFINITY) { /* the row sees no key and has no sink */
        *lse = -INFINITY;
        return;
    }
    double denominator = a->sinks ? exp((double)a->sinks[h] - max) : 0.0;
    for (int64_t j = 0; j < seq->seqlen_k; j++) {
        if (scores[j] == -INFINITY) continue;
        double p = exp(scores[j] - max);
        denominator += p;
        int64_t vo = offset_of(&a->v, varlen, seq->b, seq->k_start + j, kv_head);
        for (int64_t c = 0; c < dv; c++)
            o_row[c] += p * ta_load_f64(a->v.data, a->dtype, vo + c);
    }
    for (int64_t c = 0; c < dv; c++)
        o_row[c] /= denominator;
    *lse = max + log(denominator);
}

tileattn_status tileattn_reference_forward(const tileattn_forward_args *args, double *o,
                                           double *lse) {
    tileattn_status st = ta_validate(args, TA_VALIDATE_REFERENCE);
    if (st) return st;
    if (!o) return TILEATTN_ERR_NULL_POINTER;
    const tileattn_forward_args *a = args;
    int varlen = a->cu_seqlens_q != NULL;
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    int64_t total_q = varlen ? a->cu_seqlens_q[a->batch] : a->seqlen_q;
    double scale = a->scale > 0.0f ? (double)a->scale : 1.0 / sqrt((double)a->head_dim);

    int64_t longest_k = 0;
    for (int64_t b = 0; b < a->batch; b++) {
        int64_t len = varlen ? (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b] : a->seqlen_k;
        if (len > longest_k) longest_k = len;
    }
    double *scores = malloc((size_t)(longest_k > 0 ? longest_k : 1) * sizeof(double));
    if (!scores) return TILEATTN_ERR_OUT_OF_MEMORY;

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
            for (int64_t i = 0; i < seq.seqlen_q; i++) {
                /* Outputs are contiguous: O [.., token, H, Dv], LSE [B, H, Sq] or [H, total_q]. */
                int64_t token = varlen ? seq.q_start + i : b * a->seqlen_q + i;
                double row_lse;
                reference_row(a, &seq, &win, scale, h, i, scores, o + (token * a->heads_q + h) * dv,
                              &row_lse);
                if (lse)
                    lse[varlen ? h * total_q + token : (b * a->heads_q + h) * total_q + i] =
                        row_lse;
            }
    }
    free(scores);
    return TILEATTN_OK;
}
