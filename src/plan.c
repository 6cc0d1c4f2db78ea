/*
 * The planner: arguments in, kernel description out.
 *
 * Tile sizes come from the cache sizes, the way BLIS derives its blocking
 * from a context (see plan_tiles for the three block sizes and why).
 */
#include <stdlib.h>

#include "desc.h"
#include "dispatch.h"
#include "tileattn_config.h"
#include "topology.h"
#include "ukernel.h"

#if TILEATTN_HAVE_OPENMP
#include <omp.h>
#endif

enum {
    MIN_BLOCK_K = 16,  /* below this the per-tile overhead dominates */
    MAX_BLOCK_K = 512, /* PyTorch's CPU flash attention settles on 512 too */
    MAX_BLOCK_Q = 512, /* rows per work item; beyond it items get too few to balance */
    CACHE_LINE_FLOATS = 16,
};

static int64_t round_down(int64_t x, int64_t m) {
    return x / m * m;
}
static int64_t round_up(int64_t x, int64_t m) {
    return (x + m - 1) / m * m;
}
static int64_t clamp(int64_t x, int64_t lo, int64_t hi) {
    return x < lo ? lo : x > hi ? hi : x;
}
static size_t pad_floats(int64_t n) {
    return (size_t)round_up(n, CACHE_LINE_FLOATS);
}

static int default_threads(void) {
#if TILEATTN_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Chooses the "how" half: tiles from the caches, then the work split.
 *
 *   block_k (Bc): the packed K and V blocks take a quarter of L2;
 *   block_r (Br): the score tile S (Br x Bc) takes half of L1, so qk, softmax
 *                 and pv pass it along in L1 (at least one register block);
 *   block_q:      the item's Q and O rows take half of L2, so one packed
 *                 K/V block serves block_q / Br sub-tiles (packing a key costs
 *                 about what a dozen rows of FMAs do, so block_q must be big).
 * The last quarter of L2 holds the next block's K/V rows on their way in
 * (prefetched by the driver). Measured on this machine (AMD family 1Ah,
 * L1d 48 KiB, L2 1 MiB; /tmp/perf harness, D = 128, Sq = Sk = 2048, H = 8,
 * one thread, ratio to an in-process FMA loop, median of 5): Bc = 256,
 * Br = 24 and block_q = 504 give 0.835; block_q = 240 0.81, block_q = 96
 * 0.66-0.69 (packing); Br = 48 instead of 24 was within 1%.
 */
static void plan_tiles(const ta_ukernels *uk, int num_threads, ta_desc *d) {
    const ta_topology *topo = ta_topology_get();
    d->l1d_bytes = topo->l1d_bytes;
    d->l2_bytes = topo->l2_bytes;
    d->l3_bytes = topo->l3_bytes;
    d->uk = uk;

    int64_t l2_quarter = (int64_t)(topo->l2_bytes / 4 / sizeof(float));
    int64_t l1_half = (int64_t)(topo->l1d_bytes / 2 / sizeof(float));
    int64_t dk = d->head_dim, dv = d->head_dim_v;
    int64_t sq = d->seqlen_q > 0 ? d->seqlen_q : 1; /* varlen batches may be all empty */
    int64_t sk = d->seqlen_k > 0 ? d->seqlen_k : 1;

    int64_t bk = round_down(l2_quarter / (dk + dv), uk->nr > 16 ? uk->nr : 16);
    bk = clamp(bk, MIN_BLOCK_K, MAX_BLOCK_K);
    bk = round_down(bk, uk->nr) ? round_down(bk, uk->nr) : uk->nr;
    d->block_k = bk < round_up(sk, uk->nr) ? bk : round_up(sk, uk->nr);

    int64_t br = round_down(l1_half / d->block_k, uk->mr);
    br = clamp(br, uk->mr, round_down(MAX_BLOCK_Q, uk->mr));
    br = br < round_up(sq, uk->mr) ? br : round_up(sq, uk->mr);

    int64_t bq = round_down(2 * l2_quarter / (dk + dv), br);
    bq = clamp(bq, br, round_down(MAX_BLOCK_Q, br));
    bq = bq < round_up(sq, br) ? bq : round_up(sq, br);

    /* Enough work items to keep every thread busy (and to balance causal
     * rows): shrink the item before leaving threads idle. */
    d->num_threads = num_threads > 0 ? num_threads : default_threads();
    int64_t heads = d->batch * d->heads_q;
    while (bq > br && heads * ((sq + bq - 1) / bq) < 4 * (int64_t)d->num_threads)
        bq = round_up(bq / 2, br);
    d->block_q = bq;
    d->block_r = br;
    d->num_q_tiles = (d->seqlen_q + bq - 1) / bq;
    d->num_work = heads * d->num_q_tiles;
    if (d->num_work < d->num_threads) d->num_threads = (int)(d->num_work > 0 ? d->num_work : 1);

    d->workspace_floats = pad_floats(bq * dk) + pad_floats(br * d->block_k) + pad_floats(bq * dv) +
                          2 * pad_floats(bq) + pad_floats(uk->packed_k_floats(d->block_k, dk)) +
                          pad_floats(uk->packed_v_floats(d->block_k, dv));
}

tileattn_status ta_plan(const tileattn_forward_args *args, ta_desc *desc) {
    tileattn_status st = ta_validate(args, TA_VALIDATE_KERNEL);
    if (st) return st;
    const ta_ukernels *uk = ta_ukernels_select(&st);
    if (st) return st;
    *desc = (ta_desc){0};
    ta_describe_problem(args, desc);
    plan_tiles(uk, args->num_threads, desc);
    return TILEATTN_OK;
}
