/*
 * The microkernel tester (XNNPACK-style): every table ta_ukernels_all()
 * returns for this CPU (scalar first, then AVX2, AVX-512, ... NEON) is run
 * on random tiles and compared with float64 arithmetic and with the scalar
 * table. Every future SIMD table must pass this before the driver uses it.
 *
 * Shapes: m = 1 .. 2*mr+1 rows and n = 1 .. 2*nr+3 keys (edge tiles on both
 * sides of one and two register blocks), qk and pv reading a prefix of a
 * panel packed with more keys (as the driver does on mask boundaries), head dims 1, 3, 17, 64, 100,
 * 128, 256 (none but 64/128/256 a multiple of a vector), float32/float16/bfloat16 sources with row
 * strides larger than the row (the gap holds NaN: reading it into a result poisons it). Every
 * output buffer is surrounded and interleaved with a guard pattern: a kernel may write only the
 * elements its contract names.
 *
 * A table that serves only some input dtypes (ta_ukernels.dtypes) is
 * tested on those; one that keeps Q in the input dtype (q_native) has its
 * Q rows made by its own load_rows, as the driver does.
 *
 * Tolerances, with u = 2^-24:
 *   load_rows, pack: exact (conversions to float32 are exact; q_native
 *       rows are the input's bits).
 *   qk: |S - scale S_exact| <= scale gamma_d sum_c |q_c k_c| + u |S|,
 *       gamma_d = d u / (1 - d u): the classic bound for any summation
 *       order, with or without FMA, and the rounding of the product with
 *       scale. Pair instructions on bfloat16 (q_native tables: TDPBF16PS,
 *       BFDOT) may round twice per pair of products: gamma_2d there; FMLAL
 *       rounds once per product, as an FMA.
 *   pv: |O - O_exact| <= gamma_(n+1) * (|O_in| + sum_j |p_j v_j|), likewise.
 *   softmax: a vector exp may be off by a few ULP: each P and alpha gets a
 *       relative 2^-21 (4 ULP) plus u |x| for the rounding of its argument
 *       x = S - max; 2^-18 with p_bf16, whose exp is vf_exp_for_bf16 (its
 *       stated bound: P is rounded to 2^-8 next); row_sum adds
 *       gamma_(n+2) of its terms; row_max is exact;
 *       masked (-inf) entries give exactly 0. Results below EXP_ABS = 2^-100
 *       may flush to 0: every row holds a P = 1 (its max), so such a term is
 *       2^-76 of one ULP of the row sum (a vector exp typically flushes at
 *       x < -87.3 rather than at the float32 subnormal bound).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "helpers.h"
#include "ukernel.h"

#define GUARD_BITS 0x7fa5a5a5u /* a NaN no kernel produces */
enum { GUARD = 64 };
#define EXP_ABS 0x1.0p-100

static const int64_t dims[] = {1, 3, 17, 64, 100, 128, 256};
enum { NUM_DIMS = sizeof dims / sizeof dims[0] };
static const tileattn_dtype src_dtypes[] = {TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16};

static int ntables;
static const ta_ukernels *tables[16];

static void load_tables(void) {
    ntables = ta_ukernels_all(tables, 16);
    cr_assert_geq(ntables, 1, "no microkernel table at all");
    cr_assert_eq(tables[0], &ta_ukernels_scalar, "the first table must be the portable one");
    for (int t = 0; t < ntables; t++) {
        cr_assert_not_null(tables[t]->isa);
        cr_assert(tables[t]->mr >= 1 && tables[t]->nr >= 1, "%s: bad register block",
                  tables[t]->isa);
        cr_assert(tables[t]->load_rows && tables[t]->pack_k && tables[t]->packed_k_floats &&
                      tables[t]->pack_v && tables[t]->packed_v_floats && tables[t]->qk &&
                      tables[t]->softmax && tables[t]->pv,
                  "%s: a NULL entry", tables[t]->isa);
    }
    /* The twins that round P to bfloat16 (used when the caller allows it)
     * are tested like any table. */
    for (int t = 0, base = ntables; t < base; t++) {
        const ta_ukernels *twin = tables[t]->with_p_bf16;
        if (!twin) continue;
        cr_assert(twin->p_bf16 && !twin->with_p_bf16, "%s: a twin must round P", twin->isa);
        cr_assert((twin->dtypes & ~tables[t]->dtypes) == 0, "%s: the twin serves more dtypes",
                  twin->isa);
        cr_assert_lt(ntables, 16);
        tables[ntables++] = twin;
    }
    cr_log_info("%d microkernel tables", ntables);
    for (int t = 0; t < ntables; t++)
        fprintf(stderr, "table %s%s: mr %d nr %d\n", tables[t]->isa,
                tables[t]->p_bf16 ? " (P in bfloat16)" : "", tables[t]->mr, tables[t]->nr);
}

