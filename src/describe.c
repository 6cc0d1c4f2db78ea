/* Human-readable descriptions of the machine and of a plan (tileattn info). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "desc.h"
#include "dispatch.h"
#include "tileattn_config.h"
#include "topology.h"
#include "ukernel.h"

/* Indexed by tileattn_dtype. */
static const char *const dtype_names[] = {"float32", "float16", "bfloat16", "float64"};

/* snprintf that appends and never overruns; truncation is silent. */
static void append(char *buf, size_t len, size_t *used, const char *fmt, ...) {
    if (*used >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

tileattn_status tileattn_describe_machine(char *buf, size_t len) {
    if (!buf || len == 0) return TILEATTN_ERR_NULL_POINTER;
    const ta_topology *t = ta_topology_get();
    const ta_cpu_features *f = ta_cpu_features_get();
    size_t used = 0;
    buf[0] = '\0';
    append(buf, len, &used, "tileattn %s\n", TILEATTN_VERSION);
    append(buf, len, &used, "cores: %d (%d hardware threads)\n", t->cores, t->pus);
    append(buf, len, &used, "caches (from %s): L1d %zu KiB, L2 %zu KiB per core, L3 %zu KiB\n",
           t->source, t->l1d_bytes / 1024, t->l2_bytes / 1024, t->l3_bytes / 1024);
#if defined(__aarch64__)
    append(buf, len, &used, "cpu features: asimd=%d asimdhp=%d asimdfhm=%d bf16=%d\n", f->asimd,
           f->asimdhp, f->asimdfhm, f->bf16);
#else
    append(buf, len, &used,
           "cpu features: avx2=%d fma=%d f16c=%d avx512f=%d avx512bw=%d avx512vl=%d "
           "avx512dq=%d avx512_bf16=%d amx_tile=%d amx_bf16=%d (granted %d)\n",
           f->avx2, f->fma, f->f16c, f->avx512f, f->avx512bw, f->avx512vl, f->avx512dq,
           f->avx512_bf16, f->amx_tile, f->amx_bf16, f->amx_granted);
#endif
    append(buf, len, &used, "microkernels: %s (%s)\n", tileattn_isa_name(), ta_dispatch_reason());
    /* A table may serve only some input dtypes (a dot-product instruction
     * on 16-bit values); say which one each dtype gets. */
    static const tileattn_dtype dtypes[] = {TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16};
    append(buf, len, &used, "  by input dtype:");
    for (int i = 0; i < 3; i++) {
        const ta_ukernels *uk = ta_ukernels_for_dtype(dtypes[i], NULL);
        append(buf, len, &used, " %s %s%s", dtype_names[dtypes[i]], uk ? uk->isa : "none",
               uk && uk->q_native ? " (Q.K^T in the input dtype)" : "");
        append(buf, len, &used, i < 2 ? ";" : "\n");
    }
    return TILEATTN_OK;
}

tileattn_status tileattn_describe_plan(const tileattn_forward_args *args, char *buf, size_t len) {
    if (!buf || len == 0) return TILEATTN_ERR_NULL_POINTER;
    if (!args) return TILEATTN_ERR_NULL_POINTER;
    /* A plan depends on shapes only: stand in for absent data pointers so
     * that validation judges everything else. */
    static const float stand_in[1];
    static float o_stand_in[1]; /* apart from the inputs': O may not start where they do */
    tileattn_forward_args a = *args;
    if (!a.q.data) a.q.data = stand_in;
    if (!a.k.data) a.k.data = stand_in;
    if (!a.v.data) a.v.data = stand_in;
    if (!a.o.data) a.o.data = o_stand_in; /* never written */
    if (a.bias_kind != TILEATTN_BIAS_NONE && !a.bias) a.bias = stand_in;
    ta_desc d;
    tileattn_status st = ta_plan(&a, &d);
    if (st) return st;
    size_t used = 0;
    buf[0] = '\0';
    append(buf, len, &used, "problem: B=%lld Sq=%lld Sk=%lld H=%lld Hk=%lld D=%lld Dv=%lld %s%s\n",
           (long long)d.batch, (long long)d.seqlen_q, (long long)d.seqlen_k, (long long)d.heads_q,
           (long long)d.heads_kv, (long long)d.head_dim, (long long)d.head_dim_v,
           dtype_names[d.dtype], d.varlen ? " varlen (longest)" : "");
    append(buf, len, &used, "scale %.6g, window (%lld, %lld) aligned %s%s%s%s%s\n", d.scale,
           (long long)d.window_left, (long long)d.window_right,
           d.top_left ? "top-left" : "bottom-right", d.softcap > 0 ? ", softcap" : "",
           d.has_alibi ? ", alibi" : "",
           d.bias_kind == TILEATTN_BIAS_ADDITIVE    ? ", bias"
           : d.bias_kind == TILEATTN_BIAS_BOOL_MASK ? ", bool mask"
                                                    : "",
           d.has_sinks ? ", sinks" : "");
    append(buf, len, &used, "microkernels: %s (register block %d x %d; P.V with %s)\n", d.uk->isa,
           d.uk->mr, d.uk->nr, d.uk->p_bf16 ? "P rounded to bfloat16" : "P in float32");
    append(buf, len, &used,
           "tiles: work item %lld query rows, sub-tile %lld rows x K/V block %lld keys "
           "(packed K+V %zu KiB shared by %lld sub-tiles; item Q+O %zu KiB; S %zu KiB; "
           "L1d %zu KiB, L2 %zu KiB)\n",
           (long long)d.block_q, (long long)d.block_r, (long long)d.block_k,
           (size_t)(d.uk->packed_k_floats(d.block_k, d.head_dim) +
                    d.uk->packed_v_floats(d.block_k, d.head_dim_v)) *
               4 / 1024,
           (long long)((d.block_q + d.block_r - 1) / d.block_r),
           (size_t)(d.block_q * (d.head_dim + d.head_dim_v) * 4) / 1024,
           (size_t)(d.block_r * d.block_k * 4) / 1024, d.l1d_bytes / 1024, d.l2_bytes / 1024);
    append(buf, len, &used,
           "work: %lld items (batch x heads x %lld query blocks), longest first, %d threads, "
           "%zu KiB workspace per thread\n",
           (long long)d.num_work, (long long)d.num_q_tiles, d.num_threads,
           d.workspace_floats * sizeof(float) / 1024);
    append(buf, len, &used, "threads: %s\n", d.place_reason);
    return TILEATTN_OK;
}
