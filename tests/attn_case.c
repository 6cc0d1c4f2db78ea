#define _POSIX_C_SOURCE 200809L
#include "attn_case.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 0xA5

th_case th_case_default(void) {
    th_case c;
    memset(&c, 0, sizeof c);
    c.batch = c.sq = c.sk = c.h = c.hk = 1;
    c.d = 64;
    c.dtype = TILEATTN_F32;
    c.wl = c.wr = -1;
    c.bias_dtype = TILEATTN_F32;
    return c;
}

static const char *causal_name(tileattn_causal c) {
    switch (c) {
    case TILEATTN_CAUSAL_NONE: return "none";
    case TILEATTN_CAUSAL_BOTTOM_RIGHT: return "bottom-right";
    case TILEATTN_CAUSAL_TOP_LEFT: return "top-left";
    }
    return "?";
}

void th_case_str(const th_case *c, char *buf, size_t len) {
    size_t used = 0;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (used < len) {                                                                          \
            int n_ = snprintf(buf + used, len - used, __VA_ARGS__);                                \
            if (n_ > 0) used += (size_t)n_;                                                        \
        }                                                                                          \
    } while (0)
    if (c->nseq > 0) {
        APPEND("varlen lens_q=[");
        for (int s = 0; s < c->nseq; s++)
            APPEND("%s%d", s ? "," : "", c->lens_q[s]);
        APPEND("] lens_k=[");
        for (int s = 0; s < c->nseq; s++)
            APPEND("%s%d", s ? "," : "", c->lens_k[s]);
        APPEND("]");
    } else {
        APPEND("B=%lld Sq=%lld Sk=%lld", (long long)c->batch, (long long)c->sq, (long long)c->sk);
    }
    APPEND(" H=%lld Hk=%lld D=%lld Dv=%lld %s causal=%s window=(%lld,%lld)", (long long)c->h,
           (long long)c->hk, (long long)c->d, (long long)(c->dv ? c->dv : c->d),
           th_dtype_name(c->dtype), causal_name(c->causal), (long long)c->wl, (long long)c->wr);
    if (c->softcap > 0) APPEND(" softcap=%g", c->softcap);
    if (c->scale > 0) APPEND(" scale=%g", c->scale);
    if (c->alibi) APPEND(" alibi=%s", c->alibi == TH_ALIBI_H ? "[H]" : "[B,H]");
    if (c->bias)
        APPEND(" bias=%s%s%s%s%s%s", c->bias == TH_BIAS_ADD ? "add-" : "bool",
               c->bias == TH_BIAS_ADD ? th_dtype_name(c->bias_dtype) : "",
               c->bias_flags & TH_BIAS_BCAST_B ? " bcast_b" : "",
               c->bias_flags & TH_BIAS_BCAST_H ? " bcast_h" : "",
               c->bias_flags & TH_BIAS_NEGINF ? " -inf" : "",
               c->bias_flags & TH_BIAS_DEAD_ROWS ? " dead-rows" : "");
    if (c->sinks) APPEND(" sinks");
    if (c->layout == TH_LAYOUT_PACKED_QKV) APPEND(" layout=packed-qkv");
    if (c->layout == TH_LAYOUT_HEAD_MAJOR) APPEND(" layout=head-major");
    if (c->layout == TH_LAYOUT_REVERSED) APPEND(" layout=reversed-tokens");
    if (c->o_pad) APPEND(" o_pad=%lld", (long long)c->o_pad);
    if (c->num_threads) APPEND(" threads=%d", c->num_threads);
    if (c->p_precision == TILEATTN_P_INPUT_DTYPE) APPEND(" p=input-dtype");
    if (c->q_gain > 0 && c->q_gain != 1) APPEND(" q_gain=%g", c->q_gain);
#undef APPEND
}

/* Fills a whole buffer with NaN of its dtype: an input element the library
 * should never read (padding) then poisons the output if it is read. */
static void fill_nan(void *buf, tileattn_dtype dtype, size_t elems) {
    for (size_t i = 0; i < elems; i++)
        th_store(buf, dtype, (int64_t)i, NAN);
}