/* --- guarded float buffers ------------------------------------------- */

static float guard_value(void) {
    float f;
    uint32_t u = GUARD_BITS;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int is_guard(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u == GUARD_BITS;
}

/* n floats with GUARD guard floats on each side, all set to the guard. */
static float *galloc(size_t n) {
    float *p = th_alloc((n + 2 * GUARD) * sizeof(float));
    for (size_t i = 0; i < n + 2 * GUARD; i++)
        p[i] = guard_value();
    return p + GUARD;
}

static void gfree(float *p) {
    if (p) th_free(p - GUARD);
}

static int guards_intact(const float *p, size_t n) {
    for (size_t i = 0; i < GUARD; i++)
        if (!is_guard(p[-1 - (ptrdiff_t)i]) || !is_guard(p[n + i])) return 0;
    return 1;
}

/* Gap elements of a rows x ld matrix (columns >= cols) still hold the guard. */
static int gaps_intact(const float *p, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = cols; c < ld; c++)
            if (!is_guard(p[r * ld + c])) return 0;
    return 1;
}

/* A source tensor of rows x dim in dtype with row stride, NaN in the gaps. */
static void *make_source(th_rng *rng, tileattn_dtype dtype, int64_t rows, int64_t dim,
                         int64_t stride, double gain) {
    size_t elems = (size_t)((rows - 1) * stride + dim);
    void *p = th_alloc(elems * tileattn_dtype_size(dtype));
    for (size_t i = 0; i < elems; i++)
        th_store(p, dtype, (int64_t)i, NAN);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < dim; c++)
            th_store(p, dtype, r * stride + c, gain * th_rng_normal(rng));
    return p;
}

#define FAIL_ONCE(counter, ...)                                                                    \
    do {                                                                                           \
        if ((counter)++ < 8) fprintf(stderr, __VA_ARGS__);                                         \
    } while (0)

/* --- load_rows -------------------------------------------------------- */

