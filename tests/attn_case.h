/*
 * One attention test case, end to end: a plain description (th_case), the
 * tensors it makes (th_problem), a run of tileattn_forward, a run of the
 * float64 reference on the very same (already rounded) inputs, and the
 * comparison with a stated tolerance.
 *
 * Tolerance (see th_problem_check): with u = 2^-24 (float32 accumulation),
 * n keys and M a bound on the magnitude of the scores that carry weight,
 *     acc = u * TH_TOL_C * (sqrt(n) + M + 30)
 *     |O - O_ref| <= max|V| * acc + u_out * (|O_ref| + max|V| * acc)
 *     |LSE - LSE_ref| <= acc
 * where u_out is the output dtype's unit roundoff (2^-24 float32, 2^-11
 * float16, 2^-8 bfloat16). Why this shape:
 *   - the score s_j = scale q.k (+ALiBi, bias) is formed in float32: its
 *     absolute error is a few u times the size of its parts, |s_j| + the
 *     q.k and bias magnitudes. M = |LSE_ref| + 2 qk + 2 bias covers every
 *     key whose weight exp(s_j - LSE) exceeds e^-30: lighter keys matter
 *     less than u. An absolute error e in s_j is a relative error e in p_j;
 *   - exp(s_j - max) adds u * |s_j - max| (<= 30 u for keys that matter)
 *     plus the few-ULP error of a vector exp;
 *   - summing n products in float32 adds ~sqrt(n) u relative (random
 *     rounding; the worst case n u is never approached by these inputs),
 *     and every tile rescale adds one more rounding;
 *   - softmax weights sum to 1, so relative weight errors reach O scaled by
 *     max|V|; rounding O to float16/bfloat16 adds at most u_out |O|;
 *   - with p_precision TILEATTN_P_INPUT_DTYPE each weight of P.V may be
 *     rounded to the input dtype (relative u_out), which adds u_out max|V|
 *     to O's bound and nothing to LSE's (its sum uses P before rounding).
 * Inputs are rounded to the dtype before both runs, so input rounding does
 * not count. TH_TOL_C = 4 is measured: every numeric test prints its worst
 * err/tol per dtype (TILEATTN_TEST_VERBOSE=1 prints it per case). On the
 * scalar, AVX2, AVX-512 and AVX-512-BF16 kernels the worst float32 ratio is
 * 0.21 (D=256 with peaky scores: the dot products dominate), so about 5x
 * headroom; float16/bfloat16 reach 0.91/0.98 because their output rounding
 * term is an exact half-ULP bound, not an estimate. Tight enough: the
 * perturbation tests in test_forward.c show the bound catches an off-by-one
 * window on either side, causal one key too far, the wrong causal
 * alignment, a dropped sink, a 1% scale or softcap error, 2% ALiBi slopes,
 * the slope of the wrong head, h % Hk for GQA, varlen keys one token off,
 * an ignored bias row stride and a missing accumulator rescale, for every
 * dtype (the LSE check is float32 even for 16-bit dtypes).
 */
#ifndef TILEATTN_TESTS_ATTN_CASE_H
#define TILEATTN_TESTS_ATTN_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "helpers.h"
#include "tileattn.h"

#define TH_TOL_C    4.0
#define TH_MAX_SEQS 8

typedef enum th_layout {
    TH_LAYOUT_CONTIGUOUS = 0, /* Q [B,Sq,H,D], K [B,Sk,Hk,D], V [B,Sk,Hk,Dv] */
    TH_LAYOUT_PACKED_QKV = 1, /* one buffer [B, S, H*D + Hk*D + Hk*Dv]: needs Sq == Sk */
    TH_LAYOUT_HEAD_MAJOR = 2, /* [B, H, S, D] with padding after rows, heads and batches */
    TH_LAYOUT_REVERSED = 3,   /* contiguous, but Q, K and V read with the token axis reversed
                                 (data at the last row, negative stride_s) */
} th_layout;

typedef enum th_alibi { TH_ALIBI_NONE = 0, TH_ALIBI_H = 1, TH_ALIBI_BH = 2 } th_alibi;

