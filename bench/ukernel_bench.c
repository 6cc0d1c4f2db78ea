/*
 * tileattn bench --ukernels: see ukernel_bench.h.
 *
 * Every step is timed on the same buffers over and over, so its operands
 * stay in L1/L2: this is each kernel's ceiling, not what the forward gets
 * (the forward streams K/V panels from L2 and moves on after one use).
 */
#define _POSIX_C_SOURCE 200809L
#include "ukernel_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "desc.h"
#include "dispatch.h"
#include "ukernel.h"

enum { MAX_TABLES = 8, TARGET_SAMPLE_NS = 2000000 };

typedef struct ukb_flags {
    int64_t head_dim, rows, keys;
    int repeats;
} ukb_flags;

static const char *const prog = "tileattn bench --ukernels";

static int parse_flags(int argc, char **argv, ukb_flags *f) {
    *f = (ukb_flags){128, 0, 0, 9};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--ukernels") == 0) continue; /* when called from `tileattn bench` */
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: unknown or incomplete flag %s\n", prog, flag);
            return -1;
        }
        const char *val = argv[++i];
        int64_t v = 0;
        if (strcmp(flag, "--head-dim") == 0) {
            if (bench_parse_int(prog, flag, val, 1, TILEATTN_MAX_HEAD_DIM, &f->head_dim)) return -1;
        } else if (strcmp(flag, "--rows") == 0) {
            if (bench_parse_int(prog, flag, val, 1, 1024, &f->rows)) return -1;
        } else if (strcmp(flag, "--keys") == 0) {
            if (bench_parse_int(prog, flag, val, 1, 4096, &f->keys)) return -1;
        } else if (strcmp(flag, "--repeats") == 0) {
            if (bench_parse_int(prog, flag, val, 1, BENCH_MAX_REPEATS, &v)) return -1;
            f->repeats = (int)v;
        } else {
            fprintf(stderr, "%s: unknown flag %s\n", prog, flag);
            return -1;
        }
    }
    return 0;
}

/* The planner's sub-tile for a one-thread float32 forward of Sq = Sk = 2048. */
static int planner_tile(int64_t head_dim, int64_t *rows, int64_t *keys) {
    tileattn_forward_args a;
    tileattn_forward_args_init(&a);
    a.batch = 1, a.seqlen_q = a.seqlen_k = 2048, a.heads_q = a.heads_kv = 1;
    a.head_dim = a.head_dim_v = head_dim;
    a.dtype = TILEATTN_F32;
    a.num_threads = 1;
    /* A plan depends on shapes only; the data is never touched. */
    static float stand_in[1], o_stand_in[1]; /* O may not start where an input does */
    int64_t row = head_dim, seq = 2048 * head_dim;
    a.q = a.k = a.v = (tileattn_tensor){stand_in, seq, row, row};
    a.o = (tileattn_tensor_out){o_stand_in, seq, row, row};
    ta_desc d;
    if (ta_plan(&a, &d) != TILEATTN_OK) return -1;
    *rows = d.block_r, *keys = d.block_k;
    return 0;
}

/* One table's buffers: Q rows as load_rows writes them, the packed panels,
 * S (and a copy of the scores, to restore before each softmax), O. */
typedef struct ukb_case {
    const ta_ukernels *uk;
    tileattn_dtype dtype;
    int64_t m, n, d, inner;
    const void *k_src, *v_src, *q_src;
    float *q, *k_panel, *v_panel, *s, *scores, *o, *row_max, *row_sum;
} ukb_case;

typedef enum { STEP_PACK, STEP_QK, STEP_COPY, STEP_COPY_SOFTMAX, STEP_PV } ukb_step;

typedef struct ukb_run {
    ukb_case *c;
    ukb_step step;
} ukb_run;