Test(unit, ukernel_load_rows) {
    load_tables();
    th_rng rng;
    th_rng_seed(&rng, 11);
    int bad = 0, runs = 0;
    static const int64_t row_counts[] = {1, 2, 3, 5, 8, 13, 33};
    for (int t = 0; t < ntables; t++)
        for (int di = 0; di < NUM_DIMS; di++)
            for (int k = 0; k < 3; k++)
                for (int ri = 0; ri < 7; ri++) {
                    const ta_ukernels *uk = tables[t];
                    int64_t dim = dims[di], rows = row_counts[ri];
                    int64_t stride = dim + (ri % 3 == 0 ? 0 : ri % 3 == 1 ? 1 : 7);
                    int64_t ld = ri % 2 ? (dim + 15) / 16 * 16 : dim + (ri % 4 == 0 ? 0 : 5);
                    tileattn_dtype dt = src_dtypes[k];
                    if (!(uk->dtypes & TA_DTYPE_BIT(dt))) continue;
                    void *src = make_source(&rng, dt, rows, dim, stride, 3.0);
                    float *dst = galloc((size_t)(rows * ld));
                    uk->load_rows(rows, dim, src, dt, stride, dst, ld);
                    runs++;
                    int ok = guards_intact(dst, (size_t)(rows * ld));
                    for (int64_t r = 0; r < rows && ok; r++) {
                        if (uk->q_native) { /* the input's 16-bit elements, then zeros */
                            const uint16_t *got = (const uint16_t *)(dst + r * ld);
                            const uint16_t *in = (const uint16_t *)src + r * stride;
                            for (int64_t c = 0; c < 2 * ld && ok; c++)
                                if (got[c] != (c < dim ? in[c] : 0)) ok = 0;
                            continue;
                        }
                        for (int64_t c = 0; c < ld && ok; c++) {
                            float want = c < dim ? (float)th_load(src, dt, r * stride + c) : 0.0f;
                            float got = dst[r * ld + c];
                            if (memcmp(&want, &got, sizeof got) != 0) ok = 0;
                        }
                    }
                    if (!ok)
                        FAIL_ONCE(bad,
                                  "load_rows %s: rows %lld dim %lld %s stride %lld ld %lld: "
                                  "wrong value, tail not zeroed or a write outside\n",
                                  uk->isa, (long long)rows, (long long)dim, th_dtype_name(dt),
                                  (long long)stride, (long long)ld);
                    th_free(src);
                    gfree(dst);
                }
    cr_log_info("load_rows: %d runs", runs);
    cr_assert_eq(bad, 0, "%d load_rows runs failed", bad);
}

/* --- pack_k + qk ------------------------------------------------------- */

static int run_qk(const ta_ukernels *uk, th_rng *rng, int64_t m, int64_t n, int64_t d,
                  tileattn_dtype dt, int variant) {
    int64_t kstride = d + (variant % 2 ? 3 : 0);
    int64_t ldq = d + (variant & 2 ? 5 : 0);
    int64_t lds = n + (variant % 3 ? 7 : 0);
    /* The driver may pack more keys than one call reads (a prefix of the
     * packed block, ukernel.h): pack n_pack >= n keys, call with n. */
    int64_t n_pack = variant % 3 == 0 ? n : n + th_rng_int(rng, 1, 2 * uk->nr + 3);
    int64_t qstride = d + (variant % 5 == 1 ? 3 : 0);
    float scale = variant % 4 == 3 ? 1.0f : (float)th_rng_range(rng, 0.05, 1.5);
    void *ksrc = make_source(rng, dt, n_pack, d, kstride, 1.0);
    void *qsrc = make_source(rng, dt, m, d, qstride, 1.0);
    /* Q as the table's own load_rows writes it (the driver's path), with
     * guards in what it must not touch. */
    float *q = galloc((size_t)(m * ldq));
    uk->load_rows(m, d, qsrc, dt, qstride, q, ldq);
    size_t panel_n = (size_t)uk->packed_k_floats(n_pack, d);
    float *panel = galloc(panel_n);
    float *s = galloc((size_t)(m * lds));
    float *s_ref = galloc((size_t)(m * lds));
    uk->pack_k(n_pack, d, ksrc, dt, kstride, panel);
    uk->qk(m, n, d, q, ldq, panel, scale, s, lds);
    if (uk != &ta_ukernels_scalar) { /* the scalar table on the same inputs */
        float *q2 = galloc((size_t)(m * ldq));
        float *p2 = galloc((size_t)ta_ukernels_scalar.packed_k_floats(n_pack, d));
        ta_ukernels_scalar.load_rows(m, d, qsrc, dt, qstride, q2, ldq);
        ta_ukernels_scalar.pack_k(n_pack, d, ksrc, dt, kstride, p2);
        ta_ukernels_scalar.qk(m, n, d, q2, ldq, p2, scale, s_ref, lds);
        gfree(q2);
        gfree(p2);
    }
    int ok = guards_intact(panel, panel_n) && guards_intact(s, (size_t)(m * lds)) &&
             gaps_intact(s, m, n, lds) && guards_intact(q, (size_t)(m * ldq));
    const char *why = ok ? NULL : "a write outside the panel, Q's rows or S[m x n]";
    double terms = uk->q_native && dt == TILEATTN_BF16 ? 2.0 * (double)d : (double)d;
    double gamma = terms * 0x1.0p-24 / (1.0 - terms * 0x1.0p-24);
    for (int64_t i = 0; i < m && ok; i++)
        for (int64_t j = 0; j < n && ok; j++) {
            double exact = 0, absum = 0;
            for (int64_t c = 0; c < d; c++) {
                double x = th_load(qsrc, dt, i * qstride + c) * th_load(ksrc, dt, j * kstride + c);
                exact += x;
                absum += fabs(x);
            }
            exact *= scale;
            double tol = scale * gamma * absum + 0x1.0p-24 * fabs(exact) + 1e-37;
            double got = s[i * lds + j];
            if (!(fabs(got - exact) <= tol)) ok = 0, why = "S differs from the exact dot product";
            if (ok && uk != &ta_ukernels_scalar && !(fabs(got - s_ref[i * lds + j]) <= 2 * tol))
                ok = 0, why = "S differs from the scalar table's";
        }
    if (!ok)
        fprintf(stderr,
                "qk %s: m %lld n %lld (of %lld packed) d %lld %s kstride %lld ldq %lld lds %lld: "
                "%s\n",
                uk->isa, (long long)m, (long long)n, (long long)n_pack, (long long)d,
                th_dtype_name(dt), (long long)kstride, (long long)ldq, (long long)lds, why);
    th_free(ksrc);
    th_free(qsrc);
    gfree(q);
    gfree(panel);
    gfree(s);
    gfree(s_ref);
    return ok;
}

