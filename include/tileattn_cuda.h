/*
 * tileattn_cuda — the CUDA backend of tileattn (library libtileattn_cuda).
 *
 * The same attention as tileattn_forward (see tileattn.h for the exact
 * semantics), computed on an NVIDIA GPU of compute capability 8.0 or newer
 * with tensor cores: float16 or bfloat16 inputs, float32 accumulation, the
 * FlashAttention-2 partitioning. It reads the same kernel description as the
 * CPU backend, so both skip exactly the same masked tiles.
 *
 * The CPU library never needs CUDA; only programs that link this library do.
 * Every function returns a status and never aborts; after a failure caused by
 * the CUDA runtime, tileattn_cuda_last_error_string() says what went wrong.
 *
 * What the GPU does not take (TILEATTN_ERR_UNSUPPORTED unless said otherwise):
 *   - float32 or float64 inputs (TILEATTN_ERR_BAD_DTYPE);
 *   - head_dim_v != head_dim;
 *   - a head dimension that is not a multiple of 8;
 *   - an additive bias or a boolean mask (bias_kind != TILEATTN_BIAS_NONE);
 *   - tensors whose data pointers are not 16-byte aligned, or whose batch,
 *     sequence or head strides are not multiples of 8 elements;
 *   - more than 65535 heads or batch entries.
 * Everything else in tileattn_forward_args is honoured: causal masks of both
 * alignments, sliding windows, softcap, ALiBi, GQA/MQA, varlen, sinks, LSE.
 */
#ifndef TILEATTN_CUDA_H
#define TILEATTN_CUDA_H

#include "tileattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TILEATTN_CUDA_API __attribute__((visibility("default")))
#else
#define TILEATTN_CUDA_API
#endif

/* 1 when a CUDA device of compute capability 8.0 or newer is present and
 * usable through the current device, 0 otherwise (no driver, no device, an
 * older device). Cheap after the first call. */
TILEATTN_CUDA_API int tileattn_cuda_available(void);

/* The attention forward on the current CUDA device.
 *
 * Every pointer in args (q, k, v, o, lse, alibi_slopes, sinks, cu_seqlens_q,
 * cu_seqlens_k) must be DEVICE memory. stream is a cudaStream_t (NULL: the
 * legacy default stream). The call is asynchronous: it returns once the
 * kernel is queued, and O and LSE are ready when the stream reaches that
 * point. With varlen, the call first copies cu_seqlens_q and cu_seqlens_k
 * (batch + 1 int32 each) to the host, on stream, and waits for that copy:
 * validation and the grid size need the lengths.
 *
 * Validation runs on the host before anything is launched, so a failing
 * call leaves the outputs untouched. args->num_threads is ignored. */
TILEATTN_CUDA_API tileattn_status tileattn_cuda_forward(const tileattn_forward_args *args,
                                                        void *stream);

/* The same forward with every pointer in host_args in HOST memory: copies
 * the inputs (and O, so elements a strided O skips keep their values) to the
 * device, runs tileattn_cuda_forward, waits, copies O and LSE back and frees
 * the device buffers. Synchronous; for the command-line tool and the tests. */
TILEATTN_CUDA_API tileattn_status
tileattn_cuda_forward_host(const tileattn_forward_args *host_args);

/* A description of the last failure of a tileattn_cuda_* call on this
 * thread: the CUDA runtime's error name and message, or the reason an
 * argument was unsupported. Empty string ("") when nothing failed yet.
 * Thread-local; valid until the next tileattn_cuda_* call on this thread. */
TILEATTN_CUDA_API const char *tileattn_cuda_last_error_string(void);

/* Writes into buf (NUL-terminated, truncated to len) the GPU plan for args:
 * the kernel instantiation (head dimension, tile sizes, warps), the grid and
 * the shared memory per block. host_args are HOST pointers (cu_seqlens are
 * read; tensor data is not). */
TILEATTN_CUDA_API tileattn_status
tileattn_cuda_describe_plan(const tileattn_forward_args *host_args, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TILEATTN_CUDA_H */
