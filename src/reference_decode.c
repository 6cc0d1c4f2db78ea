/*
 * The float64 reference for decoding: attention over a KV cache as the
 * formula writes it, one query row at a time. Read it next to
 * reference.c - the only new things are where a key lives and how many
 * keys a sequence has:
 *
 *   - key j of sequence b is at cache position j: in a contiguous cache that
 *     is row j of sequence b; in a paged cache it is slot j % block_size of
 *     physical block block_table[b][j / block_size];
 *   - an int8 cache holds integers; the value is integer * scale, with one
 *     scale per (block, KV head);
 *   - sequence b has Sk = cache_seqlens[b] keys, plus Sq_new when the new
 *     tokens were appended (this function reads them from the cache: it
 *     never writes, so run it after the append);
 *   - new token i sits at position Sk - Sq_new + i, which is the
 *     bottom-right alignment of tileattn_forward: causal lets it see keys
 *     j <= Sk - Sq_new + i.
 * Then, for query row i of head h:
 *   s_j = scale * (q_i . k_j), softcap, ALiBi; keys outside the window are
 *   dropped; p_j = exp(s_j - max) / (sum_j exp(s_j - max) [+ exp(sink - max)]);
 *   o_i = sum_j p_j v_j;  lse_i = max + log(denominator).
 */
#include <math.h>
#include <stdlib.h>

#include "convert.h"
#include "decode.h"
#include "mask.h"

/* Element c of the cached key or value at position pos, as a double. */
static double cache_value(const tileattn_decode_args *a, const tileattn_tensor_out *cache,
                          const float *scales, int64_t b, int64_t pos, int64_t kv_head, int64_t c) {
    int64_t offset = ta_cache_offset(a, cache, b, pos, kv_head);
    const char *row =
        (const char *)cache->data + offset * (int64_t)ta_cache_dtype_size(a->cache_dtype);
    double value = ta_cache_load_f32(row, a->cache_dtype, c); /* exact in double */
    if (a->cache_dtype == TILEATTN_CACHE_INT8)
        value *= scales[ta_cache_scale_index(a, b, pos, kv_head)];
    return value;
}

/* One query row: token i of sequence b, head h. scores holds Sk doubles. */
static void reference_row(const tileattn_decode_args *a, const ta_window *win, double scale,
                          int64_t b, int64_t i, int64_t h, double *scores, double *o_row,
                          double *lse) {
    int64_t d = a->head_dim, dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    int64_t kv_head = h / (a->heads_q / a->heads_kv);
    const char *q =
        (const char *)a->q.data + (b * a->q.stride_b + i * a->q.stride_s + h * a->q.stride_h) *
                                      (int64_t)tileattn_dtype_size(a->dtype);

    /* Step 1: scores, -inf where the mask hides the key. */
    double max = a->sinks ? (double)a->sinks[h] : -INFINITY;
    for (int64_t j = 0; j < win->seqlen_k; j++) {
        scores[j] = -INFINITY;
        if (!ta_key_visible(win, i, j)) continue;
        double dot = 0.0;
        for (int64_t c = 0; c < d; c++)
            dot += ta_load_f64(q, a->dtype, c) *
                   cache_value(a, &a->k_cache, a->k_scales, b, j, kv_head, c);
        double s = scale * dot;
        if (a->softcap > 0.0f) s = a->softcap * tanh(s / a->softcap);
        if (a->alibi_slopes)
            s -= (double)a->alibi_slopes[b * a->alibi_stride_b + h] *
                 (double)llabs(i + win->offset - j);
        scores[j] = s;
        if (s > max) max = s;
    }

    /* Steps 2 and 3: softmax and the weighted sum of values. */
    for (int64_t c = 0; c < dv; c++)
        o_row[c] = 0.0;
    if (max == -INFINITY) { /* no key and no sink */
        *lse = -INFINITY;
        return;
    }
    double denominator = a->sinks ? exp((double)a->sinks[h] - max) : 0.0;
    for (int64_t j = 0; j < win->seqlen_k; j++) {
        if (scores[j] == -INFINITY) continue;
        double p = exp(scores[j] - max);
        denominator += p;
        for (int64_t c = 0; c < dv; c++)
            o_row[c] += p * cache_value(a, &a->v_cache, a->v_scales, b, j, kv_head, c);
    }
    for (int64_t c = 0; c < dv; c++)
        o_row[c] /= denominator;
    *lse = max + log(denominator);
}

tileattn_status tileattn_reference_decode(const tileattn_decode_args *args, double *o,
                                          double *lse) {
    tileattn_status st = ta_validate_decode(args, 1);
    if (st) return st;
    if (!o) return TILEATTN_ERR_NULL_POINTER;
    const tileattn_decode_args *a = args;
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim, sq = a->seqlen_new;
    double scale = a->scale > 0.0f ? (double)a->scale : 1.0 / sqrt((double)a->head_dim);

    int64_t longest_k = 1;
    for (int64_t b = 0; b < a->batch; b++)
        if (ta_decode_seqlen_k(a, b) > longest_k) longest_k = ta_decode_seqlen_k(a, b);
    double *scores = malloc((size_t)longest_k * sizeof(double));
    if (!scores) return TILEATTN_ERR_OUT_OF_MEMORY;

    for (int64_t b = 0; b < a->batch; b++) {
        int64_t sk = ta_decode_seqlen_k(a, b);
        ta_window win = {
            .offset = sk - sq, /* bottom-right: the new tokens are the last Sq_new positions */
            .left = a->window_left,
            .right = a->causal ? 0 : a->window_right,
            .seqlen_k = sk,
        };
        for (int64_t h = 0; h < a->heads_q; h++)
            for (int64_t i = 0; i < sq; i++) {
                double row_lse;
                /* O is contiguous [B, Sq_new, H, Dv]; LSE is [B, H, Sq_new]. */
                reference_row(a, &win, scale, b, i, h, scores,
                              o + ((b * sq + i) * a->heads_q + h) * dv, &row_lse);
                if (lse) lse[(b * a->heads_q + h) * sq + i] = row_lse;
            }
    }
    free(scores);
    return TILEATTN_OK;
}