Test(unit, ukernel_pack_k_qk) {
    load_tables();
    th_rng rng;
    th_rng_seed(&rng, 12);
    int bad = 0, runs = 0;
    for (int t = 0; t < ntables; t++) {
        const ta_ukernels *uk = tables[t];
        int64_t max_m = 2 * uk->mr + 1, max_n = 2 * uk->nr + 3;
        for (int di = 0; di < NUM_DIMS; di++)
            for (int k = 0; k < 3; k++) {
                if (!(uk->dtypes & TA_DTYPE_BIT(src_dtypes[k]))) continue;
                /* Every m with a random n, every n with a random m. */
                for (int64_t m = 1; m <= max_m; m++, runs++)
                    bad += !run_qk(uk, &rng, m, th_rng_int(&rng, 1, max_n), dims[di], src_dtypes[k],
                                   (int)(m + di));
                for (int64_t n = 1; n <= max_n; n++, runs++)
                    bad += !run_qk(uk, &rng, th_rng_int(&rng, 1, max_m), n, dims[di], src_dtypes[k],
                                   (int)(n + k));
            }
        /* One driver-sized tile. */
        tileattn_dtype big = uk->dtypes & TA_DTYPE_BIT(TILEATTN_F32)    ? TILEATTN_F32
                             : uk->dtypes & TA_DTYPE_BIT(TILEATTN_BF16) ? TILEATTN_BF16
                                                                        : TILEATTN_F16;
        bad += !run_qk(uk, &rng, 64, 256, 128, big, 0);
        runs++;
    }
    cr_log_info("pack_k + qk: %d runs", runs);
    cr_assert_eq(bad, 0, "%d qk runs failed", bad);
}

/* --- pack_v + pv ------------------------------------------------------- */

