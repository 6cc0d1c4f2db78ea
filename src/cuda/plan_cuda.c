/*
 * The GPU planner. The "what" half of the description is the one every
 * backend shares (ta_describe_problem, src/describe_problem.c); the "how"
 * half picks one of the instantiated kernels.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_cuda.h"

typedef struct cuda_config {
    int head_dim, block_q, block_k, warps;
    ta_cuda_engine engine;
} cuda_config;

#define TA_CUDA_CONFIG_ENTRY(hd, bq, bk, w, e) {hd, bq, bk, w, TA_CUDA_ENGINE_##e},
static const cuda_config configs[] = {TA_CUDA_FWD_CONFIGS(TA_CUDA_CONFIG_ENTRY)};
#undef TA_CUDA_CONFIG_ENTRY
enum { NUM_CONFIGS = sizeof configs / sizeof configs[0] };

static tileattn_status fail(tileattn_status st, char *why, size_t why_len, const char *fmt, ...) {
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

int ta_cuda_kernel_head_dim(int64_t d) {
    return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

size_t ta_cuda_smem_bytes(int64_t kernel_head_dim, int64_t block_q, int64_t block_k,
                          ta_cuda_engine engine) {
    size_t tiles = (size_t)(block_q + 2 * 2 * block_k) * (size_t)kernel_head_dim * 2;
    return engine == TA_CUDA_ENGINE_WGMMA ? tiles + 1024 : tiles; /* + swizzle-atom alignment */
}

static int aligned16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

/* The 16-byte cp.async loads need every row to start on 16 bytes. */
static int rows_aligned(const void *data, const int64_t stride[3], int varlen) {
    return aligned16(data) && (varlen || stride[0] % 8 == 0) && stride[1] % 8 == 0 &&
           stride[2] % 8 == 0;
}

static tileattn_status check_supported(const tileattn_forward_args *a, const ta_desc *d, char *why,
                                       size_t why_len) {
    if (d->dtype != TILEATTN_F16 && d->dtype != TILEATTN_BF16)
        return fail(TILEATTN_ERR_BAD_DTYPE, why, why_len,
                    "the CUDA backend takes float16 and bfloat16 inputs only");
    if (d->head_dim_v != d->head_dim)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend needs head_dim_v == head_dim (got %lld and %lld)",
                    (long long)d->head_dim_v, (long long)d->head_dim);
    if (d->head_dim % 8 != 0)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend needs head_dim to be a multiple of 8 (got %lld)",
                    (long long)d->head_dim);
    if (d->bias_kind != TILEATTN_BIAS_NONE)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend does not take an additive bias or a boolean mask");
    if (d->heads_q > 65535 || d->batch > 65535)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend takes at most 65535 heads and batch entries");
    if (!rows_aligned(a->q.data, d->q_stride, d->varlen) ||
        !rows_aligned(a->k.data, d->k_stride, d->varlen) ||
        !rows_aligned(a->v.data, d->v_stride, d->varlen))
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend needs 16-byte aligned Q, K, V and strides that are "
                    "multiples of 8 elements");
    if (((uintptr_t)a->o.data & 3u) || d->o_stride[0] % 2 || d->o_stride[1] % 2 ||
        d->o_stride[2] % 2)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                    "the CUDA backend writes O in pairs: it needs a 4-byte aligned O and even "
                    "strides");
    return TILEATTN_OK;
}

/* wgmma kernels are sm_90a machine code: they run on compute capability
 * 9.0 only (newer GPUs get the mma.sync kernels' PTX). */
static int engine_runs_on(ta_cuda_engine engine, ta_cuda_device dev) {
    return engine == TA_CUDA_ENGINE_MMA || dev.cc == 90;
}

static const char *engine_name(ta_cuda_engine engine) {
    return engine == TA_CUDA_ENGINE_WGMMA ? "wgmma" : "mma";
}

/* TILEATTN_CUDA_TILES="BQxBKxWARPS:ENGINE" forces a configuration (for
 * tuning); ENGINE is mma or wgmma, and without it the first listed match. */
static tileattn_status forced_config(int head_dim, ta_cuda_device dev, const cuda_config **out,
                                     char *why, size_t why_len) {
    const char *env = getenv("TILEATTN_CUDA_TILES");
    *out = NULL;
    if (!env || !*env) return TILEATTN_OK;
    int bq, bk, w, end = 0;
    if (sscanf(env, "%dx%dx%d%n", &bq, &bk, &w, &end) == 3)
        for (int c = 0; c < NUM_CONFIGS; c++)
            if (configs[c].head_dim == head_dim && configs[c].block_q == bq &&
                configs[c].block_k == bk && configs[c].warps == w &&
                (env[end] == '\0' ||
                 (env[end] == ':' && !strcmp(env + end + 1, engine_name(configs[c].engine))))) {
                if (!engine_runs_on(configs[c].engine, dev))
                    return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len,
                                "TILEATTN_CUDA_TILES=%s is a wgmma kernel, which needs compute "
                                "capability 9.0 (this GPU: %d.%d)",
                                env, dev.cc / 10, dev.cc % 10);
                *out = &configs[c];
                return TILEATTN_OK;
            }
    return fail(TILEATTN_ERR_BAD_VALUE, why, why_len,
                "TILEATTN_CUDA_TILES=%s names no kernel instantiated for head dim %d", env,
                head_dim);
}

