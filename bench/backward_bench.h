/*
 * The backward pass's benchmark: tileattn_backward against OpenBLAS
 * cblas_sgemm in the same run (and the forward, for scale), with the peak
 * resident memory of the process. Wired as `tileattn bench --backward`.
 */
#ifndef TILEATTN_BACKWARD_BENCH_H
#define TILEATTN_BACKWARD_BENCH_H

/* argv[0] is the command's name; flags (all optional):
 *   --batch N (1) --heads N (4) --heads-kv N (= heads) --seqlen N (2048,
 *   Sq = Sk) --head-dim N (128) --dtype f32|f16|bf16 (f32) --causal
 *   --threads N (1; 0 = all cores) --repeats N (3)
 *   --rss-only   run one backward (no timing, no sgemm) and print the peak
 *                resident set size: for the O(N) memory claim at long S.
 * Prints a table to stdout: times (median), GFLOP/s counted as 2.5 x the
 * forward's 4 B H Sq Sk D (halved when causal), sgemm GFLOP/s (2048^3 on
 * the same threads) and the ratio. Returns 0, 1 if tileattn failed, 2 on a
 * bad flag. */
int ta_bench_backward(int argc, char **argv);

#endif /* TILEATTN_BACKWARD_BENCH_H */
