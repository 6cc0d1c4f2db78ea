/* Portable S = scale Q . K^T over a row-major K panel. */
#include "ukernels_scalar.h"

void ta_qk_f32_scalar(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                      const float *k_panel, float scale, float *s, int64_t lds) {
    for (int64_t i = 0; i < m; i++) {
        const float *qi = q + i * ldq;
        for (int64_t j = 0; j < n; j++) {
            const float *kj = k_panel + j * d;
            float dot = 0.0f;
            for (int64_t c = 0; c < d; c++)
                dot += qi[c] * kj[c];
            s[i * lds + j] = scale * dot;
        }
    }
}