static int run_pv(const ta_ukernels *uk, th_rng *rng, int64_t m, int64_t n, int64_t dv,
                  tileattn_dtype dt, int variant) {
    int64_t vstride = dv + (variant % 2 ? 5 : 0);
    int64_t ldp = n + (variant & 2 ? 3 : 0);
    int64_t ldo = dv + (variant % 3 ? 9 : 0);
    int64_t n_pack = variant % 3 == 0 ? n : n + th_rng_int(rng, 1, 2 * uk->nr + 3);
    void *vsrc = make_source(rng, dt, n_pack, dv, vstride, 1.0);
    /* Keys the call does not cover are hidden keys: their values may be
     * anything, and must not reach O (0 * inf would be NaN). */
    for (int64_t j = n; j < n_pack; j++)
        for (int64_t c = 0; c < dv; c++)
            th_store(vsrc, dt, j * vstride + c, INFINITY);
    /* pf: P as float32 (for the scalar table and the exact sum); p: P as
     * this table reads it, bfloat16 elements in place with p_bf16. Past n,
     * NaN: reading it poisons O. */
    float *p = galloc((size_t)(m * ldp)), *pf = galloc((size_t)(m * ldp));
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) { /* probabilities in [0, 1], some exactly 0 */
            float x = th_rng_uniform(rng) < 0.2 ? 0.0f : (float)th_rng_uniform(rng);
            pf[i * ldp + j] = uk->p_bf16 ? th_bf16_to_f32(th_f32_to_bf16(x)) : x;
        }
        for (int64_t j = n; j < ldp; j++)
            pf[i * ldp + j] = NAN;
        if (uk->p_bf16) {
            uint16_t *row = (uint16_t *)(p + i * ldp);
            for (int64_t j = 0; j < 2 * ldp; j++)
                row[j] = j < n ? th_f32_to_bf16(pf[i * ldp + j]) : 0x7fc0; /* NaN */
        } else {
            memcpy(p + i * ldp, pf + i * ldp, (size_t)ldp * sizeof(float));
        }
    }
    float *o = galloc((size_t)(m * ldo)), *o_in = galloc((size_t)(m * ldo));
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < dv; c++)
            o[i * ldo + c] = o_in[i * ldo + c] = (float)th_rng_normal(rng);
    float *o_ref = galloc((size_t)(m * ldo));
    memcpy(o_ref, o_in, (size_t)(m * ldo) * sizeof(float));
    size_t panel_n = (size_t)uk->packed_v_floats(n_pack, dv);
    float *panel = galloc(panel_n);
    uk->pack_v(n_pack, dv, vsrc, dt, vstride, panel);
    uk->pv(m, n, dv, p, ldp, panel, o, ldo);
    if (uk != &ta_ukernels_scalar) {
        float *p2 = galloc((size_t)ta_ukernels_scalar.packed_v_floats(n_pack, dv));
        ta_ukernels_scalar.pack_v(n_pack, dv, vsrc, dt, vstride, p2);
        ta_ukernels_scalar.pv(m, n, dv, pf, ldp, p2, o_ref, ldo);
        gfree(p2);
    }
    int ok = guards_intact(panel, panel_n) && guards_intact(o, (size_t)(m * ldo)) &&
             gaps_intact(o, m, dv, ldo);
    const char *why = ok ? NULL : "a write outside the panel or outside O[m x dv]";
    double gamma = (double)(n + 1) * 0x1.0p-24 / (1.0 - (double)(n + 1) * 0x1.0p-24);
    for (int64_t i = 0; i < m && ok; i++)
        for (int64_t c = 0; c < dv && ok; c++) {
            double exact = o_in[i * ldo + c], absum = fabs(exact);
            for (int64_t j = 0; j < n; j++) {
                double x = (double)pf[i * ldp + j] * th_load(vsrc, dt, j * vstride + c);
                exact += x;
                absum += fabs(x);
            }
            double tol = gamma * absum + 1e-37;
            double got = o[i * ldo + c];
            if (!(fabs(got - exact) <= tol)) ok = 0, why = "O differs from the exact O + P V";
            if (ok && uk != &ta_ukernels_scalar && !(fabs(got - o_ref[i * ldo + c]) <= 2 * tol))
                ok = 0, why = "O differs from the scalar table's";
        }
    if (!ok)
        fprintf(stderr,
                "pv %s: m %lld n %lld (of %lld packed) dv %lld %s vstride %lld ldp %lld ldo %lld: "
                "%s\n",
                uk->isa, (long long)m, (long long)n, (long long)n_pack, (long long)dv,
                th_dtype_name(dt), (long long)vstride, (long long)ldp, (long long)ldo, why);
    th_free(vsrc);
    gfree(p);
    gfree(pf);
    gfree(o);
    gfree(o_in);
    gfree(o_ref);
    gfree(panel);
    return ok;
}

