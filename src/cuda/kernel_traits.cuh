/*
 * Compile-time description of one forward kernel instantiation, in the
 * manner of FlashAttention's kernel_traits.h: the kernel body reads every
 * size from here, and the launcher picks one per head dimension and tile.
 */
#ifndef TILEATTN_CUDA_KERNEL_TRAITS_CUH
#define TILEATTN_CUDA_KERNEL_TRAITS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_, typename Element_>
struct ta_cuda_fwd_traits {
    using Element = Element_; /* __half or __nv_bfloat16: the tensor cores' input type */

    static constexpr int kHeadDim = kHeadDim_; /* instantiated D; smaller D is zero-padded */
    static constexpr int kBlockM = kBlockM_;   /* query rows per thread block */
    static constexpr int kBlockN = kBlockN_;   /* keys per K/V tile */
    static constexpr int kNWarps = kNWarps_;
    static constexpr int kNThreads = 32 * kNWarps;

    /* Each warp owns a horizontal slice of the query tile (FlashAttention-2:
     * no warp needs another warp's scores), made of 16-row MMA tiles. */
    static constexpr int kRowsPerWarp = kBlockM / kNWarps;
    static constexpr int kMTiles = kRowsPerWarp / 16;

    /* mma.sync.m16n8k16 tiles: S = Q K^T is kMTiles x kNTilesS of 16x8, and
     * O = P V is kMTiles x kNTilesO of 16x8, both with k steps of 16. */
    static constexpr int kNTilesS = kBlockN / 8;
    static constexpr int kKStepsQK = kHeadDim / 16;
    static constexpr int kNTilesO = kHeadDim / 8;
    static constexpr int kKStepsPV = kBlockN / 16;

    /* Q's A fragments stay in registers for the whole K/V loop when Q, S and
     * O accumulators fit (floats per thread, measured: past ~160 ptxas
     * spills at 255 registers); otherwise every k step re-reads them from
     * shared memory, as FlashAttention-2 does by default. */
    static constexpr int kRegsQ = kMTiles * kKStepsQK * 4;
    static constexpr int kRegsSO = kMTiles * (kNTilesS + kNTilesO) * 4;
    static constexpr bool kQInRegs = kRegsQ + kRegsSO <= 160;

    /* Shared memory rows are kHeadDim elements = kChunksPerRow 16-byte chunks,
     * stored with chunk c of row r at c ^ (r % 8): the 8 rows one ldmatrix
     * phase reads then hit 8 different bank groups. Needs >= 8 chunks. */
    static constexpr int kChunksPerRow = kHeadDim / 8;
    static constexpr int kStages = 2; /* K/V tiles double-buffered */
    static constexpr int kSmemQElems = kBlockM * kHeadDim;
    static constexpr int kSmemKVElems = kBlockN * kHeadDim;
    static constexpr int kSmemBytes =
        (kSmemQElems + 2 * kStages * kSmemKVElems) * (int)sizeof(Element);

    static_assert(kHeadDim % 64 == 0, "the swizzle needs rows of at least 8 chunks");
    static_assert(kRowsPerWarp % 16 == 0 && kMTiles >= 1, "warps own whole 16-row MMA tiles");
    static_assert(kBlockN % 16 == 0, "keys come in k16 steps of the P V product");
    static_assert(sizeof(Element) == 2, "16-bit inputs only");
};

/* The Hopper kernel (flash_fwd_wgmma_kernel.cuh): each warpgroup (4 warps)
 * owns 64 query rows, S and O are wgmma accumulators, and shared memory
 * holds 64-column blocks in the 128-byte swizzle (wgmma.cuh). */
template <int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_, typename Element_>
struct ta_cuda_wgmma_traits {
    using Element = Element_;
    static constexpr int kHeadDim = kHeadDim_;
    static constexpr int kBlockM = kBlockM_;
    static constexpr int kBlockN = kBlockN_;
    static constexpr int kNWarps = kNWarps_;
    static constexpr int kNThreads = 32 * kNWarps;
    static constexpr int kWarpgroups = kNWarps / 4;

    static constexpr int kNTilesS = kBlockN / 8;  /* 8-column tiles of S */
    static constexpr int kNTilesO = kHeadDim / 8; /* 8-column tiles of O */
    static constexpr int kKStepsQK = kHeadDim / 16;
    static constexpr int kKStepsPV = kBlockN / 16;

    /* Issue the next tiles' cp.async loads after a key tile's products
     * rather than before: measured on an H200, +1-10% at D = 128, -4% to +1%
     * at D = 64 (bench/cuda/NOTES.md run 8). */
    static constexpr bool kLoadAfterIssue = kHeadDim >= 128;

    /* Blocks per multiprocessor ptxas must leave registers for. At D = 64
     * with 64 x 64 tiles, three (at most 168 registers, no spills; 173
     * otherwise, which fits two): measured on an H200, causal, +13% to +20%
     * at seqlen 512-4096 (bench/cuda/NOTES.md run 12). Not the others: at
     * D = 128, 64 x 64 tiles spill at 168 registers and three blocks' 81 KB
     * of shared memory exceed a multiprocessor's 228 KB; 128-key tiles need
     * 254 registers. */
    static constexpr int kMinBlocksPerSm = (kHeadDim == 64 && kBlockN == 64) ? 3 : 1;

    static constexpr int kColBlocks = kHeadDim / 64; /* 128-byte swizzle blocks per row */
    static constexpr int kStages = 2;
    static constexpr int kSmemQElems = kBlockM * kHeadDim;
    static constexpr int kSmemKVElems = kBlockN * kHeadDim;
    /* + 1 KB to align the start to the swizzle atom */
    static constexpr int kSmemBytes =
        (kSmemQElems + 2 * kStages * kSmemKVElems) * (int)sizeof(Element) + 1024;

    static_assert(kNWarps % 4 == 0 && kBlockM == 64 * kWarpgroups, "64 query rows per warpgroup");
    static_assert(kHeadDim % 64 == 0, "whole 128-byte swizzle blocks");
    static_assert(kBlockN == 64 || kBlockN == 128, "S = Q K^T is instantiated as m64n64, m64n128");
    static_assert(sizeof(Element) == 2, "16-bit inputs only");
};

#endif /* TILEATTN_CUDA_KERNEL_TRAITS_CUH */
