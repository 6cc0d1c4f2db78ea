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
 * and head axes: zero broadcasts an input, a negative stride reads an axis
 * backwards (data then points at its first logical element); outputs must
 * not write one element twice. The last axis (the head dimension) must be
 * contiguous.
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
    TILEATTN_ERR_DEVICE,         /* the GPU runtime failed (tileattn_cuda_last_error_string) */
    TILEATTN_ERR_BAD_ENV,        /* a TILEATTN_* environment variable has a bad value */
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

/* The precision of P, the softmax weights, in the product P.V. */
typedef enum tileattn_p_precision {
    /* P stays float32: float32 accuracy whatever the input dtype. */
    TILEATTN_P_FLOAT32 = 0,
    /* P may be rounded to the input dtype before P.V, as FlashAttention does
     * on GPUs (and this library's CUDA backend always does) and PyTorch's CPU
     * flash attention does for bfloat16. Where a table multiplies 16-bit
     * pairs (amx and avx512bf16, bfloat16 inputs) both products of the
     * attention then run on them; other tables keep P float32. The sums
     * that normalise O and make LSE use P before rounding, so LSE is as
     * accurate as with TILEATTN_P_FLOAT32, and each weight of O is off by at
     * most the dtype's unit roundoff (2^-8 for bfloat16): |O - O_float32P| <=
     * 2^-8 max|V| per column, far less in practice (rounding errors of many
     * keys cancel). tileattn_describe_plan says which P a plan uses; the
     * backward pass recomputes P in float32 whatever this says. */
    TILEATTN_P_INPUT_DTYPE = 1,
} tileattn_p_precision;

/*
 * Everything one forward call needs. Initialise it with
 * tileattn_forward_args_init, then fill what you use: every optional field's
 * init value means "off". A struct zeroed by hand is not the same: its
 * window_left = window_right = 0 is a window of one key (each query sees
 * only its diagonal), so set both to -1 there.
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
    /* O must not overlap Q, K, V or LSE (in-place attention is not
     * supported): one that starts where one of them starts, the same
     * buffer passed twice, is TILEATTN_ERR_SHAPE_MISMATCH. */
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

    /* Threads: 0 = OMP_NUM_THREADS where it is set, else one per physical
     * core this process may run on. A team of one thread per core is bound
     * one thread per core for the call (hwloc), unless OpenMP's binding
     * variables are set; TILEATTN_BIND_THREADS=1 binds smaller teams to the
     * first cores too, =0 never binds. More than 1024 are capped to 1024
     * (a larger team cannot help, and may fail to start). */
    int num_threads;

    /* P in P.V: float32 (the default) or allowed in the input dtype. */
    tileattn_p_precision p_precision;
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

/* The name of the best instruction set the microkernels use ("scalar",
 * "avx2", "avx512", "avx512bf16", "amx", "neon", "neonfhm", "neonbf16"). Chosen
 * once, at first use, from the CPU and OS; the environment variable
 * TILEATTN_ISA may force a lower one. Some sets serve only one input dtype
 * (amx and neonbf16 bfloat16, neonfhm float16: their Q.K^T multiplies the
 * 16-bit inputs); the other dtypes run on the next set below. */
const char *tileattn_isa_name(void);

/* The instruction set the forward pass uses for inputs of this dtype
 * (a "none (...)" message for a dtype it does not take). */
const char *tileattn_isa_name_for_dtype(tileattn_dtype dtype);