/* Writes random values into the logical elements of a [nb, rows, heads,
 * dim] view; returns the largest row norm (L2) and max |value| seen. */
static void fill_view(th_rng *rng, void *buf, tileattn_dtype dtype, int64_t nb, int64_t rows,
                      int64_t heads, int64_t dim, const tileattn_tensor *t, double gain,
                      double *max_norm, double *max_abs) {
    *max_norm = 0.0;
    *max_abs = 0.0;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t s = 0; s < rows; s++)
            for (int64_t h = 0; h < heads; h++) {
                int64_t off = b * t->stride_b + s * t->stride_s + h * t->stride_h;
                double norm = 0.0;
                for (int64_t c = 0; c < dim; c++) {
                    th_store(buf, dtype, off + c, gain * th_rng_normal(rng));
                    double v = th_load(buf, dtype, off + c);
                    norm += v * v;
                    if (fabs(v) > *max_abs) *max_abs = fabs(v);
                }
                if (sqrt(norm) > *max_norm) *max_norm = sqrt(norm);
            }
}

/* Elements a view spans (its largest offset + 1). */
static size_t view_elems(int64_t nb, int64_t rows, int64_t heads, int64_t dim,
                         const tileattn_tensor *t) {
    return (size_t)((nb - 1) * t->stride_b + (rows - 1) * t->stride_s + (heads - 1) * t->stride_h +
                    dim);
}

static tileattn_tensor strides_for(th_layout layout, int64_t nb, int64_t rows, int64_t heads,
                                   int64_t dim) {
    (void)nb;
    tileattn_tensor t = {NULL, 0, 0, 0};
    if (layout == TH_LAYOUT_HEAD_MAJOR) {
        t.stride_s = dim + 3;
        t.stride_h = rows * t.stride_s + 5;
        t.stride_b = heads * t.stride_h + 7;
    } else {
        t.stride_h = dim;
        t.stride_s = heads * dim;
        t.stride_b = rows * heads * dim;
    }
    return t;
}

/* The same elements read with the token axis reversed: a negative stride. */
static void reverse_tokens(tileattn_tensor *t, int64_t rows, size_t es) {
    t->data = (const char *)t->data + (size_t)((rows - 1) * t->stride_s) * es;
    t->stride_s = -t->stride_s;
}

