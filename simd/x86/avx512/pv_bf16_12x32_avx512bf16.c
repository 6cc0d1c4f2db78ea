/*
 * O += P.V with P and V in bfloat16, VDPBF16PS (AVX512_BF16), 12 x 32
 * register tile: the P.V of the avx512bf16 table's twin that rounds P
 * (ukernel.h, with_p_bf16).
 *
 * The reduction axis is the keys: one VDPBF16PS adds, per output column,
 * P[r][2g] V[2g][c] + P[r][2g+1] V[2g+1][c], both products exact in
 * float32. Per key pair, two V vectors (columns c .. c+31 of the pair,
 * from ta_pack_v_bf16_pairs_x16) and, per row, one broadcast 32-bit word
 * of P (the pair as softmax wrote it): 24 accumulators, 2 V, 1 P.
 *
 * With an odd n the last pair's second key is not part of the product:
 * its P half is cleared and its V half too, so neither a stale P nor a
 * hidden key's value (which may be inf) reaches O.
 */
#include <immintrin.h>

#include "../ukernels_x86.h"

enum { MR = 12, STRIP = 16 };

/* acc[r] += P's pair g of row r (its bits & keep) times V's pair g. */
static inline __attribute__((always_inline)) void pair_step(__m512 acc[][2], const int mr,
                                                            const int nv, const uint32_t *pw,
                                                            int64_t ldw, int64_t g, uint32_t keep,
                                                            __m512i v0, __m512i v1) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        __m512bh pp = (__m512bh)_mm512_set1_epi32((int)(pw[r * ldw + g] & keep));
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], pp, (__m512bh)v0);
        if (nv == 2) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], pp, (__m512bh)v1);
    }
}

static inline __attribute__((always_inline)) void
pv_block(const int mr, const int nv, int64_t cols, int64_t n, const uint32_t *pw, int64_t ldw,
         const uint16_t *vp, int64_t ld_chunk, float *o, int64_t ldo) {
    __m512 acc[MR][2];
    __mmask16 lo = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1u);
    __mmask16 hi = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1u) : 0;
    /* The tile's sum starts from zero and joins O once at the end: added to
     * O key by key, past about 2^24 keys of similar weight O would stop
     * growing. */
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    /* Pairs g < n / 2 are whole; with an odd n, pair n / 2 holds one key,
     * done apart so the loop carries no test for it. */
    int64_t g = 0;
    for (; g < n / 2; g++) {
        const uint16_t *vg = vp + (g / 16) * ld_chunk + (g % 16) * 32;
        __m512i v0 = _mm512_loadu_si512(vg), v1 = _mm512_setzero_si512();
        if (nv == 2) v1 = _mm512_loadu_si512(vg + 512);
        pair_step(acc, mr, nv, pw, ldw, g, 0xffffffffu, v0, v1);
    }
    if (n % 2) { /* only the even (first) key of the last pair */
        const uint16_t *vg = vp + (g / 16) * ld_chunk + (g % 16) * 32;
        __m512i v0 = _mm512_maskz_loadu_epi16(0x55555555u, vg), v1 = _mm512_setzero_si512();
        if (nv == 2) v1 = _mm512_maskz_loadu_epi16(0x55555555u, vg + 512);
        pair_step(acc, mr, nv, pw, ldw, g, 0xffffu, v0, v1);
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *out = o + r * ldo;
        _mm512_mask_storeu_ps(out, lo, _mm512_add_ps(_mm512_maskz_loadu_ps(lo, out), acc[r][0]));
        if (nv == 2)
            _mm512_mask_storeu_ps(out + 16, hi,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(hi, out + 16), acc[r][1]));
    }
}

#define PV_CASE(k)                                                                                 \
    case k:                                                                                        \
        if (nv == 2)                                                                               \
            pv_block(k, 2, cols, n, pw + i * ldw, ldw, vp, ld_chunk, o + i * ldo + c, ldo);        \
        else                                                                                       \
            pv_block(k, 1, cols, n, pw + i * ldw, ldw, vp, ld_chunk, o + i * ldo + c, ldo);        \
        break;

void ta_pv_bf16_12x32_avx512bf16(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                 const float *v_panel, float *o, int64_t ldo) {
    int64_t strips = (dv + STRIP - 1) / STRIP, ld_chunk = strips * 512; /* bf16 per chunk */
    const uint32_t *pw = (const uint32_t *)p; /* a row of ldp floats is ldp pairs of P */
    int64_t ldw = ldp;
    for (int64_t c = 0; c < dv; c += 32) {
        const uint16_t *vp = (const uint16_t *)v_panel + (c / STRIP) * 512;
        int64_t cols = dv - c < 32 ? dv - c : 32;
        int nv = cols > 16 ? 2 : 1;
        for (int64_t i = 0; i < m; i += MR) {
            switch (m - i < MR ? m - i : MR) {
                PV_CASE(1)
                PV_CASE(2)
                PV_CASE(3)
                PV_CASE(4)
                PV_CASE(5)
                PV_CASE(6)
                PV_CASE(7)
                PV_CASE(8)
                PV_CASE(9)
                PV_CASE(10)
                PV_CASE(11)
                PV_CASE(12)
            }
        }
    }
}
