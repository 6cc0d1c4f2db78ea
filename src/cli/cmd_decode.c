/*
 * tileattn decode: decoding attention over a KV cache held in .npy files,
 * contiguous or paged, optionally appending new tokens first.
 *
 * .npy has no bfloat16 or per-block int8 layout, so the caches here are
 * float32 or float16 (the file's dtype); Q, K_new and V_new share Q's dtype
 * (K_new/V_new are converted to it), and O is written in it. An append
 * changes the cache, which is written to --k-cache-out/--v-cache-out (never
 * over the input files); every output goes to a temporary file first and
 * all are renamed into place only when all were written.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_decode.h"
#include "flags.h"
#include "io.h"
#include "npy.h"
#include "paths.h"

static const char *const CMD = "decode";

typedef struct decode_paths {
    const char *q, *k_cache, *v_cache, *k_pool, *v_pool, *block_table, *cache_seqlens;
    const char *k_new, *v_new, *out, *lse, *k_cache_out, *v_cache_out, *alibi, *sinks;
} decode_paths;

static void print_help(void) {
    printf("usage: tileattn decode --q Q.npy (--k-cache K.npy --v-cache V.npy |\n"
           "         --k-pool K.npy --v-pool V.npy --block-table BT.npy) --cache-seqlens CS.npy\n"
           "         [--k-new KN.npy --v-new VN.npy --k-cache-out K2.npy --v-cache-out V2.npy]\n"
           "         --out O.npy [--lse LSE.npy] [--causal] [--window L,R] [--softcap C]\n"
           "         [--scale S] [--alibi F.npy] [--sinks F.npy] [--threads N]\n"
           "  Q [B, Sq_new, H, D]; contiguous caches [B, S_max, Hk, D|Dv]; paged pools\n"
           "  [num_blocks, block_size, Hk, D|Dv] with block table [B, max_blocks] (int32/int64);\n"
           "  cache lengths [B]; new tokens [B, Sq_new, Hk, D|Dv]. Caches float32 or float16.\n"
           "  O [B, Sq_new, H, Dv] in Q's dtype; LSE [B, H, Sq_new] float32.\n");
}

/* Reads a file, checks its rank, converts it to `to` (TA_NPY_F64 here
 * means "float16 stays float16, anything else becomes float32"). */
static int load(const char *path, int ndim, ta_npy_dtype to, ta_npy_array *out) {
    char err[TA_NPY_ERR_LEN];
    if (ta_npy_read(path, out, err, sizeof err) != 0) {
        ta_cli_error(CMD, "%s", err);
        return -1;
    }
    if (to == TA_NPY_F64) to = out->dtype == TA_NPY_F16 ? TA_NPY_F16 : TA_NPY_F32;
    if (ta_npy_convert(out, to, path, err, sizeof err) != 0) {
        ta_cli_error(CMD, "%s", err);
        return -1;
    }
    if (out->ndim != ndim) {
        ta_cli_error(CMD, "%s: %d dimensions, want %d", path, out->ndim, ndim);
        return -1;
    }
    return 0;
}

static int same_shape(const char *path, const ta_npy_array *a, int ndim, const int64_t *shape) {
    if (a->ndim == ndim && memcmp(a->shape, shape, (size_t)ndim * sizeof *shape) == 0) return 0;
    char got[256], want[256];
    ta_cli_format_shape(got, sizeof got, a->ndim, a->shape);
    ta_cli_format_shape(want, sizeof want, ndim, shape);
    ta_cli_error(CMD, "%s: shape %s, but the other inputs make it %s", path, got, want);
    return -1;
}

/* The library's checks of sizes, lengths and the block table, restated
 * here with the file and value at fault: its status names only the kind of
 * error ("a size is zero, negative or out of range"). */
static int check_sizes(const char *path, const ta_npy_array *a) {
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] < 1) {
            char shape[256];
            ta_cli_format_shape(shape, sizeof shape, a->ndim, a->shape);
            ta_cli_error(CMD, "%s: shape %s has an empty axis", path, shape);
            return -1;
        }
    return 0;
}

