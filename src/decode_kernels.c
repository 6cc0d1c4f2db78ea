/*
 * Decoding kernels: streaming dot products and the P.V accumulation over
 * K/V rows read in place from the cache; the online-softmax update between
 * them is the forward's microkernel of the same instruction set.
 *
 * Decoding reads each K/V byte once and does 2 x rows FLOPs per element, so
 * it is bound by memory bandwidth as soon as the kernels convert and
 * multiply faster than memory delivers. Each ISA's body is one function per
 * step with the cache dtype as a compile-time constant (always_inline
 * helpers called through TA_DECODE_SWITCH_DTYPE), so the dtype conversion
 * sits inside the vector loop without a branch. This file holds the portable kernels and
 * the choice among the tables; the AVX2 and AVX-512 ones
 * (decode_kernels_avx2.c, decode_kernels_avx512.c) are compiled with
 * target attributes only (never -mavx* for the file) and chosen at run time
 * from the CPU's features.
 */
#include <stdlib.h>
#include <string.h>

#include "../simd/scalar/ukernels_scalar.h"
#include "convert.h"
#include "decode.h"
#include "dispatch.h"
#include "tileattn_config.h"

#if defined(__x86_64__) && defined(__GNUC__) && TILEATTN_HAVE_X86_SIMD
#define TA_DECODE_X86 1
#else
#define TA_DECODE_X86 0
#endif

float ta_cache_load_f32(const void *row, tileattn_cache_dtype dtype, int64_t idx) {
    switch (dtype) {
    case TILEATTN_CACHE_F32: return ((const float *)row)[idx];
    case TILEATTN_CACHE_F16: return ta_f16_to_f32(((const uint16_t *)row)[idx]);
    case TILEATTN_CACHE_BF16: return ta_bf16_to_f32(((const uint16_t *)row)[idx]);
    case TILEATTN_CACHE_INT8: return (float)((const int8_t *)row)[idx];
    }
    return 0.0f;
}

void ta_decode_split_columns(int64_t rows, int64_t cols, float *x, int64_t ld, int chunk) {
    float plain[64];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c + chunk <= cols; c += chunk) {
            float *y = x + r * ld + c;
            memcpy(plain, y, (size_t)chunk * sizeof(float));
            for (int i = 0; i < chunk / 2; i++)
                y[i] = plain[2 * i], y[chunk / 2 + i] = plain[2 * i + 1];
        }
}

void ta_decode_merge_columns(int64_t rows, int64_t cols, float *x, int64_t ld, int chunk) {
    float plain[64];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c + chunk <= cols; c += chunk) {
            float *y = x + r * ld + c;
            for (int i = 0; i < chunk / 2; i++)
                plain[2 * i] = y[i], plain[2 * i + 1] = y[chunk / 2 + i];
            memcpy(y, plain, (size_t)chunk * sizeof(float));
        }
}

/* ------------------------------------------------------------ portable */

static void qk_scalar(int64_t rows, int64_t n, int64_t d, const float *q, int64_t ldq,
                      const void *const *k_rows, tileattn_cache_dtype dtype, float *s,
                      int64_t lds) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < rows; r++) {
            float dot = 0.0f;
            for (int64_t c = 0; c < d; c++)
                dot += q[r * ldq + c] * ta_cache_load_f32(k_rows[j], dtype, c);
            s[r * lds + j] = dot;
        }
}

static void pv_scalar(int64_t rows, int64_t n, int64_t dv, const float *p, int64_t ldp,
                      const void *const *v_rows, tileattn_cache_dtype dtype, float *o,
                      int64_t ldo) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < dv; c++) {
            float v = ta_cache_load_f32(v_rows[j], dtype, c);
            for (int64_t r = 0; r < rows; r++)
                o[r * ldo + c] += p[r * ldp + j] * v;
        }
}

const ta_decode_kernels ta_decode_kernels_scalar = {"scalar",  qk_scalar, ta_softmax_f32_scalar,
                                                    pv_scalar, NULL,      NULL};

int ta_decode_kernels_all(const ta_decode_kernels **list, int max) {
    int count = 0;
    if (count < max) list[count++] = &ta_decode_kernels_scalar;
#if TA_DECODE_X86
    if (count < max && ta_cpu_runs_isa("avx2")) list[count++] = &ta_decode_kernels_avx2;
    if (count < max && ta_cpu_runs_isa("avx512")) list[count++] = &ta_decode_kernels_avx512;
#endif
    return count;
}

/* The rank of an ISA name in the order scalar < avx2 < avx512 (avx512bf16
 * counts as avx512: decoding has no bf16 dot-product kernel). */
static int isa_rank(const char *name) {
    if (strncmp(name, "avx512", 6) == 0) return 2;
    if (strcmp(name, "avx2") == 0) return 1;
    return 0;
}

const ta_decode_kernels *ta_decode_kernels_select(tileattn_status *status) {
    tileattn_status st = TILEATTN_OK;
    /* The float32 table's ISA: decoding computes in float32, and the best
     * table overall may serve 16-bit inputs only (amx). */
    const ta_ukernels *uk = ta_ukernels_for_dtype(TILEATTN_F32, &st);
    if (status) *status = st;
    if (!uk) return NULL;
    const ta_decode_kernels *list[3];
    int count = ta_decode_kernels_all(list, 3);
    /* The decode kernels live in the library itself, so they exist even in a
     * build without the simd/ tables: use the best the CPU runs unless
     * TILEATTN_ISA asks for less, which tileattn_isa_name() then reports. */
    const char *forced = getenv("TILEATTN_ISA");
    int limit = forced && *forced ? isa_rank(uk->isa) : 2;
    const ta_decode_kernels *best = list[0];
    for (int i = 0; i < count; i++)
        if (isa_rank(list[i]->isa) <= limit) best = list[i];
    return best;
}