static int run_step(void *ctx) {
    const ukb_run *r = ctx;
    ukb_case *c = r->c;
    const ta_ukernels *uk = c->uk;
    size_t s_bytes = (size_t)(c->m * c->n) * sizeof(float);
    for (int64_t it = 0; it < c->inner; it++) {
        switch (r->step) {
        case STEP_PACK:
            uk->pack_k(c->n, c->d, c->k_src, c->dtype, c->d, c->k_panel);
            uk->pack_v(c->n, c->d, c->v_src, c->dtype, c->d, c->v_panel);
            break;
        case STEP_QK:
            uk->qk(c->m, c->n, c->d, c->q, c->d, c->k_panel, 1.0f / sqrtf((float)c->d), c->s, c->n);
            break;
        case STEP_COPY: memcpy(c->s, c->scores, s_bytes); break;
        case STEP_COPY_SOFTMAX:
            /* The same scores each time: after the first call the row max
             * has settled, the steady state of a long row (O is not
             * rescaled, the cost is the max pass and the exp). */
            memcpy(c->s, c->scores, s_bytes);
            uk->softmax(c->m, c->n, c->s, c->n, c->row_max, c->row_sum, c->o, c->d, c->d);
            break;
        case STEP_PV: uk->pv(c->m, c->n, c->d, c->s, c->n, c->v_panel, c->o, c->d); break;
        }
    }
    return 0;
}

/* Median seconds of one call of step (inner calls per sample). */
static double time_step(ukb_case *c, ukb_step step, int repeats) {
    ukb_run r = {c, step};
    bench_timing t;
    if (bench_time_median(run_step, &r, 1, repeats, &t)) return NAN;
    return t.median_s / (double)c->inner;
}

/* Calls per sample so that one sample takes about TARGET_SAMPLE_NS. */
static int64_t calls_per_sample(ukb_case *c) {
    c->inner = 1;
    ukb_run r = {c, STEP_QK};
    double t0 = bench_now_seconds();
    run_step(&r);
    double one = bench_now_seconds() - t0;
    int64_t inner = one > 0 ? (int64_t)(TARGET_SAMPLE_NS * 1e-9 / one) : 1000;
    return inner < 1 ? 1 : inner > 100000 ? 100000 : inner;
}

static void *alloc_floats(int64_t count) {
    size_t bytes = ((size_t)count * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes > 0 ? bytes : 64);
}

/* count N(0, 1) elements of dtype (fixed seed). */
static void *random_rows(int64_t count, tileattn_dtype dtype, uint64_t seed) {
    void *out = alloc_floats(count); /* big enough for any input dtype */
    if (out) bench_fill_normal(out, dtype, (size_t)count, 1.0, &seed);
    return out;
}

static void free_case(ukb_case *c) {
    free((void *)c->k_src), free((void *)c->v_src), free((void *)c->q_src);
    free(c->q), free(c->k_panel), free(c->v_panel), free(c->s), free(c->scores), free(c->o);
    free(c->row_max), free(c->row_sum);
}