static int check_cache_contents(const decode_paths *p, const ta_npy_array *lens,
                                const ta_npy_array *table, int64_t num_blocks, int64_t block_size,
                                int64_t capacity, int64_t appended) {
    const int32_t *len = lens->data;
    for (int64_t b = 0; b < lens->shape[0]; b++) {
        if (len[b] < 0 || len[b] > capacity || len[b] + appended > capacity) {
            ta_cli_error(
                CMD,
                "%s: sequence %lld holds %d tokens and appends %lld; the cache has room for %lld",
                p->cache_seqlens, (long long)b, (int)len[b], (long long)appended,
                (long long)capacity);
            return -1;
        }
        if (table == NULL) continue;
        const int32_t *row = (const int32_t *)table->data + b * table->shape[1];
        for (int64_t k = 0; k < (len[b] + appended + block_size - 1) / block_size; k++)
            if (row[k] < 0 || row[k] >= num_blocks) {
                ta_cli_error(
                    CMD, "%s: sequence %lld, entry %lld is block %d, outside the pool's %lld",
                    p->block_table, (long long)b, (long long)k, (int)row[k], (long long)num_blocks);
                return -1;
            }
    }
    return 0;
}

static int parse_args(int argc, char **argv, decode_paths *p, tileattn_decode_args *a) {
    struct {
        const char *flag;
        const char **path;
    } files[] = {
        {"--q", &p->q},
        {"--k-cache", &p->k_cache},
        {"--v-cache", &p->v_cache},
        {"--k-pool", &p->k_pool},
        {"--v-pool", &p->v_pool},
        {"--block-table", &p->block_table},
        {"--cache-seqlens", &p->cache_seqlens},
        {"--k-new", &p->k_new},
        {"--v-new", &p->v_new},
        {"--out", &p->out},
        {"--lse", &p->lse},
        {"--k-cache-out", &p->k_cache_out},
        {"--v-cache-out", &p->v_cache_out},
        {"--alibi", &p->alibi},
        {"--sinks", &p->sinks},
    };
    int64_t threads = 0;
    for (int i = 1; i < argc;) {
        int r = 0;
        for (size_t f = 0; f < sizeof files / sizeof files[0] && r == 0; f++)
            r = ta_cli_path_flag(argc, argv, &i, files[f].flag, files[f].path);
        if (r == 0) r = ta_cli_float_flag(argc, argv, &i, "--softcap", &a->softcap);
        if (r == 0) {
            r = ta_cli_float_flag(argc, argv, &i, "--scale", &a->scale);
            if (r > 0 && !(a->scale > 0.0f)) { /* as run: 0 is not a scale */
                ta_cli_error(CMD, "--scale: must be > 0 (leave it out for 1/sqrt(D))");
                return -1;
            }
        }
        if (r == 0) r = ta_cli_window_flag(argc, argv, &i, &a->window_left, &a->window_right);
        if (r == 0) r = ta_cli_int64_flag(argc, argv, &i, "--threads", 0, 4096, &threads);
        if (r < 0) return -1;
        if (r > 0) continue;
        if (strcmp(argv[i], "--causal") == 0) {
            a->causal = 1;
            i++;
        } else {
            ta_cli_error(CMD, "unknown argument '%s' (try 'tileattn decode --help')", argv[i]);
            return -1;
        }
    }
    a->num_threads = (int)threads;
    int contiguous = p->k_cache || p->v_cache, paged = p->k_pool || p->v_pool || p->block_table;
    if (!p->q || !p->cache_seqlens || !p->out || contiguous == paged ||
        (contiguous && !(p->k_cache && p->v_cache)) ||
        (paged && !(p->k_pool && p->v_pool && p->block_table))) {
        ta_cli_error(CMD, "--q, --cache-seqlens, --out and one cache (--k-cache/--v-cache or "
                          "--k-pool/--v-pool/--block-table) are required");
        return -1;
    }
    /* All four or none: cache outputs without new tokens would be accepted
     * and silently never written. */
    if (!p->k_new != !p->v_new || !p->k_new != !p->k_cache_out || !p->k_new != !p->v_cache_out) {
        ta_cli_error(CMD, "--k-new and --v-new go together, with --k-cache-out and --v-cache-out");
        return -1;
    }
    /* Each output is renamed into place in turn: two naming one file would
     * leave only the last (e.g. LSE's bytes under --out's name), and the
     * cache outputs must not replace the input caches. */
    const ta_cli_path outputs[4] = {{"--out", p->out},
                                    {"--lse", p->lse},
                                    {"--k-cache-out", p->k_cache_out},
                                    {"--v-cache-out", p->v_cache_out}};
    const ta_cli_path inputs[11] = {
        {"--q", p->q},           {"--k-cache", p->k_cache}, {"--v-cache", p->v_cache},
        {"--k-pool", p->k_pool}, {"--v-pool", p->v_pool},   {"--block-table", p->block_table},
        {"--k-new", p->k_new},   {"--v-new", p->v_new},     {"--cache-seqlens", p->cache_seqlens},
        {"--alibi", p->alibi},   {"--sinks", p->sinks},
    };
    return ta_cli_check_paths(CMD, outputs, 4, inputs, 11);
}