typedef enum th_bias {
    TH_BIAS_NONE = 0,
    TH_BIAS_ADD = 1,  /* additive, dtype bias_dtype */
    TH_BIAS_BOOL = 2, /* boolean mask, ~75% of keys seen */
} th_bias;

enum {
    TH_BIAS_BCAST_B = 1,   /* bias_stride_b = 0 */
    TH_BIAS_BCAST_H = 2,   /* bias_stride_h = 0 */
    TH_BIAS_NEGINF = 4,    /* additive: ~10% of entries are -inf */
    TH_BIAS_DEAD_ROWS = 8, /* rows i % 7 == 3 see no key (-inf / 0 for every key) */
};

typedef struct th_case {
    int64_t batch, sq, sk, h, hk, d, dv; /* dv = 0: Dv = D */
    tileattn_dtype dtype;
    tileattn_causal causal;
    int64_t wl, wr; /* window, -1 = unbounded */
    float softcap;  /* 0 = off */
    float scale;    /* 0 = 1/sqrt(D) */
    th_alibi alibi;
    th_bias bias;
    tileattn_dtype bias_dtype;
    int bias_flags;
    int sinks;
    int nseq; /* > 0: varlen with these lengths (batch is ignored) */
    int32_t lens_q[TH_MAX_SEQS], lens_k[TH_MAX_SEQS];
    th_layout layout;
    int64_t o_pad;                    /* extra elements after each O head row (untouched) */
    int num_threads;                  /* 0 = library default */
    double q_gain;                    /* Q values are N(0, q_gain^2); 0 = 1 */
    tileattn_p_precision p_precision; /* TILEATTN_P_INPUT_DTYPE: O may be off by u_in max|V| more */
} th_case;

/* A case with every option off: B=1, H=Hk=1, F32, windows -1. */
th_case th_case_default(void);

/* One line describing every parameter of a case. */
void th_case_str(const th_case *c, char *buf, size_t len);

typedef struct th_problem {
    th_case c;
    tileattn_forward_args args;
    int varlen;
    int64_t dv, rows_q, rows_k; /* rows along the token axis of one batch entry */
    int64_t total_q;            /* query rows over all sequences (LSE length per head) */
    int32_t cu_q[TH_MAX_SEQS + 1], cu_k[TH_MAX_SEQS + 1];
    void *qbuf, *kbuf, *vbuf; /* kbuf = vbuf = NULL for the packed layout */
    void *obuf;
    size_t o_bytes;
    unsigned char *o_owned; /* per O element: 1 if part of the logical tensor */
    float *lse;
    size_t lse_elems; /* logical; a guard follows */
    float *alibi, *sinks;
    void *bias;
    /* For the tolerance. */
    double max_v, qk_mag, bias_mag;
    int64_t max_keys;
} th_problem;

/* Builds the tensors of c with a PRNG seeded by seed. */
void th_problem_make(th_problem *p, const th_case *c, uint64_t seed);
void th_problem_free(th_problem *p);

/* Fills O and LSE with the sentinel, then runs tileattn_forward. */
tileattn_status th_problem_forward(th_problem *p);

/* Runs the reference with args (p->args if NULL); *o and *lse are allocated
 * (free with th_free). */
tileattn_status th_problem_reference(const th_problem *p, const tileattn_forward_args *args,
                                     double **o, double **lse);

typedef struct th_check {
    int64_t bad;       /* failing elements (O, LSE, padding, guard) */
    int64_t rows;      /* rows compared */
    int64_t dead_rows; /* rows that see no key (exact checks) */
    double worst;      /* max err / tol over every compared value */
    char first[384];   /* the first failure, in words */
} th_check;

/* Compares the forward's O and LSE (in p) with a reference. */
void th_problem_check(const th_problem *p, const double *o_ref, const double *lse_ref,
                      th_check *out);

/* make + forward + reference + check + free. Returns 0 when the case
 * passes; prints the case and the first failure otherwise. *worst (if not
 * NULL) is raised to the case's worst ratio, *dead (if not NULL) counts the
 * rows that saw no key. */
int th_run_case(const th_case *c, uint64_t seed, double *worst, int64_t *dead);

#endif /* TILEATTN_TESTS_ATTN_CASE_H */
