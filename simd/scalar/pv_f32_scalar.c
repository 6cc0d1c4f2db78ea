/* Portable O += P . V over a row-major V panel. */
#include "ukernels_scalar.h"

void ta_pv_f32_scalar(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                      const float *v_panel, float *o, int64_t ldo) {
    /* The tile's sum starts from zero and joins O once: added to O key by
     * key, past about 2^24 keys of similar weight O would stop growing. */
    float tile[TILEATTN_MAX_HEAD_DIM];
    for (int64_t i = 0; i < m; i++) {
        float *oi = o + i * ldo;
        for (int64_t c = 0; c < dv; c++)
            tile[c] = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            float pij = p[i * ldp + j];
            if (pij == 0.0f) continue; /* masked keys cost nothing */
            const float *vj = v_panel + j * dv;
            for (int64_t c = 0; c < dv; c++)
                tile[c] += pij * vj[c];
        }
        for (int64_t c = 0; c < dv; c++)
            oi[c] += tile[c];
    }
}
