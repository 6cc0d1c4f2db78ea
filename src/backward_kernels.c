/*
 * The backward's portable microkernels (plain C the compiler may
 * auto-vectorize for the baseline ISA) and the choice of kernel table.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "dispatch.h"
#include "tileattn_config.h"

static void gemm_portable(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                          const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate) {
    for (int64_t i = 0; i < m; i++) {
        float *restrict c_row = c + i * ldc;
        if (!accumulate)
            for (int64_t j = 0; j < n; j++)
                c_row[j] = 0.0f;
        for (int64_t p = 0; p < k; p++) {
            float a_ip = a[i * rsa + p * csa];
            const float *restrict b_row = b + p * ldb;
            for (int64_t j = 0; j < n; j++)
                c_row[j] += a_ip * b_row[j];
        }
    }
}

static void grad_scores_portable(const ta_bwd_tile *t, float *s, float *dp, int64_t ld) {
    float cap = t->softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    for (int64_t r = 0; r < t->m; r++) {
        int64_t i = t->i0 + r;
        float *p_row = s + r * ld, *ds_row = dp + r * ld;
        float lse = t->lse[r], delta = t->delta[r];
        /* A row that saw no key (LSE = -inf) has P = 0 everywhere. */
        int64_t first = lse == -INFINITY ? t->n : 0, last = t->n - 1;
        if (t->per_element_mask) {
            int64_t f = ta_first_key(&t->window, i) - t->j0, l = ta_last_key(&t->window, i) - t->j0;
            if (f > first) first = f;
            if (l < last) last = l;
        }
        for (int64_t c = 0; c < t->n; c++) {
            if (c < first || c > last) {
                p_row[c] = 0.0f;
                ds_row[c] = 0.0f;
                continue;
            }
            float x = t->scale * p_row[c], slope_of_cap = 1.0f;
            if (cap > 0.0f) {
                float th = tanhf(x * inv_cap);
                x = cap * th;
                slope_of_cap = 1.0f - th * th; /* d/dx [cap tanh(x / cap)] */
            }
            if (t->alibi_slope != 0.0f)
                x -= t->alibi_slope * (float)llabs(i + t->window.offset - (t->j0 + c));
            if (t->bias) x += t->bias[r * t->ldb + c];
            float p = expf(x - lse); /* a hidden key (x = -inf) gives 0 */
            p_row[c] = p;
            ds_row[c] = t->scale * slope_of_cap * (p * (ds_row[c] - delta));
        }
    }
}

const ta_bwd_kernels ta_bwd_kernels_portable = {
    .isa = "portable",
    .gemm = gemm_portable,
    .grad_scores = grad_scores_portable,
    .scores = &ta_ukernels_scalar,
};

#if TILEATTN_HAVE_ARM_SIMD
/* AArch64: S and dP on the NEON register block; the rest stays portable
 * (plain C the compiler vectorizes for the baseline, which includes NEON). */
static const ta_bwd_kernels kernels_neon = {
    .isa = "neon",
    .gemm = gemm_portable,
    .grad_scores = grad_scores_portable,
    .scores = &ta_ukernels_neon,
};
const ta_bwd_kernels *ta_bwd_kernels_neon(void) {
    return &kernels_neon;
}
#else
const ta_bwd_kernels *ta_bwd_kernels_neon(void) {
    return NULL;
}
#endif

const ta_bwd_kernels *ta_bwd_kernels_select(tileattn_status *status) {
    tileattn_status st = TILEATTN_OK;
    /* Follow the forward's choice for float32, the backward's arithmetic,
     * so that one place picks the ISA (TILEATTN_ISA included): the best
     * table overall may serve 16-bit inputs only (amx, neonbf16). */
    const ta_ukernels *uk = ta_ukernels_for_dtype(TILEATTN_F32, &st);
    *status = st;
    if (st) return NULL;
    const ta_bwd_kernels *simd = NULL;
    if (strncmp(uk->isa, "avx512", 6) == 0)
        simd = ta_bwd_kernels_avx512();
    else if (strcmp(uk->isa, "avx2") == 0)
        simd = ta_bwd_kernels_avx2();
    else if (strncmp(uk->isa, "neon", 4) == 0)
        simd = ta_bwd_kernels_neon();
    return simd ? simd : &ta_bwd_kernels_portable;
}

int ta_bwd_kernels_all(const ta_bwd_kernels **list, int max) {
    const ta_bwd_kernels *avx2 = ta_bwd_kernels_avx2(), *avx512 = ta_bwd_kernels_avx512();
    const ta_bwd_kernels *neon = ta_bwd_kernels_neon();
    int count = 0;
    if (count < max) list[count++] = &ta_bwd_kernels_portable;
    if (count < max && neon && ta_cpu_runs_isa("neon")) list[count++] = neon;
    if (count < max && avx2 && ta_cpu_runs_isa("avx2")) list[count++] = avx2;
    if (count < max && avx512 && ta_cpu_runs_isa("avx512")) list[count++] = avx512;
    return count;
}
