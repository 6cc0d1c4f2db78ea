/*
 * The Q.K^T tile, GEMM style (BLIS's sgemm microkernel): MR query rows
 * broadcast against NR = NV vectors of keys held in registers, the inner
 * loop over the head dimension one broadcast + NV FMAs per row.
 *
 * The including file defines MR, NV (vectors across NR) and includes its
 * ISA's vocabulary first. K comes packed by pack_k (pack_f32_tmpl.h) as
 * panels of NR keys, [ceil(n/NR)][d][NR], zero-padded past n, so one panel
 * streams contiguously and a prefix of the packed keys is a prefix of the
 * panels (the driver trims n on the mask's boundary).
 */
#define NR (NV * VF_LANES)

/* One MR' x NR block (MR' = mr <= MR, a constant after inlining, so the
 * accumulators stay in registers). cols = valid keys of the panel. */
static inline __attribute__((always_inline)) void qk_block(const int mr, int64_t cols, int64_t d,
                                                           const float *q, int64_t ldq,
                                                           const float *kp, float scale, float *s,
                                                           int64_t lds) {
    vf acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = vf_zero();
    for (int64_t c = 0; c < d; c++) {
        vf b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = vf_load(kp + c * NR + v * VF_LANES);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            if (r >= mr) break;
            vf a = vf_set1(q[r * ldq + c]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = vf_fma(a, b[v], acc[r][v]);
        }
    }
    vf vscale = vf_set1(scale);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            acc[r][v] = vf_mul(acc[r][v], vscale);
            int64_t left = cols - v * VF_LANES;
            if (left >= VF_LANES)
                vf_store(s + r * lds + v * VF_LANES, acc[r][v]);
            else if (left > 0)
                vf_store_n(s + r * lds + v * VF_LANES, acc[r][v], left);
        }
    }
}

#define QK_CASE(k)                                                                                 \
    case k: qk_block(k, cols, d, q + i * ldq, ldq, kp, scale, s + i * lds + j, lds); break;

void QK_NAME(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq, const float *k_panel,
             float scale, float *s, int64_t lds) {
    for (int64_t j = 0; j < n; j += NR) {
        const float *kp = k_panel + (j / NR) * d * NR;
        int64_t cols = n - j < NR ? n - j : NR;
        for (int64_t i = 0; i < m; i += MR) {
            switch (m - i < MR ? m - i : MR) { QK_CASES }
        }
    }
}