/* ==================================================================== */
/* Inference decoding with a KV cache (flash_attn_with_kvcache)           */
/* ==================================================================== */
/*
 * A few new query tokens per sequence (Sq_new: 1 for plain decoding, up to a
 * few dozen for speculative decoding) attend to the keys already in a KV
 * cache, optionally after appending their own keys and values to it:
 *
 *   Q      [B, Sq_new, H,  D ]     O   [B, Sq_new, H, Dv]   LSE [B, H, Sq_new] float32
 *   K_new  [B, Sq_new, Hk, D ]     V_new [B, Sq_new, Hk, Dv]      (optional)
 *   cache_seqlens [B] int32: tokens already in the cache of sequence b
 *
 * The cache is either contiguous,
 *   K cache [B, S_max, Hk, D],  V cache [B, S_max, Hk, Dv],
 * or paged (vLLM's PagedAttention): a pool of fixed-size blocks and a block
 * table mapping each sequence's logical blocks to physical ones,
 *   K pool [num_blocks, block_size, Hk, D],  V pool [num_blocks, block_size, Hk, Dv],
 *   block_table [B, max_blocks_per_seq] int32,
 * so key j of sequence b lives in block block_table[b][j / block_size] at
 * slot j % block_size.
 *
 * With K_new/V_new, the new tokens are first written into the cache at
 * positions cache_seqlens[b] .. cache_seqlens[b] + Sq_new - 1 (through the
 * block table when paged), and the sequence then has
 *   Sk_b = cache_seqlens[b] + Sq_new keys;
 * without them, Sk_b = cache_seqlens[b]. cache_seqlens itself is not
 * changed: the caller advances it. Query i (0 <= i < Sq_new) then attends
 * exactly as in tileattn_forward_args with Sq = Sq_new, Sk = Sk_b and the
 * bottom-right alignment off = Sk_b - Sq_new: causal lets new token i see keys
 * j <= cache_seqlens[b] + i (with the append); window, softcap, ALiBi and
 * sinks follow the same formulas. A row that sees no key (and has no sink)
 * gets O = 0 and LSE = -inf.
 *
 * dtypes: Q, K_new, V_new and O share `dtype` (F32, F16 or BF16); the cache
 * has its own `cache_dtype` (F32, F16, BF16 or INT8) and new tokens are
 * converted to it (round to nearest even) when appended. Accumulation is
 * float32.
 *
 * INT8 caches are symmetric int8 with one float32 scale per (block, KV head)
 * for K and one for V: value = scale * q, q in [-127, 127]. For a paged cache
 * the scales are [num_blocks, Hk]; a contiguous cache is cut into blocks of
 * block_size tokens along S and its scales are
 * [B, ceil(S_max / block_size), Hk]. Appending quantizes the new tokens with
 * the block's scale; when a new value needs a larger scale, the block's
 * existing tokens are requantized to it (each requantization rounds once
 * more). A block whose first appended slot is slot 0 starts fresh: its old
 * scale and contents are ignored, so scales need no initialisation. New
 * tokens for an int8 cache must be finite (inf or NaN has no int8 value:
 * TILEATTN_ERR_BAD_VALUE, nothing written).
 * Accuracy, measured against the float64 reference on the unquantized data
 * (tests/test_decode.c): see tileattn_decode.
 *
 * GQA/MQA: the H / Hk query heads that share a KV head, times the Sq_new
 * rows, form one query tile, so each KV byte is read from memory once. When
 * B x Hk leaves threads idle, the keys of a sequence are split into chunks
 * processed by different threads and merged with their log-sum-exps
 * (flash-decoding); tileattn_describe_decode prints the split chosen.
 */

/* Element type of a KV cache: the storage dtypes, plus symmetric int8 with
 * per-block scales. */
typedef enum tileattn_cache_dtype {
    TILEATTN_CACHE_F32 = TILEATTN_F32,
    TILEATTN_CACHE_F16 = TILEATTN_F16,
    TILEATTN_CACHE_BF16 = TILEATTN_BF16,
    TILEATTN_CACHE_INT8 = 16,
} tileattn_cache_dtype;

/* Everything one decoding call needs. Initialise it with
 * tileattn_decode_args_init, then fill what you use: every optional field's
 * init value means "off" (a struct zeroed by hand has window_left =
 * window_right = 0, a window of one key: set both to -1 there). */
