/*
 * The P.V tile, GEMM style: MR rows of the output O held in registers as
 * NV vectors across NR of its columns, accumulated over the keys (the
 * reduction axis) with one broadcast of P and NV FMAs per row and key.
 *
 * The including file defines MR, NV and includes its ISA's vocabulary. V
 * comes packed by pack_v as rows of ldv = round_up(dv, NR) floats
 * ([n][ldv], zero-padded columns), so any prefix of the keys is usable.
 */
#define NR (NV * VF_LANES)

static inline __attribute__((always_inline)) void pv_block(const int mr, int64_t cols, int64_t n,
                                                           const float *p, int64_t ldp,
                                                           const float *vp, int64_t ldv, float *o,
                                                           int64_t ldo) {
    /* The tile's sum starts from zero and joins O once at the end: added to
     * O key by key, each product would meet the whole row's sum so far, and
     * past about 2^24 keys of similar weight O would stop growing. */
    vf acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = vf_zero();
    for (int64_t j = 0; j < n; j++) {
        vf b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = vf_load(vp + j * ldv + v * VF_LANES);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            if (r >= mr) break;
            vf a = vf_set1(p[r * ldp + j]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = vf_fma(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            int64_t left = cols - v * VF_LANES;
            float *out = o + r * ldo + v * VF_LANES;
            if (left >= VF_LANES)
                vf_store(out, vf_add(vf_load(out), acc[r][v]));
            else if (left > 0)
                vf_store_n(out, vf_add(vf_load_n(out, left, 0.0f), acc[r][v]), left);
        }
    }
}

#define PV_CASE(k)                                                                                 \
    case k: pv_block(k, cols, n, p + i * ldp, ldp, vp, ldv, o + i * ldo + c, ldo); break;

void PV_NAME(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp, const float *v_panel,
             float *o, int64_t ldo) {
    int64_t ldv = (dv + NR - 1) / NR * NR;
    for (int64_t c = 0; c < dv; c += NR) {
        const float *vp = v_panel + c;
        int64_t cols = dv - c < NR ? dv - c : NR;
        for (int64_t i = 0; i < m; i += MR) {
            switch (m - i < MR ? m - i : MR) { PV_CASES }
        }
    }
}
