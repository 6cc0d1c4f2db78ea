/*
 * Decoding is memory-bound: each K/V byte of the cache is read once and used
 * for 2 x (heads per KV head) FLOPs. The fair ceiling is therefore what the
 * machine's memory delivers to a plain vectorized read, measured here in the
 * same process, on the same threads, right before and after the decode runs
 * (the machine is shared and noisy: medians of repeats, and the read
 * bandwidth is the mean of the two medians around the decode runs).
 */
#define _POSIX_C_SOURCE 200809L
#include "decode_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tileattn.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

/* ------------------------------------------------------ read bandwidth */

#if HAVE_X86
/* Eight independent accumulators: enough loads in flight to saturate the
 * memory system from one core (the adds are not the bottleneck). */
__attribute__((target("avx512f"))) static float sum_avx512(const float *x, size_t n) {
    __m512 acc[8];
    for (int k = 0; k < 8; k++)
        acc[k] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 128 <= n; i += 128)
        for (int k = 0; k < 8; k++)
            acc[k] = _mm512_add_ps(acc[k], _mm512_loadu_ps(x + i + 16 * k));
    for (int k = 1; k < 8; k++)
        acc[0] = _mm512_add_ps(acc[0], acc[k]);
    float s = _mm512_reduce_add_ps(acc[0]);
    for (; i < n; i++)
        s += x[i];
    return s;
}

__attribute__((target("avx2"))) static float sum_avx2(const float *x, size_t n) {
    __m256 acc[8];
    for (int k = 0; k < 8; k++)
        acc[k] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int k = 0; k < 8; k++)
            acc[k] = _mm256_add_ps(acc[k], _mm256_loadu_ps(x + i + 8 * k));
    for (int k = 1; k < 8; k++)
        acc[0] = _mm256_add_ps(acc[0], acc[k]);
    float lanes[8], s = 0.0f;
    _mm256_storeu_ps(lanes, acc[0]);
    for (int k = 0; k < 8; k++)
        s += lanes[k];
    for (; i < n; i++)
        s += x[i];
    return s;
}
#endif

static float sum_portable(const float *x, size_t n) {
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += x[i + k];
    float s = 0.0f;
    for (int k = 0; k < 8; k++)
        s += acc[k];
    for (; i < n; i++)
        s += x[i];
    return s;
}

static float (*choose_sum(void))(const float *, size_t) {
#if HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return sum_avx512;
    if (__builtin_cpu_supports("avx2")) return sum_avx2;
#endif
    return sum_portable;
}

typedef struct stream_ctx {
    const float *x;
    size_t n;
    int threads;
    float (*sum)(const float *, size_t);
    volatile float sink;
} stream_ctx;

static int run_stream(void *p) {
    stream_ctx *c = p;
    float total = 0.0f;
#if defined(_OPENMP)
#pragma omp parallel num_threads(c->threads) reduction(+ : total)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t chunk = (c->n / (size_t)nt + 15) / 16 * 16;
        size_t lo = chunk * (size_t)t < c->n ? chunk * (size_t)t : c->n;
        size_t hi = lo + chunk < c->n ? lo + chunk : c->n;
        total += c->sum(c->x + lo, hi - lo);
    }
#else
    total = c->sum(c->x, c->n);
#endif
    c->sink = total;
    return 0;
}

/* ------------------------------------------------------------ decoding */

typedef struct decode_ctx {
    tileattn_decode_args args;
} decode_ctx;

static int run_decode(void *p) {
    decode_ctx *c = p;
    return tileattn_decode(&c->args) == TILEATTN_OK ? 0 : 1;
}

typedef struct config {
    tileattn_cache_dtype dtype;
    int64_t block_size; /* 0 = contiguous */
} config;

static const char *dtype_name(tileattn_cache_dtype t) {
    return t == TILEATTN_CACHE_BF16 ? "bf16" : t == TILEATTN_CACHE_F16 ? "f16" : "f32";
}

static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct problem {
    int64_t batch, seqlen, heads, heads_kv, head_dim;
    int64_t window;  /* a sliding window of this many tokens (0 = none) */
    int heads_outer; /* the cache is [.., Hk, S, D] (PyTorch's) instead of [.., S, Hk, D] */
    void *k, *v;     /* the cache, sized as [S, Hk, D] of the largest dtype; paged: the pool */
    float *q, *o;
    int32_t *table, *cache_seqlens; /* table: [batch][seqlen / block size] */
} problem;