void th_problem_make(th_problem *p, const th_case *c, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->c = *c;
    th_rng rng;
    th_rng_seed(&rng, seed);
    tileattn_forward_args *a = &p->args;
    tileattn_forward_args_init(a);

    p->varlen = c->nseq > 0;
    p->dv = c->dv ? c->dv : c->d;
    int64_t nb = c->batch; /* batch entries along the B axis of the tensors */
    if (p->varlen) {
        if (c->bias) abort(); /* not a valid case */
        p->cu_q[0] = p->cu_k[0] = 0;
        p->max_keys = 0;
        for (int s = 0; s < c->nseq; s++) {
            p->cu_q[s + 1] = p->cu_q[s] + c->lens_q[s];
            p->cu_k[s + 1] = p->cu_k[s] + c->lens_k[s];
            if (c->lens_k[s] > p->max_keys) p->max_keys = c->lens_k[s];
        }
        p->rows_q = p->cu_q[c->nseq] > 0 ? p->cu_q[c->nseq] : 1;
        p->rows_k = p->cu_k[c->nseq] > 0 ? p->cu_k[c->nseq] : 1;
        p->total_q = p->cu_q[c->nseq];
        nb = 1;
        a->batch = c->nseq;
        a->cu_seqlens_q = p->cu_q;
        a->cu_seqlens_k = p->cu_k;
    } else {
        p->rows_q = c->sq;
        p->rows_k = c->sk;
        p->total_q = c->batch * c->sq;
        p->max_keys = c->sk;
        a->batch = c->batch;
        a->seqlen_q = c->sq;
        a->seqlen_k = c->sk;
    }
    a->heads_q = c->h;
    a->heads_kv = c->hk;
    a->head_dim = c->d;
    a->head_dim_v = c->dv;
    a->dtype = c->dtype;
    size_t es = tileattn_dtype_size(c->dtype);

    /* Inputs. */
    double q_gain = c->q_gain > 0 ? c->q_gain : 1.0;
    double q_norm, k_norm, v_norm, q_abs, k_abs;
    if (c->layout == TH_LAYOUT_PACKED_QKV) {
        if (p->rows_q != p->rows_k) abort(); /* not a valid case */
        int64_t row = c->h * c->d + c->hk * c->d + c->hk * p->dv;
        size_t elems = (size_t)(nb * p->rows_q * row);
        p->qbuf = th_alloc(elems * es);
        fill_nan(p->qbuf, c->dtype, elems);
        char *base = p->qbuf;
        a->q = (tileattn_tensor){base, p->rows_q * row, row, c->d};
        a->k = (tileattn_tensor){base + (size_t)(c->h * c->d) * es, p->rows_q * row, row, c->d};
        a->v = (tileattn_tensor){base + (size_t)((c->h + c->hk) * c->d) * es, p->rows_q * row, row,
                                 p->dv};
        fill_view(&rng, base, c->dtype, nb, p->rows_q, c->h, c->d, &a->q, q_gain, &q_norm, &q_abs);
        fill_view(&rng, base + (size_t)(c->h * c->d) * es, c->dtype, nb, p->rows_k, c->hk, c->d,
                  &a->k, 1.0, &k_norm, &k_abs);
        fill_view(&rng, base + (size_t)((c->h + c->hk) * c->d) * es, c->dtype, nb, p->rows_k, c->hk,
                  p->dv, &a->v, 1.0, &v_norm, &p->max_v);
    } else {
        tileattn_tensor tq = strides_for(c->layout, nb, p->rows_q, c->h, c->d);
        tileattn_tensor tk = strides_for(c->layout, nb, p->rows_k, c->hk, c->d);
        tileattn_tensor tv = strides_for(c->layout, nb, p->rows_k, c->hk, p->dv);
        size_t nq = view_elems(nb, p->rows_q, c->h, c->d, &tq);
        size_t nk = view_elems(nb, p->rows_k, c->hk, c->d, &tk);
        size_t nv = view_elems(nb, p->rows_k, c->hk, p->dv, &tv);
        p->qbuf = th_alloc(nq * es);
        p->kbuf = th_alloc(nk * es);
        p->vbuf = th_alloc(nv * es);
        fill_nan(p->qbuf, c->dtype, nq);
        fill_nan(p->kbuf, c->dtype, nk);
        fill_nan(p->vbuf, c->dtype, nv);
        fill_view(&rng, p->qbuf, c->dtype, nb, p->rows_q, c->h, c->d, &tq, q_gain, &q_norm, &q_abs);
        fill_view(&rng, p->kbuf, c->dtype, nb, p->rows_k, c->hk, c->d, &tk, 1.0, &k_norm, &k_abs);
        fill_view(&rng, p->vbuf, c->dtype, nb, p->rows_k, c->hk, p->dv, &tv, 1.0, &v_norm,
                  &p->max_v);
        tq.data = p->qbuf;
        tk.data = p->kbuf;
        tv.data = p->vbuf;
        a->q = tq;
        a->k = tk;
        a->v = tv;
        if (c->layout == TH_LAYOUT_REVERSED) {
            reverse_tokens(&a->q, p->rows_q, es);
            reverse_tokens(&a->k, p->rows_k, es);
            reverse_tokens(&a->v, p->rows_k, es);
        }
    }
    double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->d);
    p->qk_mag = scale * q_norm * k_norm;

    /* Output: O with optional padding after every head row, sequence and
     * batch entry; LSE followed by a guard. */
    int64_t o_sh = p->dv + c->o_pad;
    int64_t o_ss = c->h * o_sh + (c->o_pad ? 2 : 0);
    int64_t o_sb = p->rows_q * o_ss + (c->o_pad ? 1 : 0);
    size_t o_elems = (size_t)(nb * o_sb);
    p->o_bytes = o_elems * es;
    p->obuf = th_alloc(p->o_bytes);
    p->o_owned = th_alloc(o_elems);
    a->o = (tileattn_tensor_out){p->obuf, o_sb, o_ss, o_sh};
    for (int64_t b = 0; b < nb; b++)
        for (int64_t s = 0; s < p->rows_q; s++)
            for (int64_t h = 0; h < c->h; h++)
                memset(p->o_owned + b * o_sb + s * o_ss + h * o_sh, 1, (size_t)p->dv);
    if (p->varlen && p->total_q == 0) memset(p->o_owned, 0, o_elems);
    p->lse_elems = (size_t)(c->h * p->total_q);
    p->lse = th_alloc((p->lse_elems + 16) * sizeof(float));
    a->lse = p->lse;

    /* Options. */
    a->scale = c->scale;
    a->causal = c->causal;
    a->window_left = c->wl;
    a->window_right = c->wr;
    a->softcap = c->softcap;
    a->num_threads = c->num_threads;
    a->p_precision = c->p_precision;
    int64_t nbatch = p->varlen ? c->nseq : c->batch;
    if (c->alibi == TH_ALIBI_H) {
        p->alibi = th_alloc((size_t)c->h * sizeof(float));
        for (int64_t h = 0; h < c->h; h++)
            p->alibi[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)c->h);
        a->alibi_slopes = p->alibi;
    } else if (c->alibi == TH_ALIBI_BH) {
        int64_t stride = c->h + 1; /* padded rows: the stride is honoured */
        p->alibi = th_alloc((size_t)(nbatch * stride) * sizeof(float));
        for (int64_t i = 0; i < nbatch * stride; i++)
            p->alibi[i] = i % stride == c->h ? NAN : (float)th_rng_range(&rng, 0.005, 0.3);
        a->alibi_slopes = p->alibi;
        a->alibi_stride_b = stride;
    }
    if (c->sinks) {
        p->sinks = th_alloc((size_t)c->h * sizeof(float));
        double base = 0.7 * log((double)(p->max_keys > 1 ? p->max_keys : 1));
        for (int64_t h = 0; h < c->h; h++)
            p->sinks[h] = (float)(base + th_rng_range(&rng, -1.0, 1.0));
        a->sinks = p->sinks;
    }
    if (c->bias) {
        int64_t bb = c->bias_flags & TH_BIAS_BCAST_B ? 1 : c->batch;
        int64_t hb = c->bias_flags & TH_BIAS_BCAST_H ? 1 : c->h;
        int64_t sq_stride = c->sk + c->sk % 3;
        int64_t sh = c->bias_flags & TH_BIAS_BCAST_H ? 0 : c->sq * sq_stride;
        int64_t sb = c->bias_flags & TH_BIAS_BCAST_B ? 0 : hb * c->sq * sq_stride;
        size_t elems = (size_t)(bb * hb * c->sq * sq_stride);
        a->bias_stride_b = sb;
        a->bias_stride_h = sh;
        a->bias_stride_q = sq_stride;
        a->bias_kind = c->bias == TH_BIAS_ADD ? TILEATTN_BIAS_ADDITIVE : TILEATTN_BIAS_BOOL_MASK;
        if (c->bias == TH_BIAS_ADD) {
            a->bias_dtype = c->bias_dtype;
            p->bias = th_alloc(elems * tileattn_dtype_size(c->bias_dtype));
            fill_nan(p->bias, c->bias_dtype, elems);
        } else {
            p->bias = th_alloc(elems);
            memset(p->bias, 0x5a, elems); /* padding: "seen", never read */
        }
        for (int64_t b = 0; b < bb; b++)
            for (int64_t h = 0; h < hb; h++)
                for (int64_t i = 0; i < c->sq; i++) {
                    int dead = (c->bias_flags & TH_BIAS_DEAD_ROWS) && i % 7 == 3;
                    int64_t row = (b * hb + h) * c->sq * sq_stride + i * sq_stride;
                    for (int64_t j = 0; j < c->sk; j++) {
                        if (c->bias == TH_BIAS_ADD) {
                            double v = th_rng_normal(&rng);
                            if (dead ||
                                ((c->bias_flags & TH_BIAS_NEGINF) && th_rng_uniform(&rng) < 0.1))
                                v = -INFINITY;
                            th_store(p->bias, c->bias_dtype, row + j, v);
                            double back = th_load(p->bias, c->bias_dtype, row + j);
                            if (isfinite(back) && fabs(back) > p->bias_mag)
                                p->bias_mag = fabs(back);
                        } else {
                            unsigned char v = th_rng_uniform(&rng) < 0.75
                                                  ? (unsigned char)th_rng_int(&rng, 1, 255)
                                                  : 0;
                            ((unsigned char *)p->bias)[row + j] = dead ? 0 : v;
                        }
                    }
                }
        a->bias = p->bias;
    }
}

