/*
 * The microkernel table: the only seam between the FlashAttention-2 driver
 * (forward.c) and the SIMD code under simd/. One table per instruction set;
 * dispatch.c picks one, once. A microkernel takes plain data (sizes,
 * pointers, leading dimensions), never allocates, starts threads or checks
 * the CPU.
 *
 * The three steps of one (query tile x key tile) update, for an m x n tile:
 *   qk:      S[m x n]  = scale * Q[m x D] . K[n x D]^T
 *   softmax: online-softmax update of S in place into P, with the running
 *            row max and row sum, and the rescale of the accumulator O
 *   pv:      O[m x Dv] += P[m x n] . V[n x Dv]
 * Each kernel reads K and V from a packed panel made by its own pack
 * function, once per key block, in whatever layout it streams fastest.
 * One packed block serves many calls: the driver calls qk, softmax and pv
 * on any group of rows (m <= block_r) and on any prefix of the packed keys
 * (n <= the n that was packed: on the mask's boundary each register block
 * of mr rows stops at its last visible key), so a panel layout must make a
 * prefix of the keys readable without knowing the packed n.
 *
 * Most tables compute in float32 whatever the storage dtype (packing
 * widens float16 and bfloat16 exactly). A table may instead serve only
 * some input dtypes and keep Q and K in that dtype for the Q.K^T product
 * (dot-product instructions such as AMX's TDPBF16PS, BFDOT or FMLAL, whose
 * products of two 16-bit values are exact in float32 and are summed in
 * float32). P.V is float32 in every table picked by default, so that P is
 * never rounded to 16 bits; a table may point (with_p_bf16) at a twin that
 * rounds P to bfloat16 and multiplies it with bfloat16 V, used only when
 * the caller allows it (tileattn_forward_args.p_precision). dispatch.c
 * picks, per input dtype, the best table that serves it.
 */
#ifndef TILEATTN_UKERNEL_H
#define TILEATTN_UKERNEL_H

#include <stdint.h>

#include "tileattn.h"

/* Bit of an input dtype in ta_ukernels.dtypes. */
#define TA_DTYPE_BIT(dtype) (1u << (unsigned)(dtype))
#define TA_DTYPES_ALL                                                                              \
    (TA_DTYPE_BIT(TILEATTN_F32) | TA_DTYPE_BIT(TILEATTN_F16) | TA_DTYPE_BIT(TILEATTN_BF16))

typedef struct ta_ukernels {
    const char *isa; /* "scalar", "avx2", "avx512", ... */
    int mr;          /* query rows the register block holds; block_q is a multiple */
    int nr;          /* keys the register block holds; block_k is a multiple */
    unsigned dtypes; /* the input dtypes it serves (TA_DTYPE_BIT), TA_DTYPES_ALL mostly */
    int q_native;    /* 0: load_rows writes float32; 1: Q stays in the input dtype */
    int p_bf16;      /* 1: softmax writes P as bfloat16 and pv reads it so (see below) */
    /* The same table with P rounded to bfloat16 for P.V (p_bf16 = 1), for
     * the dtypes it serves; NULL when there is none. */
    const struct ta_ukernels *with_p_bf16;

    /* Convert rows of a tensor (dtype, row stride in elements) into the
     * table's Q rows at dst, leading dimension ld_dst floats (>= dim):
     * float32 rows of dim values, zero-filled up to ld_dst (q_native = 0),
     * or rows of dim values of the input dtype, zero-filled up to the
     * 2 ld_dst 16-bit elements of the row (q_native = 1). Exact. */
    void (*load_rows)(int64_t rows, int64_t dim, const void *src, tileattn_dtype dtype,
                      int64_t stride, float *dst, int64_t ld_dst);

    /* Pack n key rows (dtype, stride in elements) of length d into the panel
     * that qk reads; packed_k_floats(n, d) floats are written. */
    void (*pack_k)(int64_t n, int64_t d, const void *src, tileattn_dtype dtype, int64_t stride,
                   float *panel);
    int64_t (*packed_k_floats)(int64_t n, int64_t d);

    /* Pack n value rows of length dv into the panel that pv reads. */
    void (*pack_v)(int64_t n, int64_t dv, const void *src, tileattn_dtype dtype, int64_t stride,
                   float *panel);
    int64_t (*packed_v_floats)(int64_t n, int64_t dv);

    /* S[i*lds + j] = scale * sum_c Q[i][c] * K[j][c] for i < m, j < n, Q as
     * load_rows wrote it (row i at q + i*ldq floats). */
    void (*qk)(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq, const float *k_panel,
               float scale, float *s, int64_t lds);

    /* For each row i < m of S (masked entries are -inf):
     *   new_max = max(row_max[i], max_j S[i][j]);  (a row still at -inf is left alone)
     *   alpha   = exp(row_max[i] - new_max);
     *   S[i][j] = exp(S[i][j] - new_max);           (P, in place)
     *   row_sum[i] = row_sum[i] * alpha + sum_j P[i][j];
     *   O[i][0..dv) *= alpha                        (only when alpha != 1)
     *   row_max[i] = new_max.
     * With p_bf16, P is written rounded to bfloat16 (to nearest even) in
     * place of the row's first n / 2 floats: P[i][j] is element j of
     * (uint16_t *)(s + i * lds); row_sum adds P before rounding. */
    void (*softmax)(int64_t m, int64_t n, float *s, int64_t lds, float *row_max, float *row_sum,
                    float *o, int64_t ldo, int64_t dv);

    /* O[i*ldo + c] += sum_j P[i*ldp + j] * V[j][c] for i < m, c < dv; with
     * p_bf16, P[i][j] is element j of (const uint16_t *)(p + i * ldp), as
     * softmax wrote it. Only keys j < n are read from P, and V rows j >= n
     * never reach O (a hidden key's value may be inf). */
    void (*pv)(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp, const float *v_panel,
               float *o, int64_t ldo);
} ta_ukernels;

/* The portable C microkernels, available everywhere. */
extern const ta_ukernels ta_ukernels_scalar;

/* x86-64 tables (simd/x86/), built when the compiler targets x86-64. */
extern const ta_ukernels ta_ukernels_avx2;
extern const ta_ukernels ta_ukernels_avx512;
extern const ta_ukernels ta_ukernels_avx512bf16;
extern const ta_ukernels ta_ukernels_amx;

/* AArch64 tables (simd/arm/), built when the compiler targets AArch64. */
extern const ta_ukernels ta_ukernels_neon;
extern const ta_ukernels ta_ukernels_neonfhm;
extern const ta_ukernels ta_ukernels_neonbf16;

#endif /* TILEATTN_UKERNEL_H */
