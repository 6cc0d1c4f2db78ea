/*
 * The backward's AVX-512 microkernels. Only the functions below carry the
 * AVX-512 target attribute; the file itself is compiled for the baseline
 * ISA, and ta_bwd_kernels_select calls in only after checking the CPU.
 *
 * gemm: a BLIS-style register block of 8 rows x 32 columns of C (16 zmm
 * accumulators); per step of k it loads two vectors of B and broadcasts 8
 * elements of A (A may be read transposed through its strides, which is
 * how dV += P^T dO and dK += dS^T Q avoid a transpose). Edges use masked
 * loads and stores, and the row count is a compile-time constant of each
 * inlined copy so the accumulators stay in registers.
 *
 * exp: the forward's vf_exp (simd/x86/common/vexp_f32.h: below 1 ULP on
 * [-87.3, 0], 0 below, so -inf gives 0); x <= 0 up to rounding, as in
 * backward_kernels_avx2.c.
 */
#include "backward.h"
#include "tileattn_config.h"

/* With the x86-64 SIMD tables only: S and dP run on the forward's. */
#if defined(__x86_64__) && defined(__GNUC__) && TILEATTN_HAVE_X86_SIMD
#include <immintrin.h>
#include <math.h>

#include "../simd/x86/avx512/vec_avx512.h"
#include "../simd/x86/common/vexp_f32.h"

#define TA_AVX512        __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")))
#define TA_AVX512_INLINE static inline __attribute__((always_inline)) TA_AVX512

/* GEMM_PACK_MAX_K: the longest k whose B panel is copied (32 KiB on the
 * stack); the backward's k is a head dim or a tile side, at most 256. */
enum { GEMM_MR = 8, GEMM_NR = 32, GEMM_PACK_MAX_K = 256 };

/* One mr x (16 or 32) block of C: the k loop with every accumulator in a
 * register. mr and two_vectors are constants at every call site. */
TA_AVX512_INLINE void gemm_block(int mr, int two_vectors, int64_t k, const float *a, int64_t rsa,
                                 int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc,
                                 __mmask16 mask0, __mmask16 mask1, int accumulate) {
    __m512 acc0[GEMM_MR], acc1[GEMM_MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        acc0[r] = accumulate ? _mm512_maskz_loadu_ps(mask0, c + r * ldc) : _mm512_setzero_ps();
        if (two_vectors)
            acc1[r] =
                accumulate ? _mm512_maskz_loadu_ps(mask1, c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const float *b_row = b + p * ldb;
        __m512 b0 = _mm512_maskz_loadu_ps(mask0, b_row);
        __m512 b1 = two_vectors ? _mm512_maskz_loadu_ps(mask1, b_row + 16) : b0;
        const float *a_col = a + p * csa;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512 a_rp = _mm512_set1_ps(a_col[r * rsa]);
            acc0[r] = _mm512_fmadd_ps(a_rp, b0, acc0[r]);
            if (two_vectors) acc1[r] = _mm512_fmadd_ps(a_rp, b1, acc1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, mask0, acc0[r]);
        if (two_vectors) _mm512_mask_storeu_ps(c + r * ldc + 16, mask1, acc1[r]);
    }
}

#define GEMM_BLOCK_CASE(MR)                                                                        \
    case MR:                                                                                       \
        if (two)                                                                                   \
            gemm_block(MR, 1, k, a_i, rsa, csa, b_j, ldb_j, c_ij, ldc, mask0, mask1, accumulate);  \
        else                                                                                       \
            gemm_block(MR, 0, k, a_i, rsa, csa, b_j, ldb_j, c_ij, ldc, mask0, mask1, accumulate);  \
        break;

static __mmask16 lanes(int64_t count) {
    return count >= 16 ? (__mmask16)0xffff : count <= 0 ? 0 : (__mmask16)((1u << count) - 1u);
}

TA_AVX512 static void gemm_avx512(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
                                  int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc,
                                  int accumulate) {
    /* Column blocks outside, row blocks inside: the k x 32 panel of B
     * stays in L1 while every row block streams past it. The panel is
     * copied to contiguous rows first: read in place, its rows are ldb
     * apart (512 bytes for 128 keys), so they fall in a few of L1's sets,
     * evict each other and come back from L2 for every row block. */
    _Alignas(64) float panel[GEMM_PACK_MAX_K * GEMM_NR];
    for (int64_t j = 0; j < n; j += GEMM_NR) {
        __mmask16 mask0 = lanes(n - j), mask1 = lanes(n - j - 16);
        int two = n - j > 16;
        const float *b_j = b + j;
        int64_t ldb_j = ldb;
        if (n - j >= GEMM_NR && k <= GEMM_PACK_MAX_K) {
            for (int64_t p = 0; p < k; p++) {
                _mm512_store_ps(panel + p * GEMM_NR, _mm512_loadu_ps(b_j + p * ldb));
                _mm512_store_ps(panel + p * GEMM_NR + 16, _mm512_loadu_ps(b_j + p * ldb + 16));
            }
            b_j = panel, ldb_j = GEMM_NR;
        }
        for (int64_t i = 0; i < m; i += GEMM_MR) {
            const float *a_i = a + i * rsa;
            float *c_ij = c + i * ldc + j;
            switch (m - i < GEMM_MR ? m - i : GEMM_MR) {
                GEMM_BLOCK_CASE(1)
                GEMM_BLOCK_CASE(2)
                GEMM_BLOCK_CASE(3)
                GEMM_BLOCK_CASE(4)
                GEMM_BLOCK_CASE(5)
                GEMM_BLOCK_CASE(6)
                GEMM_BLOCK_CASE(7)
                GEMM_BLOCK_CASE(8)
            }
        }
    }
}

/* tanh(y) = sign(y) (1 - e) / (1 + e) with e = exp(-2|y|): see tanh_avx2 in
 * backward_kernels_avx2.c for why and its error. */
TA_AVX512_INLINE __m512 tanh_avx512(__m512 y) {
    __m512 abs_y = _mm512_abs_ps(y);
    __m512 e = vf_exp(_mm512_mul_ps(abs_y, _mm512_set1_ps(-2.0f)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    /* copy y's sign onto t (t >= 0) */
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(t),
        _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32((int)0x80000000u))));
}