void th_problem_free(th_problem *p) {
    th_free(p->qbuf);
    th_free(p->kbuf);
    th_free(p->vbuf);
    th_free(p->obuf);
    th_free(p->o_owned);
    th_free(p->lse);
    th_free(p->alibi);
    th_free(p->sinks);
    th_free(p->bias);
    memset(p, 0, sizeof *p);
}

tileattn_status th_problem_forward(th_problem *p) {
    memset(p->obuf, SENTINEL, p->o_bytes);
    memset(p->lse, SENTINEL, (p->lse_elems + 16) * sizeof(float));
    return tileattn_forward(&p->args);
}

tileattn_status th_problem_reference(const th_problem *p, const tileattn_forward_args *args,
                                     double **o, double **lse) {
    size_t rows = (size_t)(p->total_q * p->c.h);
    *o = th_alloc((rows ? rows : 1) * (size_t)p->dv * sizeof(double));
    *lse = th_alloc((rows ? rows : 1) * sizeof(double));
    return tileattn_reference_forward(args ? args : &p->args, *o, *lse);
}

__attribute__((format(printf, 2, 3))) static void note_failure(th_check *out, const char *fmt,
                                                               ...) {
    if (out->bad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out->first, sizeof out->first, fmt, ap);
        va_end(ap);
    }
}

