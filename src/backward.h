/*
 * The backward pass's internals: its two microkernels (a small GEMM and the
 * per-tile score/gradient step), the table that holds one ISA's versions of
 * them, and the entry that runs the backward with a given table (so the
 * tests can check every table against the reference in one process).
 *
 * One (key tile j, query tile i) step of FlashAttention-2's backward, for an
 * m x n tile (m queries, n keys):
 *   S   = Q_i K_j^T               the forward's pack_k + qk (K_j packed once)
 *   dP  = dO_i V_j^T              the forward's pack_k + qk (V_j packed as a K)
 *   P, dS from S and dP           grad_scores (in place: S <- P, dP <- dS)
 *   dV_j += P^T dO_i              gemm, A read transposed
 *   dK_j += dS^T Q_i              gemm, A read transposed
 *   dQ_i += dS K_j                gemm, B = K packed [n][D]
 * dS leaves grad_scores already multiplied by the scale (and the softcap's
 * derivative), so dK and dQ need no further scaling. The first two are the
 * forward's own Q.K^T microkernel (ukernel.h), whose register block reads
 * panels packed once per key tile; the other three need a transposed A or
 * a row-major B, which the backward's gemm reads through its strides. (Run
 * on the forward's pv instead, through transposes of P and dS and with
 * Q_i, dO_i and K_j packed as its values, the backward measured 8% slower
 * on a Zen 3, five interleaved runs; dQ alone on pv, no faster.)
 */
#ifndef TILEATTN_BACKWARD_H
#define TILEATTN_BACKWARD_H

#include <stdint.h>

#include "mask.h"
#include "tileattn.h"
#include "ukernel.h"

/* What grad_scores needs to know about one tile besides S and dP. */
typedef struct ta_bwd_tile {
    int64_t m, n;         /* queries, keys */
    int64_t i0, j0;       /* first query and key, inside their sequence */
    float scale;          /* applied to S (the raw q.k) and folded into dS */
    float softcap;        /* 0 = off */
    float alibi_slope;    /* 0 = off; subtracts slope * |i + offset - j| */
    int per_element_mask; /* a boundary tile: hide keys outside the window */
    ta_window window;
    const float *bias; /* NULL, or [m][ldb] float32 added to the score (-inf hides) */
    int64_t ldb;
    const float *lse;   /* [m]; -inf marks a row that saw nothing (P = 0) */
    const float *delta; /* [m] rowsum(dO o O) */
} ta_bwd_tile;

typedef struct ta_bwd_kernels {
    const char *isa; /* "portable", "avx2" or "avx512" */

    /* C[i*ldc + j] (+)= sum_p A(i, p) B[p*ldb + j] for i < m, j < n, where
     * A(i, p) = a[i*rsa + p*csa] (so a transposed A is rsa = 1, csa = ld)
     * and the sum runs over p < k in increasing order. accumulate = 0
     * overwrites C. */
    void (*gemm)(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                 const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate);

    /* For each i < m, j < n of the tile: the final score s from S (raw
     * q.k), P = exp(s - lse_i) (0 where hidden or for a dead row), and
     * dS = scale * P * (dP - delta_i) * (softcap' if any). Overwrites
     * s[i*ld + j] with P and dp[i*ld + j] with dS. */
    void (*grad_scores)(const ta_bwd_tile *t, float *s, float *dp, int64_t ld);

    /* The forward's float32 table of the same instruction set: its pack_k
     * and qk (scale 1) compute S and dP. */
    const ta_ukernels *scores;
} ta_bwd_kernels;

extern const ta_bwd_kernels ta_bwd_kernels_portable;
/* NULL when the build has no x86-64 SIMD code. */
const ta_bwd_kernels *ta_bwd_kernels_avx512(void);
const ta_bwd_kernels *ta_bwd_kernels_avx2(void);
/* The portable kernels with the NEON Q.K^T (AArch64); NULL elsewhere. */
const ta_bwd_kernels *ta_bwd_kernels_neon(void);

/* The table tileattn_backward uses: the one of the instruction set of the
 * forward's float32 table (dispatch.c chooses it once, TILEATTN_ISA
 * included): AVX-512 for the avx512 tables, AVX2 for avx2, NEON for neon,
 * portable otherwise. NULL with *status set when TILEATTN_ISA is not a
 * known name. */
const ta_bwd_kernels *ta_bwd_kernels_select(tileattn_status *status);

/* Every backward table this CPU runs, portable first. Returns how many were
 * written (at most max). */
int ta_bwd_kernels_all(const ta_bwd_kernels **list, int max);

/* tileattn_backward with a given kernel table (validation included). */
tileattn_status ta_backward_with(const tileattn_backward_args *args, const ta_bwd_kernels *kernels);

#endif /* TILEATTN_BACKWARD_H */