Test(unit, ukernel_pack_v_pv) {
    load_tables();
    th_rng rng;
    th_rng_seed(&rng, 13);
    int bad = 0, runs = 0;
    for (int t = 0; t < ntables; t++) {
        const ta_ukernels *uk = tables[t];
        int64_t max_m = 2 * uk->mr + 1, max_n = 2 * uk->nr + 3;
        for (int di = 0; di < NUM_DIMS; di++)
            for (int k = 0; k < 3; k++) {
                if (!(uk->dtypes & TA_DTYPE_BIT(src_dtypes[k]))) continue;
                for (int64_t m = 1; m <= max_m; m++, runs++)
                    bad += !run_pv(uk, &rng, m, th_rng_int(&rng, 1, max_n), dims[di], src_dtypes[k],
                                   (int)(m + di));
                for (int64_t n = 1; n <= max_n; n++, runs++)
                    bad += !run_pv(uk, &rng, th_rng_int(&rng, 1, max_m), n, dims[di], src_dtypes[k],
                                   (int)(n + k));
            }
        if (uk->dtypes & TA_DTYPE_BIT(TILEATTN_BF16)) {
            bad += !run_pv(uk, &rng, 64, 256, 128, TILEATTN_BF16, 1);
            runs++;
        }
    }
    cr_log_info("pack_v + pv: %d runs", runs);
    cr_assert_eq(bad, 0, "%d pv runs failed", bad);
}

/* --- softmax ----------------------------------------------------------- */

/* The relative error the softmax's exp may add (see the header). */
static double softmax_exp_rel(const ta_ukernels *uk) {
    return uk->p_bf16 ? 0x1.0p-18 : 0x1.0p-21;
}

/* P[i][j] as softmax left it: a float, or with p_bf16 a bfloat16 in the
 * first half of the row. */
static float p_at(const ta_ukernels *uk, const float *s, int64_t lds, int64_t i, int64_t j) {
    return uk->p_bf16 ? th_bf16_to_f32(((const uint16_t *)(s + i * lds))[j]) : s[i * lds + j];
}

