/*
 * The backward's AVX2 + FMA microkernels, for x86-64 CPUs without AVX-512
 * (Haswell to Zen 3, and Intel's E-cores). Only the functions below carry
 * the AVX2 target attribute; the file itself is compiled for the baseline
 * ISA, and ta_bwd_kernels_select calls in only after checking the CPU.
 *
 * gemm: a register block of 6 rows x 16 columns of C (12 ymm accumulators,
 * two vectors of B and one broadcast of A: 15 of the 16 ymm registers), the
 * same shape as the forward's AVX2 microkernels. A may be read transposed
 * through its strides (dV += P^T dO, dK += dS^T Q without a transpose).
 * Column edges use maskload/maskstore; the row count is a compile-time
 * constant of each inlined copy so the accumulators stay in registers.
 *
 * exp: the forward's vf_exp (simd/x86/common/vexp_f32.h: below 1 ULP on
 * [-87.3, 0], 0 below, so -inf gives 0). Here x is a score minus its
 * row's LSE, so x <= 0 up to rounding; the reduction and the exponent add
 * are exact for the few ULP above 0 that rounding can give.
 */
#include "backward.h"
#include "tileattn_config.h"

/* With the x86-64 SIMD tables only: S and dP run on the forward's. */
#if defined(__x86_64__) && defined(__GNUC__) && TILEATTN_HAVE_X86_SIMD
#include <immintrin.h>
#include <math.h>

#include "../simd/x86/avx2/vec_avx2.h"
#include "../simd/x86/common/vexp_f32.h"

#define TA_AVX2        __attribute__((target("avx2,fma,f16c")))
#define TA_AVX2_INLINE static inline __attribute__((always_inline)) TA_AVX2

/* GEMM_PACK_MAX_K: the longest k whose B panel is copied (16 KiB on the
 * stack); the backward's k is a head dim or a tile side, at most 256. */
enum { GEMM_MR = 6, GEMM_NR = 16, GEMM_PACK_MAX_K = 256 };