static int setup_case(ukb_case *c, const ta_ukernels *uk, int64_t m, int64_t n, int64_t d) {
    *c = (ukb_case){.uk = uk, .m = m, .n = n, .d = d};
    c->dtype = (uk->dtypes & TA_DTYPE_BIT(TILEATTN_F32))    ? TILEATTN_F32
               : (uk->dtypes & TA_DTYPE_BIT(TILEATTN_BF16)) ? TILEATTN_BF16
                                                            : TILEATTN_F16;
    c->k_src = random_rows(n * d, c->dtype, 1);
    c->v_src = random_rows(n * d, c->dtype, 2);
    c->q_src = random_rows(m * d, c->dtype, 3);
    c->q = alloc_floats(m * d);
    c->k_panel = alloc_floats(uk->packed_k_floats(n, d));
    c->v_panel = alloc_floats(uk->packed_v_floats(n, d));
    c->s = alloc_floats(m * n);
    c->scores = alloc_floats(m * n);
    c->o = alloc_floats(m * d);
    c->row_max = alloc_floats(m);
    c->row_sum = alloc_floats(m);
    if (!c->k_src || !c->v_src || !c->q_src || !c->q || !c->k_panel || !c->v_panel || !c->s ||
        !c->scores || !c->o || !c->row_max || !c->row_sum)
        return -1;
    uk->load_rows(m, d, c->q_src, c->dtype, d, c->q, d);
    uk->pack_k(n, d, c->k_src, c->dtype, d, c->k_panel);
    uk->pack_v(n, d, c->v_src, c->dtype, d, c->v_panel);
    uk->qk(m, n, d, c->q, d, c->k_panel, 1.0f / sqrtf((float)d), c->scores, n);
    memset(c->o, 0, (size_t)(m * d) * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        c->row_max[i] = -INFINITY, c->row_sum[i] = 0.0f;
    c->inner = calls_per_sample(c);
    return 0;
}

int ta_bench_ukernels(int argc, char **argv) {
    ukb_flags f;
    if (parse_flags(argc, argv, &f)) return 2;
    int64_t rows = 0, keys = 0;
    if (planner_tile(f.head_dim, &rows, &keys)) {
        fprintf(stderr, "%s: the planner refused head dim %lld\n", prog, (long long)f.head_dim);
        return 2;
    }
    const char *tile_from = "the planner's for Sq = Sk = 2048, one thread";
    if (f.rows > 0 || f.keys > 0) tile_from = "given";
    if (f.rows > 0) rows = f.rows;
    if (f.keys > 0) keys = f.keys;
    int64_t d = f.head_dim;

    double peak = bench_fma_peak_gflops(1, 5, NULL);
    printf("microkernels alone: one thread, D = Dv = %lld, operands in cache\n"
           "tile: %lld rows x %lld keys (%s)%s\n"
           "median of %d samples of about %d ms each\n",
           (long long)d, (long long)rows, (long long)keys, tile_from,
           f.rows > 0 ? ""
                      : ",\n      rows rounded up to a multiple of each table's register block",
           f.repeats, TARGET_SAMPLE_NS / 1000000);
    printf("FMA peak %.1f GFLOP/s (%s, one thread, the same run)\n\n", peak, bench_fma_isa());
    printf("%-11s %-5s %-4s %4s %10s %11s %7s %11s %7s %13s %8s\n", "table", "input", "P", "rows",
           "pack GB/s", "qk GFLOP/s", "x peak", "pv GFLOP/s", "x peak", "softmax ns/S", "share");

    /* Every table, each followed by its twin with P in bfloat16 where it
     * has one (what p_precision = TILEATTN_P_INPUT_DTYPE runs). */
    const ta_ukernels *listed[MAX_TABLES], *tables[2 * MAX_TABLES];
    int listed_count = ta_ukernels_all(listed, MAX_TABLES), count = 0;
    for (int t = 0; t < listed_count; t++) {
        tables[count++] = listed[t];
        if (listed[t]->with_p_bf16) tables[count++] = listed[t]->with_p_bf16;
    }
    for (int t = 0; t < count; t++) {
        /* A 12-row tile on a table of 32-row blocks would time its edge
         * path (zero-padded copies), not its kernels. */
        int64_t m = f.rows > 0 ? rows : (rows + tables[t]->mr - 1) / tables[t]->mr * tables[t]->mr;
        double flops = 2.0 * (double)m * (double)keys * (double)d;
        ukb_case c;
        if (setup_case(&c, tables[t], m, keys, d)) {
            free_case(&c);
            fprintf(stderr, "%s: out of memory\n", prog);
            return 2;
        }
        double t_pack = time_step(&c, STEP_PACK, f.repeats);
        double t_qk = time_step(&c, STEP_QK, f.repeats);
        double t_copy = time_step(&c, STEP_COPY, f.repeats);
        double t_softmax = time_step(&c, STEP_COPY_SOFTMAX, f.repeats) - t_copy;
        if (t_softmax < 0) t_softmax = 0; /* the copy's noise exceeded the softmax */
        /* S holds the softmax's P now, in the layout this table's pv reads. */
        double t_pv = time_step(&c, STEP_PV, f.repeats);
        double in_bytes = 2.0 * (double)(keys * d) * (double)tileattn_dtype_size(c.dtype);
        printf("%-11s %-5s %-4s %4lld %10.1f %11.1f %7.2f %11.1f %7.2f %13.3f %7.0f%%\n",
               tables[t]->isa,
               c.dtype == TILEATTN_F32    ? "f32"
               : c.dtype == TILEATTN_BF16 ? "bf16"
                                          : "f16",
               tables[t]->p_bf16 ? "bf16" : "f32", (long long)m, in_bytes / t_pack / 1e9,
               flops / t_qk / 1e9, flops / t_qk / 1e9 / peak, flops / t_pv / 1e9,
               flops / t_pv / 1e9 / peak, t_softmax / (double)(m * keys) * 1e9,
               100.0 * t_softmax / (t_qk + t_softmax + t_pv));
        free_case(&c);
    }
    printf("\nP: the precision of P in P.V (bf16: the table's twin, run when the caller\n"
           "allows P in the input dtype: its softmax rounds P, its pack_v packs V as key\n"
           "pairs). pack: K and V of one block (input bytes read per second). x peak: of\n"
           "the FMA peak above (16-bit tables may exceed it). softmax: the online update\n"
           "per score once the row max has settled (no rescale of O); share: its part of\n"
           "qk + softmax + pv.\n");
    return 0;
}
