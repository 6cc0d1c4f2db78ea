/*
 * The forward on Hopper (sm_90a): the same algorithm as the mma.sync kernel
 * (flash_fwd_mma_kernel.cuh; FlashAttention-2's Algorithm 1), with both
 * products on wgmma. A warpgroup computes a 64 x 128 tile of S = Q K^T
 * with Q and K read by the tensor cores straight from shared memory, and
 * O += P V with P from its registers: no ldmatrix, and one m64n128k16
 * instruction does the work of 64 mma.sync m16n8k16.
 *
 *   load Q_i into shared memory (128-byte swizzle, wgmma.cuh)
 *   S_0 = Q_i K_0^T, its softmax
 *   for each key tile t (cp.async, two stages each for K and V):
 *       issue S_{t+1} = Q_i K_{t+1}^T    wgmma, A and B from shared memory
 *       issue O_i += P_t V_t             wgmma, A = P from registers, B = V (MN-major)
 *       wait for S_{t+1}; mask and softmax it (flash_fwd_common.cuh)
 *       wait for P_t V_t; rescale O_i
 *   O_i /= l_i, LSE
 *
 * The softmax of one tile thus runs while the tensor cores multiply the
 * previous one (FlashAttention-3's intra-warpgroup overlap). A block has one
 * or two warpgroups sharing its K/V tiles; with one, two blocks fit a
 * multiprocessor and fill each other's gaps (one's loads and epilogue, the
 * other's products).
 */
#ifndef TILEATTN_CUDA_FLASH_FWD_WGMMA_KERNEL_CUH
#define TILEATTN_CUDA_FLASH_FWD_WGMMA_KERNEL_CUH

#include "flash_fwd_common.cuh"
#include "kernel_traits.cuh"
#include "wgmma.cuh"

/* Streams rows [0, kRows) of a [rows, head_dim] tile into shared memory as
 * 64-column blocks of kRows x 128 bytes, 128-byte swizzled, zero-filling
 * rows >= valid_rows and columns >= head_dim. Thread t copies column chunk
 * t % (kHeadDim / 8) of every kRowStep-th row; kRowStep is a multiple of 8,
 * so the swizzle of a thread's chunk never changes. */