/* Lanes [0, count) set, for maskload/maskstore. */
TA_AVX2_INLINE __m256i lanes(int64_t count) {
    int c = count < 0 ? 0 : count > 8 ? 8 : (int)count;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Loads and stores of one vector of B or C: plain ones inside the matrix
 * (maskload costs several times a load on AMD cores), masked on its edge. */
TA_AVX2_INLINE __m256 load_cols(int full, const float *p, __m256i mask) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
TA_AVX2_INLINE void store_cols(int full, float *p, __m256i mask, __m256 x) {
    if (full)
        _mm256_storeu_ps(p, x);
    else
        _mm256_maskstore_ps(p, mask, x);
}

/* One mr x (8 or 16) block of C with every accumulator in a register; mr,
 * two_vectors and full (all 16 columns present) are constants at every
 * call site. */
TA_AVX2_INLINE void gemm_block(int mr, int two_vectors, int full, int64_t k, const float *a,
                               int64_t rsa, int64_t csa, const float *b, int64_t ldb, float *c,
                               int64_t ldc, __m256i mask0, __m256i mask1, int accumulate) {
    __m256 acc0[GEMM_MR], acc1[GEMM_MR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        acc0[r] = accumulate ? load_cols(full, c + r * ldc, mask0) : _mm256_setzero_ps();
        if (two_vectors)
            acc1[r] = accumulate ? load_cols(full, c + r * ldc + 8, mask1) : _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const float *b_row = b + p * ldb;
        __m256 b0 = load_cols(full, b_row, mask0);
        __m256 b1 = two_vectors ? load_cols(full, b_row + 8, mask1) : b0;
        const float *a_col = a + p * csa;
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 a_rp = _mm256_broadcast_ss(a_col + r * rsa);
            acc0[r] = _mm256_fmadd_ps(a_rp, b0, acc0[r]);
            if (two_vectors) acc1[r] = _mm256_fmadd_ps(a_rp, b1, acc1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        store_cols(full, c + r * ldc, mask0, acc0[r]);
        if (two_vectors) store_cols(full, c + r * ldc + 8, mask1, acc1[r]);
    }
}

#define GEMM_BLOCK_CASE(MR)                                                                        \
    case MR:                                                                                       \
        if (full)                                                                                  \
            gemm_block(MR, 1, 1, k, a_i, rsa, csa, b_j, ldb_j, c_ij, ldc, mask0, mask1,            \
                       accumulate);                                                                \
        else if (two)                                                                              \
            gemm_block(MR, 1, 0, k, a_i, rsa, csa, b_j, ldb_j, c_ij, ldc, mask0, mask1,            \
                       accumulate);                                                                \
        else                                                                                       \
            gemm_block(MR, 0, 0, k, a_i, rsa, csa, b_j, ldb_j, c_ij, ldc, mask0, mask1,            \
                       accumulate);                                                                \
        break;

TA_AVX2 static void gemm_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
                              int64_t csa, const float *b, int64_t ldb, float *c, int64_t ldc,
                              int accumulate) {
    /* Column blocks outside, row blocks inside: the k x 16 panel of B stays
     * in L1 while every row block streams past it. The panel is copied to
     * contiguous rows first: read in place, its rows are ldb apart (512
     * bytes for 128 keys), so they fall in 1/8 of L1's sets, evict each
     * other and come back from L2 for every row block. */
    _Alignas(32) float panel[GEMM_PACK_MAX_K * GEMM_NR];
    for (int64_t j = 0; j < n; j += GEMM_NR) {
        __m256i mask0 = lanes(n - j), mask1 = lanes(n - j - 8);
        int two = n - j > 8, full = n - j >= GEMM_NR;
        const float *b_j = b + j;
        int64_t ldb_j = ldb;
        if (full && k <= GEMM_PACK_MAX_K) {
            for (int64_t p = 0; p < k; p++) {
                _mm256_store_ps(panel + p * GEMM_NR, _mm256_loadu_ps(b_j + p * ldb));
                _mm256_store_ps(panel + p * GEMM_NR + 8, _mm256_loadu_ps(b_j + p * ldb + 8));
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
            }
        }
    }
}

/* tanh(y) = sign(y) (1 - e) / (1 + e) with e = exp(-2|y|) in (0, 1], so that
 * vf_exp sees only arguments <= 0: absolute error about 1e-7 (1 - e is
 * exact for e >= 1/2, and e's error is below 1 ULP), below the score's own
 * float32 rounding once multiplied by the softcap. e flushes to 0 for
 * |y| > 43.7, where tanh = 1 exactly. */
TA_AVX2_INLINE __m256 tanh_avx2(__m256 y) {
    __m256 sign = _mm256_and_ps(y, _mm256_set1_ps(-0.0f));
    __m256 abs_y = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), y);
    __m256 e = vf_exp(_mm256_mul_ps(abs_y, _mm256_set1_ps(-2.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    return _mm256_or_ps(t, sign);
}

TA_AVX2 static void grad_scores_avx2(const ta_bwd_tile *t, float *s, float *dp, int64_t ld) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 iota_f = _mm256_cvtepi32_ps(iota);
    float cap = t->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    __m256 scale = _mm256_set1_ps(t->scale);
    for (int64_t r = 0; r < t->m; r++) {
        int64_t i = t->i0 + r;
        float *p_row = s + r * ld, *ds_row = dp + r * ld;
        float lse = t->lse[r];
        /* A row that saw no key (LSE = -inf) has P = 0 everywhere. */
        int64_t first = lse == -INFINITY ? t->n : 0, last = t->n - 1;
        if (t->per_element_mask) {
            int64_t f = ta_first_key(&t->window, i) - t->j0, l = ta_last_key(&t->window, i) - t->j0;
            if (f > first) first = f;
            if (l < last) last = l;
        }
        __m256 lse_v = _mm256_set1_ps(lse), delta = _mm256_set1_ps(t->delta[r]);
        for (int64_t c = 0; c < t->n; c += 8) {
            /* Most vectors are whole and wholly visible: plain loads and
             * stores, no lane mask (maskload and maskstore cost several
             * times as much on AMD cores). */
            int full = t->n - c >= 8, all_visible = full && first <= c && c + 7 <= last;
            __m256i in_tile = lanes(t->n - c), visible = in_tile;
            if (!all_visible) {
                /* Visible lanes: first <= c + lane <= last (clamped to int32). */
                int64_t lo = first - c, hi = last - c;
                lo = lo < -1 ? -1 : lo > 8 ? 8 : lo;
                hi = hi < -1 ? -1 : hi > 8 ? 8 : hi;
                visible = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32((int)lo - 1)),
                                     _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi + 1), iota)),
                    in_tile);
                if (_mm256_testz_si256(visible, visible)) {
                    store_cols(full, p_row + c, in_tile, _mm256_setzero_ps());
                    store_cols(full, ds_row + c, in_tile, _mm256_setzero_ps());
                    continue;
                }
            }
            __m256 x = _mm256_mul_ps(scale, load_cols(full, p_row + c, in_tile));
            __m256 ds_scale = scale;
            if (cap > 0.0f) {
                __m256 th = tanh_avx2(_mm256_mul_ps(x, _mm256_set1_ps(inv_cap)));
                x = _mm256_mul_ps(_mm256_set1_ps(cap), th);
                ds_scale = _mm256_mul_ps(scale, _mm256_fnmadd_ps(th, th, _mm256_set1_ps(1.0f)));
            }
            if (t->alibi_slope != 0.0f) {
                /* |i + offset - j| for j = j0 + c + lane, exact below 2^24. */
                __m256 base = _mm256_set1_ps((float)(i + t->window.offset - t->j0 - c));
                __m256 dist = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(base, iota_f));
                x = _mm256_fnmadd_ps(_mm256_set1_ps(t->alibi_slope), dist, x);
            }
            if (t->bias) x = _mm256_add_ps(x, load_cols(full, t->bias + r * t->ldb + c, in_tile));
            __m256 p = vf_exp(_mm256_sub_ps(x, lse_v));
            if (!all_visible) p = _mm256_and_ps(_mm256_castsi256_ps(visible), p);
            __m256 dpv = load_cols(full, ds_row + c, in_tile);
            __m256 ds = _mm256_mul_ps(ds_scale, _mm256_mul_ps(p, _mm256_sub_ps(dpv, delta)));
            store_cols(full, p_row + c, in_tile, p);
            store_cols(full, ds_row + c, in_tile, ds);
        }
    }
}

static const ta_bwd_kernels kernels_avx2 = {
    .isa = "avx2",
    .gemm = gemm_avx2,
    .grad_scores = grad_scores_avx2,
    .scores = &ta_ukernels_avx2,
};

const ta_bwd_kernels *ta_bwd_kernels_avx2(void) {
    return &kernels_avx2;
}

#else

const ta_bwd_kernels *ta_bwd_kernels_avx2(void) {
    return NULL;
}

#endif