/* A cache tensor of `tokens` slots per sequence (or block): [.., S, Hk, D],
 * or [.., Hk, S, D] with heads_outer. */
static tileattn_tensor_out cache_tensor(const problem *p, void *data, int64_t tokens) {
    int64_t d = p->head_dim, hk = p->heads_kv;
    if (p->heads_outer) return (tileattn_tensor_out){data, hk * tokens * d, d, tokens * d};
    return tileattn_tensor_out_contiguous(data, tokens, hk, d);
}

static void fill_args(const problem *p, const config *cfg, int threads, tileattn_decode_args *a) {
    tileattn_decode_args_init(a);
    a->batch = p->batch, a->seqlen_new = 1, a->heads_q = p->heads, a->heads_kv = p->heads_kv;
    a->head_dim = p->head_dim, a->dtype = TILEATTN_F32, a->cache_dtype = cfg->dtype;
    a->q = tileattn_tensor_contiguous(p->q, 1, p->heads, p->head_dim);
    a->o = tileattn_tensor_out_contiguous(p->o, 1, p->heads, p->head_dim);
    a->cache_seqlens = p->cache_seqlens;
    if (cfg->block_size) {
        int64_t bs = cfg->block_size, blocks = p->seqlen / bs;
        a->k_cache = cache_tensor(p, p->k, bs);
        a->v_cache = cache_tensor(p, p->v, bs);
        a->block_table = p->table, a->block_size = bs;
        a->num_blocks = p->batch * blocks, a->max_blocks_per_seq = blocks;
    } else {
        a->k_cache = cache_tensor(p, p->k, p->seqlen);
        a->v_cache = cache_tensor(p, p->v, p->seqlen);
        a->max_seqlen_cache = p->seqlen;
    }
    if (p->window) a->causal = 1, a->window_left = p->window - 1; /* the last `window` keys */
    a->num_threads = threads;
}

/* A shuffled block table: physical order unrelated to logical order, as a
 * long-running server's pool ends up. */
static void shuffle_table(int32_t *table, int64_t blocks, uint64_t seed) {
    for (int64_t i = 0; i < blocks; i++)
        table[i] = (int32_t)i;
    for (int64_t i = blocks - 1; i > 0; i--) {
        int64_t j = (int64_t)(next_random(&seed) % (uint64_t)(i + 1));
        int32_t t = table[i];
        table[i] = table[j], table[j] = t;
    }
}

static int parse_flag(int argc, char **argv, int *i, const char *flag, int64_t min, int64_t max,
                      int64_t *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "tileattn bench --decode: %s needs a value\n", flag);
        return -1;
    }
    if (bench_parse_int("tileattn bench --decode", flag, argv[*i + 1], min, max, value)) return -1;
    *i += 2;
    return 1;
}

/* The largest cache sysfs lists for CPU 0 (the last level, shared), or 0
 * when it cannot be read: only to warn that the cache may fit in it. */
static size_t last_level_cache_bytes(void) {
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        unsigned long long n = 0;
        char unit = 0;
        if (fscanf(f, "%llu%c", &n, &unit) >= 1) {
            if (unit == 'K')
                n <<= 10;
            else if (unit == 'M')
                n <<= 20;
            if (n > best) best = (size_t)n;
        }
        fclose(f);
    }
    return best;
}