template <typename Traits, int kRows>
__device__ __forceinline__ void
ta_load_tile_sw128(typename Traits::Element *smem, const typename Traits::Element *gmem,
                   int64_t row_stride, int valid_rows, int head_dim) {
    constexpr int kChunksPerRow = Traits::kHeadDim / 8;
    constexpr int kRowStep = Traits::kNThreads / kChunksPerRow;
    static_assert(kRowStep % 8 == 0, "a fixed swizzle per thread");
    const int row0 = (int)threadIdx.x / kChunksPerRow, chunk = (int)threadIdx.x % kChunksPerRow;
    const int col = chunk * 8;
    const bool col_valid = col < head_dim;
    typename Traits::Element *dst =
        smem + (chunk / 8) * kRows * 64 + row0 * 64 + (((chunk % 8) ^ (row0 % 8)) * 8);
    const typename Traits::Element *src = gmem + row0 * row_stride + col;
#pragma unroll
    for (int it = 0; it < (kRows + kRowStep - 1) / kRowStep; it++) {
        if (kRows % kRowStep != 0 && row0 + it * kRowStep >= kRows) break;
        const bool valid = col_valid && row0 + it * kRowStep < valid_rows;
        ta_cp_async_16(dst + it * kRowStep * 64, valid ? src : gmem, valid);
        src += kRowStep * row_stride;
    }
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, Traits::kMinBlocksPerSm)
    ta_cuda_fwd_wgmma_kernel(const ta_desc d, const tileattn_forward_args a) {
#if TA_WGMMA_ENABLED
    using Element = typename Traits::Element;
    constexpr int kHeadDim = Traits::kHeadDim, kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN;
    constexpr int kNTilesS = Traits::kNTilesS, kNTilesO = Traits::kNTilesO;

    /* Tiles start on the 1024-byte swizzle atom. */
    extern __shared__ __align__(1024) unsigned char ta_wgmma_smem[];
    const unsigned raw_addr = (unsigned)__cvta_generic_to_shared(ta_wgmma_smem);
    const unsigned q_addr = (raw_addr + 1023u) & ~1023u;
    Element *s_q = reinterpret_cast<Element *>(ta_wgmma_smem + (q_addr - raw_addr));
    Element *s_k = s_q + Traits::kSmemQElems; /* [kStages][blocks][kBlockN][64] */
    Element *s_v =
        s_k + Traits::kStages * Traits::kSmemKVElems; /* [kStages][blocks][kBlockN][64] */
    constexpr unsigned kStageBytes = Traits::kSmemKVElems * 2;
    const unsigned k_addr = q_addr + Traits::kSmemQElems * 2;
    const unsigned v_addr = k_addr + Traits::kStages * kStageBytes;

    /* Longest query tiles first (FlashAttention-2's ordering for causal). */
    const int h = (int)blockIdx.y, b = (int)blockIdx.z;
    const ta_block_problem<Element> p = ta_make_block_problem<Element, kBlockM, kBlockN>(
        d, a, (int)(gridDim.x - 1 - blockIdx.x), h, b);
    if (p.m == 0) return; /* a short sequence of a varlen batch */
    const int head_dim = (int)d.head_dim;

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int warpgroup = warp / 4;
    const int warp_row0 = warp * 16; /* warpgroup g's warp w: rows 64 g + 16 w */

    /* Q (A, K-major): this warpgroup's 64 rows; k step ks is 32 bytes into
     * the row of block ks / 4. K (B, K-major) likewise over kBlockN rows.
     * V (B, MN-major): k step ks is rows 16 ks .. 16 ks + 15. Offsets only
     * change a descriptor's low bits (the address in 16-byte units), so each
     * is one base plus a constant: fewer live registers. */
    const uint64_t desc_q0 = ta_wgmma_desc(q_addr + warpgroup * 64 * 128, 16, 1024);
    const uint64_t desc_k0 = ta_wgmma_desc(k_addr, 16, 1024);
    const uint64_t desc_v0 = ta_wgmma_desc(v_addr, kBlockN * 128, 1024);
    auto desc_q = [&](int ks) {
        return desc_q0 + (uint64_t)(((ks / 4) * kBlockM * 128 + (ks % 4) * 32) >> 4);
    };
    auto desc_k = [&](int stage, int ks) {
        return desc_k0 +
               (uint64_t)((stage * kStageBytes + (ks / 4) * kBlockN * 128 + (ks % 4) * 32) >> 4);
    };
    auto desc_v = [&](int stage, int ks) {
        return desc_v0 + (uint64_t)((stage * kStageBytes + ks * 16 * 128) >> 4);
    };

    float row_max[1][2], row_sum[1][2];
    ta_init_rows(d, a, p, h, lane, row_max, row_sum);
    float acc_o[1][kNTilesO][4];
    ta_zero_accumulators(acc_o);

    /* Key tile t lives in stage t % 2 of K and of V. Iteration t multiplies
     * P_t V_t while the tensor cores also compute S_{t+1} = Q K_{t+1}^T, and
     * the softmax of S_{t+1} runs while P_t V_t is still in flight. So K
     * runs one tile ahead of V: iteration t reads K_{t+1} and V_t, and loads
     * K_{t+2} and V_{t+1} into the stages that K_t and V_{t-1} left. */
    auto load_tile = [&](Element *stages, const Element *head, int64_t row_stride, int t) {
        const int64_t j = p.first_key + (int64_t)t * kBlockN;
        if (t < p.num_tiles)
            ta_load_tile_sw128<Traits, kBlockN>(stages + (t & 1) * Traits::kSmemKVElems,
                                                head + j * row_stride, row_stride,
                                                ta_tile_keys<kBlockN>(p.last_key, j), head_dim);
    };
    auto load_k = [&](int t) { load_tile(s_k, p.k_head, d.k_stride[1], t); };
    auto load_v = [&](int t) { load_tile(s_v, p.v_head, d.v_stride[1], t); };
    /* S = Q K_t^T, issued (the first k step overwrites the accumulators). */
    auto issue_qk = [&](float(&acc)[kNTilesS][4], int t) {
#pragma unroll
        for (int ks = 0; ks < Traits::kKStepsQK; ks++)
            ta_wgmma_ss<Element, kBlockN>(acc, desc_q(ks), desc_k(t & 1, ks), ks > 0);
        ta_wgmma_commit();
    };
    /* Mask and softmax statistics of S = S_t; alpha rescales O. */
    auto softmax = [&](float(&acc)[1][kNTilesS][4], int t, float(&alpha)[1][2]) {
        const int64_t j0 = p.first_key + (int64_t)t * kBlockN;
        const int n = ta_tile_keys<kBlockN>(p.last_key, j0);
        const bool mask = ta_classify_tile(&p.win, p.i0, p.m, j0, n) != TA_TILE_FULL || n < kBlockN;
        if (p.has_mods || mask) ta_mask_scores(acc, d, p, p.i0 + warp_row0, lane, j0, n, mask);
        ta_softmax_update(acc, row_max, row_sum, p.score_to_log2, alpha);
    };

    float acc_s[1][kNTilesS][4];
    unsigned p_frag[Traits::kKStepsPV][4]; /* P_t as wgmma A fragments */
    float alpha[1][2];
    if (p.num_tiles > 0) { /* a block whose rows see no key only writes zeros */
        ta_load_tile_sw128<Traits, kBlockM>(s_q, p.q, d.q_stride[1], p.m, head_dim);
        load_k(0);
        ta_cp_async_commit();
        load_k(1);
        load_v(0);
        ta_cp_async_commit();
        ta_cp_async_wait<1>(); /* Q and K_0 */
        ta_fence_async_shared();
        __syncthreads();
        ta_zero_accumulators(acc_s);
        ta_wgmma_fence();
        issue_qk(acc_s[0], 0);
        ta_wgmma_wait<0>();
        ta_wgmma_fence_operands(acc_s[0]);
        softmax(acc_s, 0, alpha); /* O is still 0: no rescale */
#pragma unroll
        for (int ks = 0; ks < Traits::kKStepsPV; ks++)
            ta_p_fragment<Element>(acc_s, 0, ks, p_frag[ks]);
    }

    /* O += P_t V_t, issued. */
    auto issue_pv = [&](int t) {
#pragma unroll
        for (int ks = 0; ks < Traits::kKStepsPV; ks++)
            ta_wgmma_rs<Element, kHeadDim>(acc_o[0], p_frag[ks], desc_v(t & 1, ks));
        ta_wgmma_commit();
    };

    /* Every tile but the last. No branch may separate an issue from its
     * wait: ptxas would then serialize the products (its C7514 report). */
    for (int tile = 0; tile + 1 < p.num_tiles; tile++) {
        /* K_{t+1} and V_t have landed, and every warp is done with K_t and
         * V_{t-1}: their stages take K_{t+2} and V_{t+1}. */
        ta_cp_async_wait<0>();
        ta_fence_async_shared();
        __syncthreads();
        if constexpr (!Traits::kLoadAfterIssue) {
            load_k(tile + 2);
            load_v(tile + 1);
            ta_cp_async_commit();
        }

        ta_wgmma_fence();
        issue_qk(acc_s[0], tile + 1);
        issue_pv(tile);
        if constexpr (Traits::kLoadAfterIssue) {
            load_k(tile + 2);
            load_v(tile + 1);
            ta_cp_async_commit();
        }
        ta_wgmma_wait<1>(); /* S_{t+1} is done: its softmax overlaps P_t V_t */
        ta_wgmma_fence_operands(acc_s[0]);
        softmax(acc_s, tile + 1, alpha);
        ta_wgmma_wait<0>();
        ta_wgmma_fence_operands(acc_o[0]);
        ta_wgmma_fence_operands(p_frag); /* P was read until the wait */
        ta_rescale_o(acc_o, alpha);
#pragma unroll
        for (int ks = 0; ks < Traits::kKStepsPV; ks++)
            ta_p_fragment<Element>(acc_s, 0, ks, p_frag[ks]);
    }
    if (p.num_tiles > 0) { /* the last tile: P V only */
        ta_cp_async_wait<0>();
        ta_fence_async_shared();
        __syncthreads();
        ta_wgmma_fence();
        issue_pv(p.num_tiles - 1);
        ta_wgmma_wait<0>();
        ta_wgmma_fence_operands(acc_o[0]);
        ta_wgmma_fence_operands(p_frag); /* P was read until the wait */
    }

    ta_write_output(d, a, p, h, b, warp_row0, lane, acc_o, row_max, row_sum);
#else
    (void)d, (void)a;
    __trap();
#endif
}

#endif /* TILEATTN_CUDA_FLASH_FWD_WGMMA_KERNEL_CUH */
