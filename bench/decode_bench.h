/*
 * The decoding benchmark: tileattn_decode's effective bandwidth (bytes of
 * K and V read per second) against a STREAM-style read bandwidth measured
 * in the same run. Wired as `tileattn bench --decode`.
 */
#ifndef TILEATTN_DECODE_BENCH_H
#define TILEATTN_DECODE_BENCH_H

/* argv[0] is the command's name; flags (all optional):
 *   --batch N (1 sequence) --seqlen N (32768 cached tokens each)
 *   --heads N (32) --heads-kv N (8)
 *   --head-dim N (128) --repeats N (15, median reported)
 *   --stream-mib N (1024: the read-bandwidth array, far above the LLC)
 *   --layout bshd|bhsd (bshd: the cache [B, S, Hk, D], paged
 *     [blocks, block_size, Hk, D]; bhsd: PyTorch's [B, Hk, S, D], paged
 *     [blocks, Hk, block_size, D])
 *   --window W (0: none; else each query sees the last W keys, a sliding
 *     window, and GB/s count the K and V of those keys only)
 * Measures, for 1 thread and all threads: the read bandwidth (a vectorized
 * sum), then decoding of one new token per sequence over the cache in
 * bf16 and f32, contiguous and paged (block sizes 16 and 128, shuffled
 * block table). Prints GB/s, the ratio to the read bandwidth and paged vs
 * contiguous, the split-KV plan, and a note when the cache would fit in
 * the last-level cache. Returns 0, 1 if tileattn failed, 2 on a bad flag
 * or no memory. */
int ta_bench_decode(int argc, char **argv);

#endif /* TILEATTN_DECODE_BENCH_H */
