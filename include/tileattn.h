/*
 * tileattn — exact attention on CPUs, the FlashAttention way.
 *
 * This is the only public header. Every function returns a tileattn_status;
 * nothing in the library aborts, exits or prints. All functions may be called
 * from several threads at once.
 *
 * Conventions follow FlashAttention (flash_attn_func / flash_attn_varlen_func)
 * so that a GPU kernel's output can be compared one to one:
 *
 *   Q   [B, Sq, H,  D ]      O   [B, Sq, H, Dv]      LSE [B, H, Sq] float32
 *   K   [B, Sk, Hk, D ]
 *   V   [B, Sk, Hk, Dv]
 *
 * Strides are counted in elements and may be anything for the batch, sequence
 * and head axes; the last axis (the head dimension) must be contiguous.
 * With varlen (cu_seqlens_q/k given), the batch axis disappears: tensors are
 * [total_tokens, heads, dim], sequence b occupies tokens
 * cu_seqlens[b] .. cu_seqlens[b+1]-1, and LSE is [H, total_q].
 */
#ifndef TILEATTN_H
#define TILEATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TILEATTN_VERSION_MAJOR 0
#define TILEATTN_VERSION_MINOR 1
#define TILEATTN_VERSION_PATCH 0

/* Largest head dimension (D and Dv) the library accepts. */
#define TILEATTN_MAX_HEAD_DIM 256

/* Status codes. 0 is success; every other value is an error that left the
 * output buffers untouched (validation happens before any write). */
typedef enum tileattn_status {
    TILEATTN_OK = 0,
    TILEATTN_ERR_NULL_POINTER,   /* a required pointer is NULL */
    TILEATTN_ERR_BAD_SIZE,       /* a size is zero, negative or out of range */
    TILEATTN_ERR_OVERFLOW,       /* a size product overflows */
    TILEATTN_ERR_SHAPE_MISMATCH, /* shapes disagree (H % Hk, strides, cu_seqlens...) */
    TILEATTN_ERR_BAD_VALUE,      /* NaN or negative scale/softcap, bad window... */
    TILEATTN_ERR_BAD_DTYPE,      /* a dtype this entry point does not take */
    TILEATTN_ERR_UNSUPPORTED,    /* a valid combination that is not implemented */
    TILEATTN_ERR_OUT_OF_MEMORY,  /* a workspace allocation failed */
    TILEATTN_ERR_BAD_ISA,        /* TILEATTN_ISA names an unknown instruction set */
} tileattn_status;

/* A short, static, human-readable message for a status. Never NULL. */
const char *tileattn_status_string(tileattn_status status);

/* Element types. Q, K and V share one dtype; O takes it too. Accumulation is
 * always float32. TILEATTN_F64 is accepted only by tileattn_reference_forward. */
typedef enum tileattn_dtype {
    TILEATTN_F32 = 0,
    TILEATTN_F16 = 1,
    TILEATTN_BF16 = 2,
    TILEATTN_F64 = 3,
} tileattn_dtype;

/* Bytes per element of a dtype, 0 for an unknown one. */
size_t tileattn_dtype_size(tileattn_dtype dtype);

/* A read-only 4-D tensor [B, S, H, dim] (or 3-D [tokens, H, dim] for varlen,
 * where stride_b is ignored). Strides in elements; dim is contiguous. */
typedef struct tileattn_tensor {
    const void *data;
    int64_t stride_b;
    int64_t stride_s;
    int64_t stride_h;
} tileattn_tensor;

/* A writable tensor of the same layout, for O. */
typedef struct tileattn_tensor_out {
    void *data;
    int64_t stride_b;
    int64_t stride_s;
    int64_t stride_h;
} tileattn_tensor_out;

/* Causal masking. FlashAttention aligns the causal diagonal to the bottom
 * right: query i sees key j iff j <= i + Sk - Sq. PyTorch's is_causal aligns
 * it to the top left: j <= i. The alignment applies to the window and to
 * ALiBi's distance as well (see tileattn_forward_args). */
typedef enum tileattn_causal {
    TILEATTN_CAUSAL_NONE = 0,
    TILEATTN_CAUSAL_BOTTOM_RIGHT = 1,
    TILEATTN_CAUSAL_TOP_LEFT = 2,
} tileattn_causal;

/* What the optional bias tensor holds. */
typedef enum tileattn_bias_kind {
    TILEATTN_BIAS_NONE = 0,
    TILEATTN_BIAS_ADDITIVE = 1, /* added to the score (after softcap and ALiBi); dtype bias_dtype */
    TILEATTN_BIAS_BOOL_MASK = 2, /* one byte per element: nonzero = the key is seen */
} tileattn_bias_kind;