static int run_softmax(const ta_ukernels *uk, th_rng *rng, int64_t m, int64_t n, int64_t dv,
                       int variant) {
    int64_t lds = n + (variant % 2 ? 5 : 0), ldo = dv + (variant & 2 ? 3 : 0);
    float *s = galloc((size_t)(m * lds)), *s_in = galloc((size_t)(m * lds));
    float *o = galloc((size_t)(m * ldo)), *o_in = galloc((size_t)(m * ldo));
    float *row_max = galloc((size_t)m), *row_sum = galloc((size_t)m);
    float *max_in = galloc((size_t)m), *sum_in = galloc((size_t)m);
    for (int64_t i = 0; i < m; i++) {
        /* Row kinds: 0 ordinary, 1 first tile (old max -inf), 2 all masked
         * (S all -inf) with a finite old max, 3 all masked and old max -inf,
         * 4 old max above every score (alpha = 1), 5 large magnitudes. */
        int kind = (int)th_rng_int(rng, 0, 5);
        double centre = kind == 5 ? th_rng_range(rng, -80, 80) : th_rng_range(rng, -3, 3);
        double smax = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            float x = (float)(centre + 3.0 * th_rng_normal(rng));
            if (kind == 2 || kind == 3 || th_rng_uniform(rng) < 0.2) x = -INFINITY;
            s_in[i * lds + j] = x;
            if (x > smax) smax = x;
        }
        if (kind == 1 || kind == 3) {
            max_in[i] = -INFINITY;
            sum_in[i] = 0.0f;
        } else {
            double base = isfinite(smax) ? smax : centre;
            max_in[i] = (float)(kind == 4 ? base + th_rng_range(rng, 0, 4)
                                          : base + th_rng_range(rng, -6, 2));
            sum_in[i] = (float)th_rng_range(rng, 0.5, 50.0);
        }
        for (int64_t c = 0; c < dv; c++)
            o_in[i * ldo + c] = (float)th_rng_normal(rng);
    }
    memcpy(s, s_in, (size_t)(m * lds) * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = n; j < lds; j++)
            s[i * lds + j] = s_in[i * lds + j] = guard_value();
    memcpy(o, o_in, (size_t)(m * ldo) * sizeof(float));
    memcpy(row_max, max_in, (size_t)m * sizeof(float));
    memcpy(row_sum, sum_in, (size_t)m * sizeof(float));

    uk->softmax(m, n, s, lds, row_max, row_sum, o, ldo, dv);

    int ok = guards_intact(s, (size_t)(m * lds)) && gaps_intact(s, m, n, lds) &&
             guards_intact(o, (size_t)(m * ldo)) && gaps_intact(o, m, dv, ldo) &&
             guards_intact(row_max, (size_t)m) && guards_intact(row_sum, (size_t)m);
    const char *why = ok ? NULL : "a write outside S, O, row_max or row_sum";
    const double u = 0x1.0p-24, exp_rel = softmax_exp_rel(uk), tiny = EXP_ABS;
    /* p_bf16: P rounded to bfloat16 (to nearest: a relative 2^-8 more). */
    const double p_round = uk->p_bf16 ? 0x1.0p-8 : 0.0;
    int64_t fi = -1, fj = -1;
    for (int64_t i = 0; i < m && ok; i++) {
        double nm = max_in[i];
        for (int64_t j = 0; j < n; j++)
            if (s_in[i * lds + j] > nm) nm = s_in[i * lds + j];
        if (row_max[i] != (float)nm) {
            ok = 0, why = "row_max is not the exact maximum", fi = i;
            break;
        }
        if (nm == -INFINITY) { /* nothing seen yet: P = 0, the rest unchanged */
            for (int64_t j = 0; j < n; j++)
                if (p_at(uk, s, lds, i, j) != 0.0f)
                    ok = 0, why = "P of an all -inf row is not 0", fi = i;
            if (row_sum[i] != sum_in[i]) ok = 0, why = "row_sum of an all -inf row changed", fi = i;
            for (int64_t c = 0; c < dv; c++)
                if (memcmp(&o[i * ldo + c], &o_in[i * ldo + c], sizeof(float)) != 0)
                    ok = 0, why = "O of an all -inf row changed", fi = i;
            continue;
        }
        double psum = 0, ptol = 0;
        for (int64_t j = 0; j < n && ok; j++) {
            double x = s_in[i * lds + j];
            double got = p_at(uk, s, lds, i, j);
            if (x == -INFINITY) {
                if (got != 0.0f) ok = 0, why = "a masked (-inf) score gave P != 0", fi = i, fj = j;
                continue;
            }
            double want = exp(x - nm);
            double tol = want * (exp_rel + u * fabs(x - nm)) + tiny;
            /* The row sum adds P before rounding: its tolerance is tol's. */
            double got_tol = tol + (want + tol) * p_round;
            if (!(fabs(got - want) <= got_tol))
                ok = 0, why = "P = exp(S - max) out of tolerance", fi = i, fj = j;
            psum += want;
            ptol += tol;
        }
        if (!ok) break;
        double alpha = max_in[i] == -INFINITY ? 0.0 : exp((double)max_in[i] - nm);
        double atol = max_in[i] == -INFINITY /* alpha must be exactly 0 */
                          ? 0.0
                          : alpha * (exp_rel + u * fabs((double)max_in[i] - nm)) + tiny;
        double sum_want = (double)sum_in[i] * alpha + psum;
        double sum_tol = (double)sum_in[i] * atol + ptol +
                         (double)(n + 2) * u * ((double)sum_in[i] * alpha + psum) + tiny;
        if (!(fabs(row_sum[i] - sum_want) <= sum_tol)) {
            ok = 0, why = "row_sum out of tolerance", fi = i;
            break;
        }
        for (int64_t c = 0; c < dv; c++) {
            double want = (double)o_in[i * ldo + c] * alpha;
            double tol = fabs((double)o_in[i * ldo + c]) * (atol + u * alpha) + tiny;
            if (!(fabs(o[i * ldo + c] - want) <= tol)) {
                ok = 0, why = "O * alpha out of tolerance", fi = i, fj = c;
                break;
            }
        }
    }
    if (!ok)
        fprintf(stderr,
                "softmax %s: m %lld n %lld dv %lld lds %lld ldo %lld: %s (row %lld col %lld)\n",
                uk->isa, (long long)m, (long long)n, (long long)dv, (long long)lds, (long long)ldo,
                why, (long long)fi, (long long)fj);
    gfree(s), gfree(s_in), gfree(o), gfree(o_in);
    gfree(row_max), gfree(row_sum), gfree(max_in), gfree(sum_in);
    return ok;
}