int ta_bench_decode(int argc, char **argv) {
    int64_t batch = 1, seqlen = 32768, heads = 32, heads_kv = 8, head_dim = 128, repeats = 15,
            stream_mib = 1024, window = 0;
    int heads_outer = 0;
    for (int i = 1; i < argc;) {
        int r = 0;
        if (strcmp(argv[i], "--decode") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "--layout") == 0) {
            const char *layout = i + 1 < argc ? argv[i + 1] : "";
            if (strcmp(layout, "bshd") != 0 && strcmp(layout, "bhsd") != 0) {
                fprintf(stderr, "tileattn bench --decode: --layout takes bshd or bhsd\n");
                return 2;
            }
            heads_outer = strcmp(layout, "bhsd") == 0;
            i += 2;
            continue;
        }
        if (!r) r = parse_flag(argc, argv, &i, "--batch", 1, 1024, &batch);
        if (!r) r = parse_flag(argc, argv, &i, "--seqlen", 256, 1 << 24, &seqlen);
        if (!r) r = parse_flag(argc, argv, &i, "--heads", 1, 1024, &heads);
        if (!r) r = parse_flag(argc, argv, &i, "--heads-kv", 1, 1024, &heads_kv);
        if (!r) r = parse_flag(argc, argv, &i, "--head-dim", 1, TILEATTN_MAX_HEAD_DIM, &head_dim);
        if (!r) r = parse_flag(argc, argv, &i, "--repeats", 1, BENCH_MAX_REPEATS, &repeats);
        if (!r) r = parse_flag(argc, argv, &i, "--stream-mib", 64, 1 << 16, &stream_mib);
        if (!r) r = parse_flag(argc, argv, &i, "--window", 0, 1 << 24, &window);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "tileattn bench --decode: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (heads % heads_kv != 0 || seqlen % 256 != 0) {
        fprintf(stderr, "tileattn bench --decode: heads %% heads-kv and seqlen %% 256 must be 0\n");
        return 2;
    }
    if (window > seqlen) {
        fprintf(stderr, "tileattn bench --decode: --window must be at most --seqlen\n");
        return 2;
    }
    /* The keys each query sees, whose K and V rows are what a call reads. */
    int64_t keys_read = window ? window : seqlen;

    problem p = {batch, seqlen, heads, heads_kv, head_dim, window, heads_outer,
                 NULL,  NULL,   NULL,  NULL,     NULL,     NULL};
    size_t cache_bytes = (size_t)(batch * seqlen * heads_kv * head_dim) * sizeof(float);
    size_t stream_n = (size_t)stream_mib * 1024 * 1024 / sizeof(float);
    float *stream = aligned_alloc(64, stream_n * sizeof(float));
    p.k = aligned_alloc(64, cache_bytes), p.v = aligned_alloc(64, cache_bytes);
    p.q = aligned_alloc(64, (size_t)(batch * heads * head_dim) * sizeof(float));
    p.o = aligned_alloc(64, (size_t)(batch * heads * head_dim) * sizeof(float));
    p.table = malloc((size_t)(batch * seqlen) * sizeof(int32_t));
    p.cache_seqlens = malloc((size_t)batch * sizeof(int32_t));
    if (!stream || !p.k || !p.v || !p.q || !p.o || !p.table || !p.cache_seqlens) {
        fprintf(stderr, "tileattn bench --decode: out of memory\n");
        free(stream), free(p.k), free(p.v), free(p.q), free(p.o), free(p.table);
        free(p.cache_seqlens);
        return 2;
    }
    for (int64_t b = 0; b < batch; b++)
        p.cache_seqlens[b] = (int32_t)seqlen;
    /* Values do not change the speed; small numbers keep every dtype finite
     * (0x3c00 is 1.0 in f16 and 1/128 as bf16 twice; as f32, ~0.0078). */
    memset(p.k, 0x3c, cache_bytes), memset(p.v, 0x3c, cache_bytes);
    for (size_t i = 0; i < stream_n; i++)
        stream[i] = 1.0f;
    uint64_t seed = 42;
    for (int64_t i = 0; i < batch * heads * head_dim; i++)
        p.q[i] = (float)((double)(next_random(&seed) >> 11) * 0x1.0p-53 - 0.5);

    int threads_all = bench_max_threads();
    int thread_counts[2] = {1, threads_all};
    int n_thread_counts = threads_all > 1 ? 2 : 1;
    config configs[6] = {
        {TILEATTN_CACHE_BF16, 0}, {TILEATTN_CACHE_BF16, 16}, {TILEATTN_CACHE_BF16, 128},
        {TILEATTN_CACHE_F32, 0},  {TILEATTN_CACHE_F32, 16},  {TILEATTN_CACHE_F32, 128},
    };
    stream_ctx sc = {stream, stream_n, 1, choose_sum(), 0.0f};
    int rc = 0;

    printf("decode bandwidth: B=%lld, Sq_new=1, H=%lld, Hk=%lld, D=Dv=%lld, cache %lld tokens "
           "laid out %s",
           (long long)batch, (long long)heads, (long long)heads_kv, (long long)head_dim,
           (long long)seqlen, heads_outer ? "[.., Hk, S, D]" : "[.., S, Hk, D]");
    if (window)
        printf(", sliding window of the last %lld (GB/s count those keys)", (long long)window);
    printf("; isa %s; median of %lld\n", tileattn_isa_name(), (long long)repeats);
    /* A cache that fits in the LLC is read from it, not from memory: the
     * ratio to the read bandwidth then overstates (bf16 is the smaller). */
    size_t llc = last_level_cache_bytes();
    size_t read_bytes = cache_bytes / (size_t)seqlen * (size_t)keys_read; /* bf16 K and V seen */
    if (llc && read_bytes < 3 * llc)
        printf("note: the bf16 K and V a call reads (%.0f MiB) are under 3x the %.0f MiB "
               "last-level cache; raise --batch or --seqlen to measure memory\n",
               (double)read_bytes / (1 << 20), (double)llc / (1 << 20));
    printf("read bandwidth: vectorized sum over %lld MiB\n", (long long)stream_mib);
    printf("%-7s %-5s %-12s %10s %10s %10s %9s %12s\n", "threads", "dtype", "cache", "time ms",
           "KV GB/s", "read GB/s", "vs read", "vs contig");
    for (int ti = 0; ti < n_thread_counts && rc == 0; ti++) {
        int threads = thread_counts[ti];
        sc.threads = threads;
        bench_timing before, after;
        bench_time_median(run_stream, &sc, 1, (int)repeats, &before);
        double results[6];
        char plans[6][512];
        for (int ci = 0; ci < 6 && rc == 0; ci++) {
            config *cfg = &configs[ci];
            if (cfg->block_size) shuffle_table(p.table, batch * seqlen / cfg->block_size, 7);
            decode_ctx dc;
            fill_args(&p, cfg, threads, &dc.args);
            tileattn_status st = tileattn_describe_decode(&dc.args, plans[ci], sizeof plans[ci]);
            bench_timing t;
            if (st || bench_time_median(run_decode, &dc, 2, (int)repeats, &t)) {
                fprintf(stderr, "tileattn bench --decode: %s\n",
                        tileattn_status_string(st ? st : tileattn_decode(&dc.args)));
                rc = 1;
                break;
            }
            results[ci] = t.median_s;
        }
        if (rc) break;
        bench_time_median(run_stream, &sc, 1, (int)repeats, &after);
        double read_gbs =
            0.5 *
            ((double)(stream_n * 4) / before.median_s + (double)(stream_n * 4) / after.median_s) /
            1e9;
        for (int ci = 0; ci < 6; ci++) {
            config *cfg = &configs[ci];
            size_t es = cfg->dtype == TILEATTN_CACHE_F32 ? 4 : 2;
            double bytes = (double)(batch * keys_read) * (double)heads_kv * (double)(2 * head_dim) *
                           (double)es;
            double gbs = bytes / results[ci] / 1e9;
            char cache[32], vs_contig[32] = "";
            if (cfg->block_size) {
                snprintf(cache, sizeof cache, "paged %lld", (long long)cfg->block_size);
                int contig = ci / 3 * 3;
                snprintf(vs_contig, sizeof vs_contig, "%.3f", results[contig] / results[ci]);
            } else {
                snprintf(cache, sizeof cache, "contiguous");
            }
            printf("%-7d %-5s %-12s %10.3f %10.2f %10.2f %9.3f %12s\n", threads,
                   dtype_name(cfg->dtype), cache, results[ci] * 1e3, gbs, read_gbs, gbs / read_gbs,
                   vs_contig);
        }
        /* The split-KV and prefetch lines of the contiguous bf16 run's
         * plan, for the record. */
        const char *line = strstr(plans[0], "split-KV");
        if (line) printf("  plan (%d thread%s):\n", threads, threads > 1 ? "s" : "");
        while (line && *line) {
            const char *end = strchr(line, '\n');
            int len = end ? (int)(end - line) : (int)strlen(line);
            printf("    %.*s\n", len, line);
            line = end ? end + 1 : NULL;
        }
    }
    free(stream), free(p.k), free(p.v), free(p.q), free(p.o), free(p.table);
    free(p.cache_seqlens);
    return rc;
}