/*
 * Everything one forward call needs. Zero-initialise it, then fill what you
 * use: every optional field's zero value means "off".
 *
 * The score of query i and key j (positions inside their own sequence) is
 *   s  = scale * dot(q_i, k_j)
 *   s  = softcap * tanh(s / softcap)               if softcap > 0
 *   s -= slope[h] * |i + off - j|                  if alibi_slopes
 *   s += bias[b, h, i, j]                          if an additive bias
 * and key j is hidden from query i when it falls outside the window
 *   [i + off - window_left, i + off + window_right]  (-1 = unbounded side)
 * or when the boolean mask is 0, where off = Sk - Sq (bottom-right alignment)
 * or 0 (causal == TILEATTN_CAUSAL_TOP_LEFT). Causal sets window_right = 0.
 * Then  O_i = sum_j softmax_j(s) v_j, with the sink logit (if any) joining
 * the softmax's denominator without a value, and
 *   LSE_i = log(sum_j exp(s_j) [+ exp(sink_h)]).
 * A row that sees no key (and has no sink) gets O = 0 and LSE = -inf.
 */
typedef struct tileattn_forward_args {
    /* Shapes. For varlen, batch is the number of sequences and seqlen_q /
     * seqlen_k are ignored (lengths come from cu_seqlens). */
    int64_t batch;      /* B  */
    int64_t seqlen_q;   /* Sq */
    int64_t seqlen_k;   /* Sk */
    int64_t heads_q;    /* H  */
    int64_t heads_kv;   /* Hk: H % Hk == 0; query head h reads KV head h / (H / Hk) */
    int64_t head_dim;   /* D, 1..TILEATTN_MAX_HEAD_DIM */
    int64_t head_dim_v; /* Dv, 1..TILEATTN_MAX_HEAD_DIM; 0 means Dv = D */
    tileattn_dtype dtype;

    tileattn_tensor q;
    tileattn_tensor k;
    tileattn_tensor v;
    tileattn_tensor_out o;
    float *lse; /* optional: [B, H, Sq] (or [H, total_q] for varlen), contiguous */

    /* Scaling and masking. */
    float scale; /* 0 means 1/sqrt(D); must be finite and >= 0 */
    tileattn_causal causal;
    int64_t window_left;  /* -1 = unbounded; use -1 for both when unused */
    int64_t window_right; /* -1 = unbounded */
    float softcap;        /* 0 = off; must be finite and >= 0 */

    /* ALiBi: slopes[h] ([H]) or slopes[b * alibi_stride_b + h] ([B, H]). */
    const float *alibi_slopes;
    int64_t alibi_stride_b; /* 0 = one slope vector shared by all batches */

    /* Optional bias or boolean mask [B or 1, H or 1, Sq, Sk]; the key axis is
     * contiguous, a stride of 0 broadcasts. Not supported with varlen. */
    tileattn_bias_kind bias_kind;
    const void *bias;
    tileattn_dtype bias_dtype; /* for TILEATTN_BIAS_ADDITIVE: F32, F16 or BF16 */
    int64_t bias_stride_b;
    int64_t bias_stride_h;
    int64_t bias_stride_q;

    /* Attention sinks: one logit per query head [H], float32, or NULL. */
    const float *sinks;

    /* Varlen: cumulative offsets [B + 1] (int32), both or neither. */
    const int32_t *cu_seqlens_q;
    const int32_t *cu_seqlens_k;

    /* Threads: 0 = OpenMP's default (OMP_NUM_THREADS, else all cores). */
    int num_threads;
} tileattn_forward_args;

/* Sets args to the defaults (every option off, windows -1, F32). */
void tileattn_forward_args_init(tileattn_forward_args *args);

/* Fills a tensor's strides for the contiguous layout [.., S, H, dim]. */
tileattn_tensor tileattn_tensor_contiguous(const void *data, int64_t seqlen, int64_t heads,
                                           int64_t dim);
tileattn_tensor_out tileattn_tensor_out_contiguous(void *data, int64_t seqlen, int64_t heads,
                                                   int64_t dim);

/* Checks args without computing anything: the validation that every entry
 * point runs first. */
tileattn_status tileattn_validate(const tileattn_forward_args *args);

/* The attention forward (FlashAttention-2 algorithm): writes O and, when
 * args->lse is set, LSE. Peak extra memory is O(threads x tile). */
tileattn_status tileattn_forward(const tileattn_forward_args *args);

/* The float64 reference: the same semantics computed plainly, one query row
 * at a time, in double precision. Inputs may also be TILEATTN_F64. Writes O
 * contiguous [B, Sq, H, Dv] (or [total_q, H, Dv]) and, if lse is not NULL,
 * LSE [B, H, Sq] (or [H, total_q]), both float64. args->o and args->lse are
 * ignored. Slow by design: O(Sq * Sk * D) per head, single-threaded. */
tileattn_status tileattn_reference_forward(const tileattn_forward_args *args, double *o,
                                           double *lse);

/* Writes into buf (NUL-terminated, truncated to len) a description of this
 * machine: caches, cores, the instruction set chosen and why. */
tileattn_status tileattn_describe_machine(char *buf, size_t len);

/* Writes into buf the plan the library would use for args (tile sizes,
 * microkernels, work split). Pointers in args may be NULL. */
tileattn_status tileattn_describe_plan(const tileattn_forward_args *args, char *buf, size_t len);

/* The name of the instruction set the microkernels use ("scalar", "avx2",
 * "avx512", "avx512bf16", "neon"...). Chosen once, at first use, from the CPU
 * and OS; the environment variable TILEATTN_ISA may force a lower one. */
const char *tileattn_isa_name(void);

#ifdef __cplusplus
}
#endif

#endif /* TILEATTN_H */