void th_problem_check(const th_problem *p, const double *o_ref, const double *lse_ref,
                      th_check *out) {
    memset(out, 0, sizeof *out);
    const th_case *c = &p->c;
    const tileattn_forward_args *a = &p->args;
    const double u = 0x1.0p-24, u_out = th_unit_roundoff(c->dtype);
    const double sub_out = c->dtype == TILEATTN_F16 ? 0x1.0p-25 : 0.0; /* half a subnormal step */
    const double p_round = c->p_precision == TILEATTN_P_INPUT_DTYPE ? u_out : 0.0;
    int64_t nseq = p->varlen ? c->nseq : c->batch;
    int64_t dv = p->dv;

    for (int64_t b = 0; b < nseq; b++) {
        int64_t len_q = p->varlen ? c->lens_q[b] : c->sq;
        int64_t len_k = p->varlen ? c->lens_k[b] : c->sk;
        for (int64_t i = 0; i < len_q; i++)
            for (int64_t h = 0; h < c->h; h++) {
                int64_t token = p->varlen ? p->cu_q[b] + i : i;
                int64_t ref_row = p->varlen ? token : b * c->sq + i;
                const double *r = o_ref + (ref_row * c->h + h) * dv;
                int64_t o_off =
                    (p->varlen ? 0 : b * a->o.stride_b) + token * a->o.stride_s + h * a->o.stride_h;
                int64_t l_idx = p->varlen ? h * p->total_q + token : (b * c->h + h) * c->sq + i;
                double lr = lse_ref[l_idx], lg = p->lse[l_idx];
                out->rows++;

                int ref_zero = 1;
                for (int64_t cc = 0; cc < dv; cc++)
                    if (r[cc] != 0.0) ref_zero = 0;
                if (ref_zero) { /* no key seen: O = 0 exactly; LSE -inf or the sink */
                    out->dead_rows++;
                    for (int64_t cc = 0; cc < dv; cc++) {
                        double g = th_load(a->o.data, c->dtype, o_off + cc);
                        if (g != 0.0)
                            note_failure(out,
                                         "O[b=%lld i=%lld h=%lld c=%lld] = %.9g, want exactly 0 "
                                         "(the row sees no key)",
                                         (long long)b, (long long)i, (long long)h, (long long)cc,
                                         g);
                    }
                }
                if (lr == -INFINITY) {
                    if (!(lg == -INFINITY))
                        note_failure(out,
                                     "LSE[b=%lld i=%lld h=%lld] = %.9g, want exactly -inf "
                                     "(the row sees no key)",
                                     (long long)b, (long long)i, (long long)h, lg);
                    continue;
                }

                double mag = fabs(lr) + 2.0 * p->qk_mag + 2.0 * p->bias_mag;
                double acc = u * TH_TOL_C * (sqrt((double)len_k) + mag + 30.0);
                double err = fabs(lg - lr);
                if (!(err <= acc))
                    note_failure(out, "LSE[b=%lld i=%lld h=%lld] = %.9g, want %.9g (tol %.3g)",
                                 (long long)b, (long long)i, (long long)h, lg, lr, acc);
                else if (err / acc > out->worst)
                    out->worst = err / acc;
                if (ref_zero) continue;
                for (int64_t cc = 0; cc < dv; cc++) {
                    double g = th_load(a->o.data, c->dtype, o_off + cc);
                    double tol = p->max_v * (acc + p_round) +
                                 u_out * (fabs(r[cc]) + p->max_v * acc) + sub_out;
                    double e = fabs(g - r[cc]);
                    if (!(e <= tol))
                        note_failure(
                            out, "O[b=%lld i=%lld h=%lld c=%lld] = %.9g, want %.9g (tol %.3g)",
                            (long long)b, (long long)i, (long long)h, (long long)cc, g, r[cc], tol);
                    else if (e / tol > out->worst)
                        out->worst = e / tol;
                }
            }
    }

    /* Nothing outside the logical O may change, nor past the end of LSE. */
    size_t es = tileattn_dtype_size(c->dtype);
    const unsigned char *bytes = p->obuf;
    for (size_t e = 0; e < p->o_bytes / es; e++)
        if (!p->o_owned[e])
            for (size_t k = 0; k < es; k++)
                if (bytes[e * es + k] != SENTINEL) {
                    note_failure(out, "O padding element %zu (outside the tensor) was written", e);
                    break;
                }
    const unsigned char *guard = (const unsigned char *)(p->lse + p->lse_elems);
    for (size_t k = 0; k < 16 * sizeof(float); k++)
        if (guard[k] != SENTINEL) {
            note_failure(out, "a byte past the end of LSE was written");
            break;
        }
}