int ta_cmd_decode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (ta_cli_is_help(argv[i])) {
            print_help();
            return TA_EXIT_OK;
        }
    decode_paths paths = {0};
    tileattn_decode_args a;
    tileattn_decode_args_init(&a);
    if (parse_args(argc, argv, &paths, &a) != 0) return TA_EXIT_USAGE;

    int paged = paths.block_table != NULL, rc = TA_EXIT_USAGE;
    ta_npy_array q = {0}, kc = {0}, vc = {0}, table = {0}, lens = {0}, kn = {0}, vn = {0};
    ta_npy_array alibi = {0}, sinks = {0};
    void *o = NULL;
    float *lse = NULL;
    char err[TA_NPY_ERR_LEN];
    ta_npy_pending pending[4] = {{0}};

    /* Q fixes B, Sq_new, H, D and the activation dtype (f64 becomes f32). */
    if (load(paths.q, 4, TA_NPY_F64, &q) != 0) goto done;
    ta_npy_dtype act = q.dtype;
    int64_t B = q.shape[0], sq = q.shape[1], H = q.shape[2], D = q.shape[3];

    const char *k_path = paged ? paths.k_pool : paths.k_cache;
    const char *v_path = paged ? paths.v_pool : paths.v_cache;
    /* The cache keeps its file's dtype (float16 or float32): V follows K. */
    if (load(k_path, 4, TA_NPY_F64, &kc) != 0) goto done;
    ta_npy_dtype cache_npy = kc.dtype;
    if (load(v_path, 4, cache_npy, &vc) != 0) goto done;
    if (kc.shape[3] != D || kc.shape[0] != vc.shape[0] || kc.shape[1] != vc.shape[1] ||
        kc.shape[2] != vc.shape[2]) {
        ta_cli_error(CMD,
                     "%s, %s: caches must be 4-D, alike but for the last axis, and K's last "
                     "axis must be Q's head dimension",
                     k_path, v_path);
        goto done;
    }
    int64_t hk = kc.shape[2], dv = vc.shape[3];

    if (load(paths.cache_seqlens, 1, TA_NPY_I32, &lens) != 0) goto done;
    int64_t lens_shape[1] = {B};
    if (same_shape(paths.cache_seqlens, &lens, 1, lens_shape) != 0) goto done;
    if (paged) {
        if (load(paths.block_table, 2, TA_NPY_I32, &table) != 0) goto done;
        if (table.shape[0] != B) {
            ta_cli_error(CMD, "%s: %lld rows, but Q has batch %lld", paths.block_table,
                         (long long)table.shape[0], (long long)B);
            goto done;
        }
    } else if (kc.shape[0] != B) {
        ta_cli_error(CMD, "%s: batch %lld, but Q has %lld", k_path, (long long)kc.shape[0],
                     (long long)B);
        goto done;
    }
    if (paths.k_new) {
        int64_t kshape[4] = {B, sq, hk, D}, vshape[4] = {B, sq, hk, dv};
        if (load(paths.k_new, 4, act, &kn) != 0 || load(paths.v_new, 4, act, &vn) != 0 ||
            same_shape(paths.k_new, &kn, 4, kshape) != 0 ||
            same_shape(paths.v_new, &vn, 4, vshape) != 0)
            goto done;
    }
    int64_t h_shape[1] = {H};
    if (paths.alibi && (load(paths.alibi, 1, TA_NPY_F32, &alibi) != 0 ||
                        same_shape(paths.alibi, &alibi, 1, h_shape) != 0))
        goto done;
    if (paths.sinks && (load(paths.sinks, 1, TA_NPY_F32, &sinks) != 0 ||
                        same_shape(paths.sinks, &sinks, 1, h_shape) != 0))
        goto done;

    if (check_sizes(paths.q, &q) != 0 || check_sizes(k_path, &kc) != 0 ||
        check_sizes(v_path, &vc) != 0 || (paged && check_sizes(paths.block_table, &table) != 0))
        goto done;
    if (D > TILEATTN_MAX_HEAD_DIM || dv > TILEATTN_MAX_HEAD_DIM) {
        ta_cli_error(CMD, "%s, %s: head dimensions %lld and %lld; at most %d are supported",
                     paths.q, v_path, (long long)D, (long long)dv, TILEATTN_MAX_HEAD_DIM);
        goto done;
    }
    if (H % hk != 0) {
        ta_cli_error(CMD, "%s: %lld KV heads do not divide the %lld query heads of %s", k_path,
                     (long long)hk, (long long)H, paths.q);
        goto done;
    }
    int64_t capacity = kc.shape[1];
    if (paged && __builtin_mul_overflow(table.shape[1], kc.shape[1], &capacity)) {
        ta_cli_error(CMD, "%s, %s: blocks per sequence times block size overflows",
                     paths.block_table, k_path);
        goto done;
    }
    if (check_cache_contents(&paths, &lens, paged ? &table : NULL, kc.shape[0],
                             paged ? kc.shape[1] : 1, capacity, paths.k_new ? sq : 0) != 0)
        goto done;

    tileattn_dtype dtype = act == TA_NPY_F16 ? TILEATTN_F16 : TILEATTN_F32;
    a.batch = B, a.seqlen_new = sq, a.heads_q = H, a.heads_kv = hk, a.head_dim = D;
    a.head_dim_v = dv, a.dtype = dtype;
    a.cache_dtype = cache_npy == TA_NPY_F16 ? TILEATTN_CACHE_F16 : TILEATTN_CACHE_F32;
    a.q = tileattn_tensor_contiguous(q.data, sq, H, D);
    a.k_cache = tileattn_tensor_out_contiguous(kc.data, kc.shape[1], hk, D);
    a.v_cache = tileattn_tensor_out_contiguous(vc.data, vc.shape[1], hk, dv);
    a.cache_seqlens = lens.data;
    if (paged) {
        a.block_table = table.data, a.num_blocks = kc.shape[0];
        a.block_size = kc.shape[1], a.max_blocks_per_seq = table.shape[1];
    } else {
        a.max_seqlen_cache = kc.shape[1];
    }
    if (paths.k_new) {
        a.k_new = tileattn_tensor_contiguous(kn.data, sq, hk, D);
        a.v_new = tileattn_tensor_contiguous(vn.data, sq, hk, dv);
    }
    a.alibi_slopes = paths.alibi ? alibi.data : NULL;
    a.sinks = paths.sinks ? sinks.data : NULL;

    int64_t o_shape[4] = {B, sq, H, dv}, lse_shape[3] = {B, H, sq};
    int64_t o_count = ta_cli_shape_count(4, o_shape), lse_count = ta_cli_shape_count(3, lse_shape);
    if (o_count < 0 || lse_count < 0) {
        ta_cli_error(CMD, "the output is too large for this machine");
        goto done;
    }
    o = malloc((size_t)o_count * tileattn_dtype_size(dtype) + 1);
    lse = malloc((size_t)lse_count * sizeof(float) + 1);
    if (!o || !lse) {
        ta_cli_error(CMD, "out of memory for the output");
        goto done;
    }
    a.o = tileattn_tensor_out_contiguous(o, sq, H, dv);
    a.lse = lse;
    tileattn_status st = tileattn_decode(&a);
    if (st != TILEATTN_OK) {
        ta_cli_error(CMD, "%s", tileattn_status_string(st));
        goto done;
    }

    /* Every output to a temporary file first; rename only when all exist. */
    int n_pending = 0, ok = 1;
    ok = ok && ta_npy_write_temp(paths.out, act, 4, o_shape, o, &pending[n_pending++], err,
                                 sizeof err) == 0;
    if (ok && paths.lse)
        ok = ta_npy_write_temp(paths.lse, TA_NPY_F32, 3, lse_shape, lse, &pending[n_pending++], err,
                               sizeof err) == 0;
    if (ok && paths.k_new) {
        ok = ta_npy_write_temp(paths.k_cache_out, cache_npy, 4, kc.shape, kc.data,
                               &pending[n_pending++], err, sizeof err) == 0;
        ok = ok && ta_npy_write_temp(paths.v_cache_out, cache_npy, 4, vc.shape, vc.data,
                                     &pending[n_pending++], err, sizeof err) == 0;
    }
    ok = ok && ta_npy_commit_all(pending, n_pending, err, sizeof err) == 0;
    if (!ok) {
        ta_cli_error(CMD, "%s", err);
        goto done;
    }
    rc = TA_EXIT_OK;
done:
    for (int i = 0; i < 4; i++)
        ta_npy_discard(&pending[i]);
    ta_npy_free(&q), ta_npy_free(&kc), ta_npy_free(&vc), ta_npy_free(&table);
    ta_npy_free(&lens), ta_npy_free(&kn), ta_npy_free(&vn), ta_npy_free(&alibi);
    ta_npy_free(&sinks);
    free(o), free(lse);
    return rc;
}
