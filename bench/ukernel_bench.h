/*
 * The microkernel benchmark: each microkernel table this CPU runs, alone,
 * on a tile the size the planner gives the forward, with every operand in
 * cache. Wired as `tileattn bench --ukernels`.
 *
 * It separates the kernels' own speed from the loops around them: a qk or
 * pv near the FMA peak here, against a forward far below it, puts the loss
 * in the driver (L2 traffic, packing, the softmax), not in the register
 * block.
 */
#ifndef TILEATTN_UKERNEL_BENCH_H
#define TILEATTN_UKERNEL_BENCH_H

/* argv[0] is the command's name; flags (all optional):
 *   --head-dim N (128) --rows M --keys N (the planner's sub-tile rows and
 *   K/V block keys for Sq = Sk = 2048 at that head dim, float32, one
 *   thread) --repeats N (9, median reported)
 * For each table (float32 inputs, or bfloat16 for a table that takes
 * only 16-bit ones), and for its twin with P in bfloat16 where it has one
 * (with_p_bf16, a row of its own): pack_k + pack_v in GB/s of input read,
 * qk and pv in GFLOP/s and as a fraction of the one-thread FMA peak
 * measured in the same run, and the softmax in ns per score (and as a
 * share of the three steps' time). Without --rows, each table's rows are
 * the planner's rounded up to its register block (mr). Returns 0, or 2 on
 * a bad flag or no memory. */
int ta_bench_ukernels(int argc, char **argv);

#endif /* TILEATTN_UKERNEL_BENCH_H */
