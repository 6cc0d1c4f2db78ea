/*
 * The public C API of libtileattn_cuda: planning, launching, the host-memory
 * helper and error reporting. CUDA runtime failures become status codes with
 * a thread-local message; nothing here aborts.
 */
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash_fwd_launch.cuh"
#include "plan_cuda.h"
#include "tileattn_cuda.h"

static thread_local char ta_cuda_error[512];

static void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ta_cuda_error, sizeof ta_cuda_error, fmt, ap);
    va_end(ap);
}

/* Maps a CUDA runtime error to a status and records its message. */
static tileattn_status cuda_failure(cudaError_t err, const char *what) {
    set_error("%s: %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err));
    switch (err) {
    case cudaErrorMemoryAllocation: return TILEATTN_ERR_OUT_OF_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion: return TILEATTN_ERR_UNSUPPORTED;
    default: return TILEATTN_ERR_DEVICE;
    }
}

#define CUDA_TRY(call, what)                                                                       \
    do {                                                                                           \
        cudaError_t ta_err_ = (call);                                                              \
        if (ta_err_ != cudaSuccess) {                                                              \
            st = cuda_failure(ta_err_, what);                                                      \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

extern "C" const char *tileattn_cuda_last_error_string(void) {
    return ta_cuda_error;
}

/* The current device's multiprocessor count and compute capability. */
static tileattn_status current_device(ta_cuda_device *out) {
    int dev = 0, count = 0, major = 0, minor = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) return cuda_failure(err, "cudaGetDeviceCount");
    if (count == 0) return cuda_failure(cudaErrorNoDevice, "cudaGetDeviceCount");
    if ((err = cudaGetDevice(&dev)) != cudaSuccess) return cuda_failure(err, "cudaGetDevice");
    err = cudaDeviceGetAttribute(&out->sm_count, cudaDevAttrMultiProcessorCount, dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (err != cudaSuccess) return cuda_failure(err, "cudaDeviceGetAttribute");
    out->cc = 10 * major + minor;
    return TILEATTN_OK;
}

extern "C" int tileattn_cuda_available(void) {
    ta_cuda_device dev = {0, 0};
    if (current_device(&dev) != TILEATTN_OK) return 0;
    return dev.cc >= 80;
}

static tileattn_status plan(const tileattn_forward_args *host_view, ta_cuda_device dev,
                            ta_desc *desc) {
    char why[256];
    tileattn_status st = ta_plan_cuda(host_view, dev, desc, why, sizeof why);
    if (st) set_error("%s", why);
    return st;
}

extern "C" tileattn_status tileattn_cuda_forward(const tileattn_forward_args *args, void *stream) {
    ta_cuda_error[0] = '\0';
    if (!args) return TILEATTN_ERR_NULL_POINTER;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    tileattn_status st = TILEATTN_OK;
    ta_cuda_device dev = {0, 0};
    int32_t *cu_host = NULL;
    ta_desc desc;
    tileattn_forward_args host_view = *args;
    if ((st = current_device(&dev))) return st;
    if (dev.cc < 80) {
        set_error("the CUDA backend needs compute capability 8.0 or newer (found %d.%d)",
                  dev.cc / 10, dev.cc % 10);
        return TILEATTN_ERR_UNSUPPORTED;
    }

    /* Validation and the grid need the sequence lengths on the host. Only
     * copied once batch is known to be sane; otherwise validation fails
     * before it would read them. */
    if (args->cu_seqlens_q && args->cu_seqlens_k && args->batch >= 1 && args->batch < INT32_MAX) {
        size_t n = (size_t)args->batch + 1;
        cu_host = static_cast<int32_t *>(malloc(2 * n * sizeof(int32_t)));
        if (!cu_host) return TILEATTN_ERR_OUT_OF_MEMORY;
        CUDA_TRY(cudaMemcpyAsync(cu_host, args->cu_seqlens_q, n * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost, s),
                 "copying cu_seqlens_q to the host");
        CUDA_TRY(cudaMemcpyAsync(cu_host + n, args->cu_seqlens_k, n * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost, s),
                 "copying cu_seqlens_k to the host");
        CUDA_TRY(cudaStreamSynchronize(s), "waiting for cu_seqlens");
        host_view.cu_seqlens_q = cu_host;
        host_view.cu_seqlens_k = cu_host + n;
    }
    if ((st = plan(&host_view, dev, &desc))) goto cleanup;
    if (desc.num_q_tiles == 0) goto cleanup; /* every sequence is empty: nothing to write */

    {
        cudaError_t err = cudaErrorInvalidValue;
        switch (ta_cuda_kernel_head_dim(desc.head_dim)) {
        case 64: err = ta_cuda_fwd_hdim64(desc, *args, s); break;
        case 128: err = ta_cuda_fwd_hdim128(desc, *args, s); break;
        case 256: err = ta_cuda_fwd_hdim256(desc, *args, s); break;
        }
        if (err != cudaSuccess) st = cuda_failure(err, "launching the forward kernel");
    }
cleanup:
    free(cu_host);
    return st;
}

/* Elements a [n0, n1, n2, dim] view spans from its first element. */
static size_t view_elems(int64_t n0, int64_t n1, int64_t n2, const int64_t stride[3], int64_t dim) {
    int64_t n[3] = {n0, n1 > 0 ? n1 : 1, n2};
    int64_t end = dim;
    for (int a = 0; a < 3; a++)
        end += (n[a] - 1) * stride[a];
    return (size_t)end;
}

/* cudaMalloc + copy in, for an optional input (NULL stays NULL). */
static cudaError_t upload(void **dev, const void *host, size_t bytes) {
    *dev = NULL;
    if (!host) return cudaSuccess;
    cudaError_t err = cudaMalloc(dev, bytes ? bytes : 1);
    if (err != cudaSuccess) return err;
    return cudaMemcpy(*dev, host, bytes, cudaMemcpyHostToDevice);
}

extern "C" tileattn_status tileattn_cuda_forward_host(const tileattn_forward_args *host_args) {
    ta_cuda_error[0] = '\0';
    tileattn_status st = tileattn_validate(host_args);
    if (st) {
        set_error("%s", tileattn_status_string(st));
        return st;
    }
    const tileattn_forward_args *a = host_args;
    int varlen = a->cu_seqlens_q != NULL;
    int64_t dv = a->head_dim_v ? a->head_dim_v : a->head_dim;
    int64_t rows_q = varlen ? a->cu_seqlens_q[a->batch] : a->seqlen_q;
    int64_t rows_k = varlen ? a->cu_seqlens_k[a->batch] : a->seqlen_k;
    int64_t batch = varlen ? 1 : a->batch;
    size_t es = tileattn_dtype_size(a->dtype);
    int64_t qs[3] = {varlen ? 0 : a->q.stride_b, a->q.stride_s, a->q.stride_h};
    int64_t ks[3] = {varlen ? 0 : a->k.stride_b, a->k.stride_s, a->k.stride_h};
    int64_t vs[3] = {varlen ? 0 : a->v.stride_b, a->v.stride_s, a->v.stride_h};
    int64_t os[3] = {varlen ? 0 : a->o.stride_b, a->o.stride_s, a->o.stride_h};
    size_t q_bytes = view_elems(batch, rows_q, a->heads_q, qs, a->head_dim) * es;
    size_t k_bytes = view_elems(batch, rows_k, a->heads_kv, ks, a->head_dim) * es;
    size_t v_bytes = view_elems(batch, rows_k, a->heads_kv, vs, dv) * es;
    size_t o_bytes = view_elems(batch, rows_q, a->heads_q, os, dv) * es;
    size_t lse_bytes =
        (size_t)(varlen ? a->heads_q * rows_q : a->batch * a->heads_q * a->seqlen_q) *
        sizeof(float);
    size_t alibi_bytes =
        (size_t)(a->alibi_stride_b ? (a->batch - 1) * a->alibi_stride_b + a->heads_q : a->heads_q) *
        sizeof(float);
    size_t cu_bytes = (size_t)(a->batch + 1) * sizeof(int32_t);

    tileattn_forward_args dev = *a;
    void *q = NULL, *k = NULL, *v = NULL, *o = NULL, *lse = NULL, *alibi = NULL, *sinks = NULL,
         *cu_q = NULL, *cu_k = NULL;
    CUDA_TRY(upload(&q, a->q.data, q_bytes), "copying Q to the device");
    CUDA_TRY(upload(&k, a->k.data, k_bytes), "copying K to the device");
    CUDA_TRY(upload(&v, a->v.data, v_bytes), "copying V to the device");
    CUDA_TRY(upload(&o, a->o.data, o_bytes), "copying O to the device");
    CUDA_TRY(upload(&lse, a->lse, lse_bytes), "copying LSE to the device");
    CUDA_TRY(upload(&alibi, a->alibi_slopes, alibi_bytes), "copying ALiBi slopes to the device");
    CUDA_TRY(upload(&sinks, a->sinks, (size_t)a->heads_q * sizeof(float)),
             "copying sinks to the device");
    CUDA_TRY(upload(&cu_q, a->cu_seqlens_q, cu_bytes), "copying cu_seqlens_q to the device");
    CUDA_TRY(upload(&cu_k, a->cu_seqlens_k, cu_bytes), "copying cu_seqlens_k to the device");
    dev.q.data = q;
    dev.k.data = k;
    dev.v.data = v;
    dev.o.data = o;
    dev.lse = static_cast<float *>(lse);
    dev.alibi_slopes = static_cast<const float *>(alibi);
    dev.sinks = static_cast<const float *>(sinks);
    dev.cu_seqlens_q = static_cast<const int32_t *>(cu_q);
    dev.cu_seqlens_k = static_cast<const int32_t *>(cu_k);

    if ((st = tileattn_cuda_forward(&dev, NULL))) goto cleanup;
    CUDA_TRY(cudaStreamSynchronize(NULL), "running the forward kernel");
    CUDA_TRY(cudaMemcpy(a->o.data, o, o_bytes, cudaMemcpyDeviceToHost), "copying O back");
    if (a->lse)
        CUDA_TRY(cudaMemcpy(a->lse, lse, lse_bytes, cudaMemcpyDeviceToHost), "copying LSE back");
cleanup:
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(o);
    cudaFree(lse);
    cudaFree(alibi);
    cudaFree(sinks);
    cudaFree(cu_q);
    cudaFree(cu_k);
    return st;
}

extern "C" tileattn_status tileattn_cuda_describe_plan(const tileattn_forward_args *host_args,
                                                       char *buf, size_t len) {
    ta_cuda_error[0] = '\0';
    if (!buf || len == 0) return TILEATTN_ERR_NULL_POINTER;
    ta_cuda_device dev = {0, 0};
    if (current_device(&dev)) dev = (ta_cuda_device){0, 0}; /* plan for an unknown GPU */
    ta_desc d;
    tileattn_status st = plan(host_args, dev, &d);
    if (st) return st;
    int wgmma = ta_cuda_desc_engine(&d) == TA_CUDA_ENGINE_WGMMA;
    snprintf(buf, len,
             "cuda: %s, head dim %lld on the %d-wide %s kernel, tiles %lld x %lld (query x key), "
             "%d warps, grid %lld x %lld x %lld blocks, %zu bytes of shared memory per block, "
             "%d multiprocessors, compute capability %d.%d "
             "(TILEATTN_CUDA_TILES=%lldx%lldx%d:%s forces it)\n",
             d.dtype == TILEATTN_BF16 ? "bfloat16" : "float16", (long long)d.head_dim,
             ta_cuda_kernel_head_dim(d.head_dim), wgmma ? "wgmma" : "mma.sync",
             (long long)d.block_q, (long long)d.block_k, d.num_threads / 32,
             (long long)d.num_q_tiles, (long long)d.heads_q, (long long)d.batch, d.l1d_bytes,
             dev.sm_count, dev.cc / 10, dev.cc % 10, (long long)d.block_q, (long long)d.block_k,
             d.num_threads / 32, wgmma ? "wgmma" : "mma");
    return TILEATTN_OK;
}