typedef struct tileattn_decode_args {
    /* Shapes. */
    int64_t batch;        /* B */
    int64_t seqlen_new;   /* Sq_new >= 1: query rows per sequence (and new tokens, with K_new) */
    int64_t heads_q;      /* H */
    int64_t heads_kv;     /* Hk: H % Hk == 0; query head h reads KV head h / (H / Hk) */
    int64_t head_dim;     /* D, 1..TILEATTN_MAX_HEAD_DIM */
    int64_t head_dim_v;   /* Dv, 1..TILEATTN_MAX_HEAD_DIM; 0 means Dv = D */
    tileattn_dtype dtype; /* Q, K_new, V_new, O: F32, F16 or BF16 */
    tileattn_cache_dtype cache_dtype; /* the K and V caches */

    tileattn_tensor q; /* [B, Sq_new, H, D] */
    /* [B, Sq_new, H, Dv]; must not overlap anything else. An output (O,
     * LSE, and with an append the caches and scales) that starts where
     * another buffer starts is TILEATTN_ERR_SHAPE_MISMATCH. */
    tileattn_tensor_out o;
    float *lse; /* optional: [B, H, Sq_new], contiguous */

    /* The cache. Strides of the first axis are per sequence (contiguous) or
     * per block (paged), the second per token (slot), the third per head. The
     * caches are written only when k_new is set. */
    tileattn_tensor_out k_cache;  /* [B, S_max, Hk, D] or [num_blocks, block_size, Hk, D] */
    tileattn_tensor_out v_cache;  /* [B, S_max, Hk, Dv] or [num_blocks, block_size, Hk, Dv] */
    int64_t max_seqlen_cache;     /* S_max, contiguous cache only: its capacity */
    const int32_t *cache_seqlens; /* [B]: 0 <= cache_seqlens[b] <= capacity */

    /* Paging: block_table != NULL selects the paged cache. Entries
     * block_table[b * block_table_stride + k] for the blocks that sequence b
     * uses (k < ceil(Sk_b / block_size)) must lie in [0, num_blocks); the
     * rest are never read. The capacity of a sequence is
     * max_blocks_per_seq * block_size. A block that receives appended
     * tokens must belong to one sequence only and appear once in its row:
     * no other entry, of any sequence, may name it (prefix blocks that no
     * sequence appends into may be shared freely). */
    const int32_t *block_table; /* [B, max_blocks_per_seq] */
    int64_t block_table_stride; /* elements between rows; 0 = max_blocks_per_seq */
    int64_t num_blocks;
    int64_t block_size; /* tokens per block (paged); int8 scale group (both) */
    int64_t max_blocks_per_seq;

    /* INT8 caches only: per-(block, KV head) scales, contiguous, see above.
     * Written when tokens are appended. */
    float *k_scales;
    float *v_scales;

    /* Optional new tokens, both or neither: [B, Sq_new, Hk, D] and
     * [B, Sq_new, Hk, Dv] in `dtype`. */
    tileattn_tensor k_new;
    tileattn_tensor v_new;

    /* Scaling and masking, as in tileattn_forward_args (bottom-right
     * alignment only: causal is 0 or 1). */
    float scale;               /* 0 means 1/sqrt(D); must be finite and >= 0 */
    int causal;                /* 1: window_right = 0 */
    int64_t window_left;       /* -1 = unbounded */
    int64_t window_right;      /* -1 = unbounded */
    float softcap;             /* 0 = off */
    const float *alibi_slopes; /* [H] or [B, alibi_stride_b] */
    int64_t alibi_stride_b;    /* 0 = one slope vector shared by all batches */
    const float *sinks;        /* [H] float32 logits, or NULL */

    /* Threads: 0 = OMP_NUM_THREADS where it is set, else one per physical
     * core this process may run on. A team of one thread per core is bound
     * one thread per core for the call (hwloc), unless OpenMP's binding
     * variables are set; TILEATTN_BIND_THREADS=1 binds smaller teams to the
     * first cores too, =0 never binds. More than 1024 are capped to 1024
     * (a larger team cannot help, and may fail to start). */
    int num_threads;
} tileattn_decode_args;

/* Sets args to the defaults: everything zero or off, windows -1, dtypes
 * F32, contiguous cache. */
void tileattn_decode_args_init(tileattn_decode_args *args);

/* Checks args without computing or writing anything, including every used
 * block-table entry and cache length. Errors: TILEATTN_ERR_NULL_POINTER,
 * TILEATTN_ERR_BAD_SIZE (a cache length negative or beyond capacity, before
 * or after the append; a block-table entry outside [0, num_blocks)),
 * TILEATTN_ERR_SHAPE_MISMATCH (a block receiving appended tokens that
 * another block-table entry also names; overlapping strides),
 * TILEATTN_ERR_OVERFLOW, TILEATTN_ERR_BAD_VALUE, TILEATTN_ERR_BAD_DTYPE. */
tileattn_status tileattn_validate_decode(const tileattn_decode_args *args);

/* Decoding attention: appends K_new/V_new (if set) into the cache, then
 * writes O and, when args->lse is set, LSE. Everything is validated before
 * anything is read from the cache or written; on error nothing is written.
 * Accuracy: float32 accumulation, as tileattn_forward. With an INT8 cache
 * the quantization error dominates: on N(0,1) data (D=128, a few hundred
 * keys) O differs from the float64 reference on the unquantized values by
 * about 1e-2 * max|V| at most (stated and tested in tests/test_decode.c). */
tileattn_status tileattn_decode(const tileattn_decode_args *args);

/* The float64 reference of the attention part, one query row at a time.
 * It never writes the cache: when k_new is set, the keys at positions
 * cache_seqlens[b] .. + Sq_new - 1 are read from the cache, so call it after
 * the tokens were appended (e.g. after tileattn_decode). Writes O contiguous
 * [B, Sq_new, H, Dv] and, if lse is not NULL, LSE [B, H, Sq_new], float64.
 * args->o and args->lse are ignored. Single-threaded and slow by design. */
tileattn_status tileattn_reference_decode(const tileattn_decode_args *args, double *o, double *lse);

/* Writes into buf the plan tileattn_decode would use for args: query tile
 * (GQA packing), key tile, split-KV count and why, threads. Pointers in args
 * are read (block table, cache lengths) but nothing is written. */
tileattn_status tileattn_describe_decode(const tileattn_decode_args *args, char *buf, size_t len);