TA_AVX512 static void grad_scores_avx512(const ta_bwd_tile *t, float *s, float *dp, int64_t ld) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 iota_f = _mm512_cvtepi32_ps(iota);
    float cap = t->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    __m512 scale = _mm512_set1_ps(t->scale);
    for (int64_t r = 0; r < t->m; r++) {
        int64_t i = t->i0 + r;
        float *p_row = s + r * ld, *ds_row = dp + r * ld;
        float lse = t->lse[r];
        int64_t first = lse == -INFINITY ? t->n : 0, last = t->n - 1;
        if (t->per_element_mask) {
            int64_t f = ta_first_key(&t->window, i) - t->j0, l = ta_last_key(&t->window, i) - t->j0;
            if (f > first) first = f;
            if (l < last) last = l;
        }
        __m512 lse_v = _mm512_set1_ps(lse), delta = _mm512_set1_ps(t->delta[r]);
        for (int64_t c = 0; c < t->n; c += 16) {
            __mmask16 in_tile = lanes(t->n - c);
            /* Visible lanes: first <= c + lane <= last (clamped to int32). */
            int64_t lo = first - c, hi = last - c;
            lo = lo < -1 ? -1 : lo > 16 ? 16 : lo;
            hi = hi < -1 ? -1 : hi > 16 ? 16 : hi;
            __mmask16 visible =
                _mm512_cmp_epi32_mask(iota, _mm512_set1_epi32((int)lo), _MM_CMPINT_NLT) &
                _mm512_cmp_epi32_mask(iota, _mm512_set1_epi32((int)hi), _MM_CMPINT_LE) & in_tile;
            if (!visible) {
                _mm512_mask_storeu_ps(p_row + c, in_tile, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(ds_row + c, in_tile, _mm512_setzero_ps());
                continue;
            }
            __m512 x = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(in_tile, p_row + c));
            __m512 ds_scale = scale;
            if (cap > 0.0f) {
                __m512 th = tanh_avx512(_mm512_mul_ps(x, _mm512_set1_ps(inv_cap)));
                x = _mm512_mul_ps(_mm512_set1_ps(cap), th);
                ds_scale = _mm512_mul_ps(scale, _mm512_fnmadd_ps(th, th, _mm512_set1_ps(1.0f)));
            }
            if (t->alibi_slope != 0.0f) {
                /* |i + offset - j| for j = j0 + c + lane, exact below 2^24. */
                __m512 base = _mm512_set1_ps((float)(i + t->window.offset - t->j0 - c));
                __m512 dist = _mm512_abs_ps(_mm512_sub_ps(base, iota_f));
                x = _mm512_fnmadd_ps(_mm512_set1_ps(t->alibi_slope), dist, x);
            }
            if (t->bias)
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(in_tile, t->bias + r * t->ldb + c));
            __m512 p = _mm512_maskz_mov_ps(visible, vf_exp(_mm512_sub_ps(x, lse_v)));
            __m512 dpv = _mm512_maskz_loadu_ps(in_tile, ds_row + c);
            __m512 ds = _mm512_mul_ps(ds_scale, _mm512_mul_ps(p, _mm512_sub_ps(dpv, delta)));
            _mm512_mask_storeu_ps(p_row + c, in_tile, p);
            _mm512_mask_storeu_ps(ds_row + c, in_tile, ds);
        }
    }
}

static const ta_bwd_kernels kernels_avx512 = {
    .isa = "avx512",
    .gemm = gemm_avx512,
    .grad_scores = grad_scores_avx512,
    .scores = &ta_ukernels_avx512,
};

const ta_bwd_kernels *ta_bwd_kernels_avx512(void) {
    return &kernels_avx512;
}

#else

const ta_bwd_kernels *ta_bwd_kernels_avx512(void) {
    return NULL;
}

#endif
