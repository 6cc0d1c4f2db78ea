/*
 * The planner: arguments in, kernel description out.
 *
 * Tile sizes come from the cache sizes, the way BLIS derives its blocking
 * from a context (see plan_tiles for the three block sizes and why).
 */
#include <stdlib.h>

#include "desc.h"
#include "dispatch.h"
#include "plan_util.h"
#include "threads.h"
#include "tileattn_config.h"
#include "topology.h"
#include "ukernel.h"

enum {
    MIN_BLOCK_K = 16,   /* below this the per-tile overhead dominates */
    MAX_BLOCK_K = 512,  /* PyTorch's CPU flash attention settles on 512 too */
    MAX_BLOCK_Q = 1024, /* rows per work item; beyond it items get too few to balance */
};

/* Chooses the "how" half: tiles from the caches, then the work split.
 *
 *   block_k (Bc): the packed K and V blocks take a quarter of L2;
 *   block_r (Br): the score tile S (Br x Bc) takes half of L1, so qk, softmax
 *                 and pv pass it along in L1 (at least one register block);
 *   block_q:      the item's Q and O rows take as much as L2 holds, so one
 *                 packed K/V block serves block_q / Br sub-tiles (packing a
 *                 key costs about what a dozen rows of FMAs do, and more when
 *                 its strided rows come from L3, so block_q must be big).
 *                 Only the K/V panels must stay in L2: a sub-tile's Q and O
 *                 rows are contiguous in the workspace and stream past them.
 * Another quarter of L2 holds the next block's K/V rows on their way in
 * (prefetched by the driver). Measured on an AMD family 1Ah (L1d 48 KiB,
 * L2 1 MiB; D = 128, Sq = Sk = 2048, H = 8, one thread, ratio to an
 * in-process FMA loop, median of 5): Bc = 256, Br = 24 and block_q = 504
 * give 0.835; block_q = 240 0.81, block_q = 96 0.66-0.69 (packing); Br = 48
 * instead of 24 was within 1%. On a Zen 3 (L2 512 KiB, D = 128, one thread,
 * best of 6 calls, 5 rounds interleaved), Q and O in half of L2 (240 rows)
 * spent 11% of the time packing and gave 50-66 GFLOP/s; in all of it (480
 * rows) 53-70; 960 rows 57-73 with packing at 4%. This rule's 510 rows
 * against 240, four interleaved rounds: 68.8 against 67.5 GFLOP/s (best
 * round) at Sq = Sk = 2048, 70.1 against 67.3 at 4096, 66.6 against 49.8
 * at 4096 causal. The cap of 1024 rows (the rule gives 1020 on a 1 MiB L2
 * at D = 128; Q and O then spill to L3, which the sub-tiles stream at a few
 * GB/s) against 512, Zen 4, one thread, D = 128, six interleaved rounds,
 * median ratio to the FMA loop: 0.81 against 0.77 at Sq = Sk = 2048, 0.83
 * against 0.81 at 4096; D = 64, 2048: 0.76 against 0.72 (four rounds).
 */
static void plan_tiles(const ta_ukernels *uk, int num_threads, ta_desc *d) {
    const ta_topology *topo = ta_topology_get();
    d->l1d_bytes = topo->l1d_bytes;
    d->l2_bytes = topo->l2_bytes;
    d->l3_bytes = topo->l3_bytes;
    d->uk = uk;

    int64_t l2_floats = (int64_t)(topo->l2_bytes / sizeof(float));
    int64_t l1_half = (int64_t)(topo->l1d_bytes / 2 / sizeof(float));
    int64_t dk = d->head_dim, dv = d->head_dim_v;
    int64_t sq = d->seqlen_q > 0 ? d->seqlen_q : 1; /* varlen batches may be all empty */
    int64_t sk = d->seqlen_k > 0 ? d->seqlen_k : 1;

    int64_t bk = ta_round_down(l2_floats / 4 / (dk + dv), uk->nr > 16 ? uk->nr : 16);
    bk = ta_clamp(bk, MIN_BLOCK_K, MAX_BLOCK_K);
    bk = ta_round_down(bk, uk->nr) ? ta_round_down(bk, uk->nr) : uk->nr;
    d->block_k = bk < ta_round_up(sk, uk->nr) ? bk : ta_round_up(sk, uk->nr);

    int64_t br = ta_round_down(l1_half / d->block_k, uk->mr);
    br = ta_clamp(br, uk->mr, ta_round_down(MAX_BLOCK_Q, uk->mr));
    br = br < ta_round_up(sq, uk->mr) ? br : ta_round_up(sq, uk->mr);

    int64_t bq = ta_round_down(l2_floats / (dk + dv), br);
    bq = ta_clamp(bq, br, ta_round_down(MAX_BLOCK_Q, br));
    bq = bq < ta_round_up(sq, br) ? bq : ta_round_up(sq, br);

    /* Enough work items to keep every thread busy (and to balance causal
     * rows): shrink the item before leaving threads idle. */
    d->num_threads = ta_team_size(num_threads);
    int64_t heads = d->batch * d->heads_q;
    while (bq > br && heads * ((sq + bq - 1) / bq) < 4 * (int64_t)d->num_threads)
        bq = ta_round_up(bq / 2, br);
    /* The same number of items, of even size: 2048 rows in blocks of 1020
     * leave a last item of 8 rows that packs every K/V block for little
     * work; three items of 684 rows pack as often, with no such runt. */
    int64_t q_items = (sq + bq - 1) / bq;
    bq = ta_round_up((sq + q_items - 1) / q_items, br);
    d->block_q = bq;
    d->block_r = br;
    d->num_q_tiles = (d->seqlen_q + bq - 1) / bq;
    d->num_work = heads * d->num_q_tiles;
    if (d->num_work < d->num_threads) d->num_threads = (int)(d->num_work > 0 ? d->num_work : 1);

    d->workspace_floats = ta_pad_floats(bq * dk) + ta_pad_floats(br * d->block_k) +
                          ta_pad_floats(bq * dv) + 2 * ta_pad_floats(bq) +
                          ta_pad_floats(uk->packed_k_floats(d->block_k, dk)) +
                          ta_pad_floats(uk->packed_v_floats(d->block_k, dv));
}

tileattn_status ta_plan(const tileattn_forward_args *args, ta_desc *desc) {
    tileattn_status st = ta_validate(args, TA_VALIDATE_KERNEL);
    if (st) return st;
    const ta_ukernels *uk = ta_ukernels_for_dtype(args->dtype, &st);
    if (st) return st;
    /* Rounding P is only ever asked for, never assumed: the twin only where
     * the caller allows it and it serves the dtype. */
    if (args->p_precision == TILEATTN_P_INPUT_DTYPE && uk->with_p_bf16 &&
        (uk->with_p_bf16->dtypes & TA_DTYPE_BIT(args->dtype)))
        uk = uk->with_p_bf16;
    *desc = (ta_desc){0};
    ta_describe_problem(args, desc);
    plan_tiles(uk, args->num_threads, desc);
    return ta_choose_placement(desc->num_threads, &desc->place_threads, &desc->place_reason);
}