/* ======================================================================
 * The backward pass (FlashAttention-2's algorithm): dQ, dK, dV
 * ======================================================================
 *
 * Given the forward's inputs, its output O and log-sum-exp LSE, and the
 * gradient of a loss with respect to O (dO), computes the gradients with
 * respect to Q, K and V - and optionally the sinks - without ever holding
 * an Sq x Sk matrix. For one query row i (P_ij = exp(s_ij - LSE_i)):
 *   Delta_i  = sum_c dO_ic O_ic                     (= sum_j P_ij dP_ij)
 *   dV_j    += P_ij dO_i
 *   dP_ij    = dO_i . v_j
 *   dS_ij    = P_ij (dP_ij - Delta_i)               (gradient of the final score)
 *   dS_ij   *= 1 - tanh^2(scale q_i.k_j / softcap)   if softcap > 0
 *   dQ_i    += scale dS_ij k_j,   dK_j += scale dS_ij q_i
 * ALiBi, the additive bias and the boolean mask are constants: they shape P
 * but receive no gradient (the bias's gradient would be dS itself, an
 * Sq x Sk tensor, which this O(N)-memory pass does not form). A sink joins
 * the denominator as a logit with no value, so its gradient is
 *   d_sinks[h] = - sum over b, i of exp(sink_h - LSE_bhi) Delta_bhi.
 * With GQA/MQA, dK and dV sum over the query heads of a group.
 *
 * Determinism: no floating-point atomics. Every output element is summed in
 * an order fixed by the shapes alone, so two calls give the same bits, and
 * so do calls with different num_threads. */

/* Everything one backward call needs. fwd describes the forward exactly as
 * it was called (shapes, dtype, Q, K, V, every mask option, varlen,
 * num_threads); fwd.o and fwd.lse are ignored - O and LSE come from the
 * fields below. Gradients take fwd.dtype and are accumulated in float32.
 * Outputs must not overlap each other or any input; one that starts where
 * another buffer starts (the same buffer passed twice) is refused with
 * TILEATTN_ERR_SHAPE_MISMATCH, while interleaved views that do not share
 * an element (a packed dQKV) are fine. O may have any strides. */
typedef struct tileattn_backward_args {
    tileattn_forward_args fwd;
    tileattn_tensor o;      /* the forward's O [B, Sq, H, Dv] (any strides, dim contiguous) */
    tileattn_tensor d_o;    /* dL/dO, same shape as O, dtype fwd.dtype */
    const float *lse;       /* the forward's LSE [B, H, Sq] (or [H, total_q]), float32 */
    tileattn_tensor_out dq; /* dL/dQ [B, Sq, H, D]  */
    tileattn_tensor_out dk; /* dL/dK [B, Sk, Hk, D] */
    tileattn_tensor_out dv; /* dL/dV [B, Sk, Hk, Dv] */
    float *d_sinks;         /* optional: dL/dsinks [H] float32 (needs fwd.sinks) */
} tileattn_backward_args;

/* Sets args to the defaults: fwd as tileattn_forward_args_init, every
 * pointer NULL. */
void tileattn_backward_args_init(tileattn_backward_args *args);

/* Checks args without computing anything (what tileattn_backward runs
 * first): the forward's checks, plus O, dO, LSE and the three gradients
 * present, their views inside int64/size_t and the gradients' views never
 * writing one element twice. d_sinks without fwd.sinks is BAD_VALUE. */
tileattn_status tileattn_validate_backward(const tileattn_backward_args *args);

/* The attention backward (FlashAttention-2 algorithm): writes dQ, dK, dV
 * and, when d_sinks is set, dL/dsinks. Parallel over (batch, KV head, a
 * fixed group of KV tiles); dQ is reduced over those groups in a fixed
 * order afterwards. Extra memory: O(threads x tile) plus a float32 dQ
 * accumulator per KV-tile group (at most 8 groups, fewer when batch x heads
 * already gives enough parallel work): O(Sq) per head, never O(Sq x Sk).
 * On error nothing is written. */
tileattn_status tileattn_backward(const tileattn_backward_args *args);

/* The float64 reference backward: the formulas above computed plainly,
 * one query row at a time, with P recomputed in double precision from Q
 * and K (args->o, args->lse, args->dq/dk/dv and args->d_sinks are ignored;
 * inputs may be TILEATTN_F64). Writes contiguous float64 arrays:
 * dq [B, Sq, H, D] (or [total_q, H, D]), dk [B, Sk, Hk, D], dv [B, Sk, Hk,
 * Dv] (or [total_k, ...]) and, if d_sinks is not NULL (fwd.sinks must be
 * set), d_sinks [H]. Slow by design: O(Sq * Sk * (D + Dv)) per head. */
tileattn_status tileattn_reference_backward(const tileattn_backward_args *args, double *dq,
                                            double *dk, double *dv, double *d_sinks);

#ifdef __cplusplus
}
#endif

#endif /* TILEATTN_H */