int th_run_case(const th_case *c, uint64_t seed, double *worst, int64_t *dead) {
    char desc[512];
    th_problem p;
    th_problem_make(&p, c, seed);
    int failed = 0;
    tileattn_status st = th_problem_forward(&p);
    double *o_ref = NULL, *lse_ref = NULL;
    tileattn_status rst = th_problem_reference(&p, NULL, &o_ref, &lse_ref);
    if (st != TILEATTN_OK || rst != TILEATTN_OK) {
        th_case_str(c, desc, sizeof desc);
        fprintf(stderr, "FAIL [%s]: tileattn_forward -> %s, reference -> %s\n", desc,
                tileattn_status_string(st), tileattn_status_string(rst));
        failed = 1;
    } else {
        th_check chk;
        th_problem_check(&p, o_ref, lse_ref, &chk);
        if (chk.bad) {
            th_case_str(c, desc, sizeof desc);
            fprintf(stderr, "FAIL [%s] seed %llu: %lld bad values of %lld rows; first: %s\n", desc,
                    (unsigned long long)seed, (long long)chk.bad, (long long)chk.rows, chk.first);
            failed = 1;
        }
        if (!chk.bad && getenv("TILEATTN_TEST_VERBOSE")) {
            th_case_str(c, desc, sizeof desc);
            fprintf(stderr, "ok [%s] seed %llu: worst err/tol %.3f\n", desc,
                    (unsigned long long)seed, chk.worst);
        }
        if (worst && chk.worst > *worst) *worst = chk.worst;
        if (dead) *dead += chk.dead_rows;
    }
    th_free(o_ref);
    th_free(lse_ref);
    th_problem_free(&p);
    return failed;
}