static const cuda_config *find_config(int head_dim, int block_q, int block_k, int warps,
                                      ta_cuda_engine engine) {
    for (int c = 0; c < NUM_CONFIGS; c++)
        if (configs[c].head_dim == head_dim && configs[c].block_q == block_q &&
            configs[c].block_k == block_k && configs[c].warps == warps &&
            configs[c].engine == engine)
            return &configs[c];
    return NULL;
}

/* The default choice; the measurements behind it are in bench/cuda/NOTES.md. */
static const cuda_config *default_config(const ta_desc *d, int head_dim, ta_cuda_device dev) {
    int masked = d->window_left >= 0 || d->window_right >= 0;
    /* On Hopper, wgmma. One warpgroup of 64 query rows per block (two or
     * more blocks share a multiprocessor, so one's loads and epilogue
     * overlap another's products) with 128-key tiles at D = 64, and 64-key
     * tiles for short masked problems, which waste less of the diagonal; at
     * D = 128 two warpgroups per block, except short masked problems.
     * Measured on an H200, bench/cuda/NOTES.md runs 10-12. */
    if (head_dim <= 128 && engine_runs_on(TA_CUDA_ENGINE_WGMMA, dev)) {
        if (head_dim == 64)
            return find_config(64, 64, masked && d->seqlen_q <= 2048 ? 64 : 128, 4,
                               TA_CUDA_ENGINE_WGMMA);
        if (masked && d->seqlen_q <= 2048) return find_config(128, 64, 64, 4, TA_CUDA_ENGINE_WGMMA);
        return find_config(128, 128, 128, 8, TA_CUDA_ENGINE_WGMMA);
    }
    int sm_count = dev.sm_count;
    int64_t heads = d->batch * d->heads_q;
    int64_t big_tiles = heads * ((d->seqlen_q + 127) / 128);
    /* 128-row tiles (32 rows per warp) halve the shared-memory traffic per
     * FLOP but need enough blocks to fill the GPU (two per multiprocessor),
     * and under a causal or window mask waste more work on the diagonal.
     * Measured on an H200 (bf16, 16k tokens): 64-row tiles win causal D = 64
     * below seqlen 4096 and causal D = 128 at seqlen 512; 128-row tiles win
     * everything else, by 10-40%. */
    int enough = big_tiles >= 2 * (int64_t)(sm_count > 0 ? sm_count : 1);
    if (head_dim == 64)
        return find_config(64, enough && (!masked || d->seqlen_q >= 4096) ? 128 : 64, 64, 4,
                           TA_CUDA_ENGINE_MMA);
    if (head_dim == 128)
        return find_config(128, enough && (!masked || d->seqlen_q >= 1024) ? 128 : 64, 64, 4,
                           TA_CUDA_ENGINE_MMA);
    return find_config(256, 64, 32, 4, TA_CUDA_ENGINE_MMA);
}

tileattn_status ta_plan_cuda(const tileattn_forward_args *args, ta_cuda_device dev, ta_desc *desc,
                             char *why, size_t why_len) {
    if (why && why_len) why[0] = '\0';
    tileattn_status st = tileattn_validate(args);
    if (st) return fail(st, why, why_len, "%s", tileattn_status_string(st));
    ta_desc d = {0};
    ta_describe_problem(args, &d);
    if ((st = check_supported(args, &d, why, why_len))) return st;

    int head_dim = ta_cuda_kernel_head_dim(d.head_dim);
    const cuda_config *c;
    if ((st = forced_config(head_dim, dev, &c, why, why_len))) return st;
    if (!c) c = default_config(&d, head_dim, dev);
    if (!c) return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len, "no kernel for this head dim");

    d.block_q = c->block_q;
    d.block_k = c->block_k;
    d.num_threads = 32 * c->warps;
    d.gpu_engine = c->engine;
    d.num_q_tiles = (d.seqlen_q + d.block_q - 1) / d.block_q;
    d.num_work = d.batch * d.heads_q * d.num_q_tiles;
    d.workspace_floats = 0; /* registers and shared memory only */
    d.l1d_bytes = ta_cuda_smem_bytes(head_dim, d.block_q, d.block_k, c->engine); /* per block */
    d.uk = NULL;
    if (d.num_q_tiles > INT32_MAX)
        return fail(TILEATTN_ERR_UNSUPPORTED, why, why_len, "too many query tiles for one grid");
    *desc = d;
    return TILEATTN_OK;
}