Test(unit, ukernel_softmax) {
    load_tables();
    th_rng rng;
    th_rng_seed(&rng, 14);
    int bad = 0, runs = 0;
    for (int t = 0; t < ntables; t++) {
        const ta_ukernels *uk = tables[t];
        int64_t max_m = 2 * uk->mr + 1, max_n = 2 * uk->nr + 3;
        for (int di = 0; di < NUM_DIMS; di++)
            for (int rep = 0; rep < 3; rep++) {
                for (int64_t m = 1; m <= max_m; m++, runs++)
                    bad += !run_softmax(uk, &rng, m, th_rng_int(&rng, 1, max_n), dims[di],
                                        (int)(m + rep));
                for (int64_t n = 1; n <= max_n; n++, runs++)
                    bad += !run_softmax(uk, &rng, th_rng_int(&rng, 1, max_m), n, dims[di],
                                        (int)(n + rep));
            }
        bad += !run_softmax(uk, &rng, 64, 256, 128, 0);
        runs++;
    }
    cr_log_info("softmax: %d runs", runs);
    cr_assert_eq(bad, 0, "%d softmax runs failed", bad);
}

/* The exp used by softmax, over its whole useful range: exp(x) for x in
 * [-104, 0] (the arguments S - max take) must be within 4 ULP (2^-18 and
 * the rounding to bfloat16 with p_bf16), or within EXP_ABS absolutely
 * (flushing tiny values to 0 is allowed). */
Test(unit, ukernel_softmax_exp_range) {
    load_tables();
    int bad = 0;
    enum { N = 4096 };
    for (int t = 0; t < ntables; t++) {
        const ta_ukernels *uk = tables[t];
        float *s = galloc(N), *in = galloc(N);
        float row_max = 0.0f, row_sum = 0.0f, o = 0.0f;
        for (int base = 0; base < 26; base++) {
            for (int j = 0; j < N; j++)
                s[j] = -(float)base * 4.0f - (float)j * (4.0f / N);
            s[0] = 0.0f; /* the max, so each P = exp(S) */
            memcpy(in, s, N * sizeof(float));
            row_max = -INFINITY, row_sum = 0.0f;
            uk->softmax(1, N, s, N, &row_max, &row_sum, &o, 1, 1);
            for (int j = 1; j < N; j++) {
                double x = in[j];
                double want = exp(x);
                double tol = want * (softmax_exp_rel(uk) + (uk->p_bf16 ? 0x1.0p-8 : 0.0)) + EXP_ABS;
                double got = p_at(uk, s, N, 0, j);
                if (!(fabs(got - want) <= tol))
                    FAIL_ONCE(bad, "exp %s: exp(%.9g) = %.9g, want %.9g\n", uk->isa, x, got, want);
            }
        }
        gfree(s);
        gfree(in);
    }
    cr_assert_eq(bad, 0, "%d exp values out of tolerance", bad);
}
