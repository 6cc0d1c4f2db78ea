/*
 * The "what" half of the kernel description: the problem as every backend
 * sees it, normalised once (causal -> window_right = 0, Dv = 0 -> D,
 * scale = 0 -> 1/sqrt(D), varlen -> the longest sequences). The CPU planner
 * (plan.c) and the GPU planner (cuda/plan_cuda.c) both start from it, so
 * both backends compute and skip exactly the same things.
 */
#include <math.h>

#include "desc.h"

void ta_describe_problem(const tileattn_forward_args *a, ta_desc *d) {
    d->batch = a->batch;
    d->heads_q = a->heads_q;
    d->heads_kv = a->heads_kv;
    d->group = a->heads_q / a->heads_kv;
    d->head_dim = a->head_dim;
    d->head_dim_v = a->head_dim_v ? a->head_dim_v : a->head_dim;
    d->dtype = a->dtype;
    d->varlen = a->cu_seqlens_q != NULL;
    d->seqlen_q = a->seqlen_q;
    d->seqlen_k = a->seqlen_k;
    if (d->varlen) { /* the longest sequence sets the number of query tiles */
        d->seqlen_q = d->seqlen_k = 0;
        for (int64_t b = 0; b < a->batch; b++) {
            int64_t lq = (int64_t)a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
            int64_t lk = (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
            if (lq > d->seqlen_q) d->seqlen_q = lq;
            if (lk > d->seqlen_k) d->seqlen_k = lk;
        }
    }
    const tileattn_tensor *in[3] = {&a->q, &a->k, &a->v};
    int64_t *out[3] = {d->q_stride, d->k_stride, d->v_stride};
    for (int t = 0; t < 3; t++) {
        out[t][0] = d->varlen ? 0 : in[t]->stride_b;
        out[t][1] = in[t]->stride_s;
        out[t][2] = in[t]->stride_h;
    }
    d->o_stride[0] = d->varlen ? 0 : a->o.stride_b;
    d->o_stride[1] = a->o.stride_s;
    d->o_stride[2] = a->o.stride_h;

    d->scale = a->scale > 0.0f ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    d->softcap = a->softcap;
    d->window_left = a->window_left;
    d->window_right = a->causal != TILEATTN_CAUSAL_NONE ? 0 : a->window_right;
    d->top_left = a->causal == TILEATTN_CAUSAL_TOP_LEFT;
    d->has_alibi = a->alibi_slopes != NULL;
    d->alibi_stride_b = a->alibi_stride_b;
    d->bias_kind = a->bias_kind;
    d->bias_dtype = a->bias_dtype;
    d->bias_stride[0] = a->bias_stride_b;
    d->bias_stride[1] = a->bias_stride_h;
    d->bias_stride[2] = a->bias_stride_q;
    d->has_sinks = a->sinks != NULL;
    d->has_lse = a->lse != NULL;
}
