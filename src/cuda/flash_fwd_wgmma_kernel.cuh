/*
 * The forward on Hopper (sm_90a): the same algorithm as the mma.sync kernel
 * (flash_fwd_mma_kernel.cuh; FlashAttention-2's Algorithm 1), with both
 * products on wgmma. A warpgroup computes a 64 x 128 tile of S = Q K^T
 * with Q and K read by the tensor cores straight from shared memory, and
 * O += P V with P from its registers: no ldmatrix, and a warpgroup
 * instruction does the work of 32 mma.sync.
 *
 *   load Q_i into shared memory (128-byte swizzle, wgmma.cuh)
 *   for each key tile j the mask does not hide (cp.async, two stages):
 *       S = Q_i K_j^T            wgmma, A and B from shared memory
 *       scores modified and masked, online softmax (flash_fwd_common.cuh)
 *       O_i += P V_j             wgmma, A = P from registers, B = V (MN-major)
 *   O_i /= l_i, LSE
 *
 * Two warpgroups share a block's K/V tiles; while one runs its softmax, the
 * other's products keep the tensor cores busy.
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
    static_assert(kRowStep % 8 == 0 && kRows % kRowStep == 0, "a fixed swizzle per thread");
    const int row0 = (int)threadIdx.x / kChunksPerRow, chunk = (int)threadIdx.x % kChunksPerRow;
    const int col = chunk * 8;
    const bool col_valid = col < head_dim;
    typename Traits::Element *dst =
        smem + (chunk / 8) * kRows * 64 + row0 * 64 + (((chunk % 8) ^ (row0 % 8)) * 8);
    const typename Traits::Element *src = gmem + row0 * row_stride + col;
#pragma unroll
    for (int it = 0; it < kRows / kRowStep; it++) {
        const bool valid = col_valid && row0 + it * kRowStep < valid_rows;
        ta_cp_async_16(dst + it * kRowStep * 64, valid ? src : gmem, valid);
        src += kRowStep * row_stride;
    }
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, 1)
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
     * V (B, MN-major): k step ks is rows 16 ks .. 16 ks + 15. */
    const unsigned q_wg_addr = q_addr + warpgroup * 64 * 128;
    auto desc_q = [&](int ks) {
        return ta_wgmma_desc(q_wg_addr + (ks / 4) * kBlockM * 128 + (ks % 4) * 32, 16, 1024);
    };
    auto desc_k = [&](int stage, int ks) {
        return ta_wgmma_desc(
            k_addr + stage * kStageBytes + (ks / 4) * kBlockN * 128 + (ks % 4) * 32, 16, 1024);
    };
    auto desc_v = [&](int stage, int ks) {
        return ta_wgmma_desc(v_addr + stage * kStageBytes + ks * 16 * 128, kBlockN * 128, 1024);
    };

    float row_max[1][2], row_sum[1][2];
    ta_init_rows(d, a, p, h, lane, row_max, row_sum);
    float acc_o[1][kNTilesO][4];
#pragma unroll
    for (int nt = 0; nt < kNTilesO; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            acc_o[0][nt][c] = 0.0f;

    if (p.num_tiles > 0) { /* a block whose rows see no key only writes zeros */
        ta_load_tile_sw128<Traits, kBlockM>(s_q, p.q, d.q_stride[1], p.m, head_dim);
        const int n0 = ta_tile_keys<kBlockN>(p.last_key, p.first_key);
        ta_load_tile_sw128<Traits, kBlockN>(s_k, p.k_head + p.first_key * d.k_stride[1],
                                            d.k_stride[1], n0, head_dim);
        ta_load_tile_sw128<Traits, kBlockN>(s_v, p.v_head + p.first_key * d.v_stride[1],
                                            d.v_stride[1], n0, head_dim);
    }
    ta_cp_async_commit();

    for (int tile = 0; tile < p.num_tiles; tile++) {
        const int64_t j0 = p.first_key + (int64_t)tile * kBlockN;
        const int n = ta_tile_keys<kBlockN>(p.last_key, j0);
        const int stage = tile & 1;

        /* Prefetch the next K/V tile into the other stage, then wait for
         * this one; the tensor cores read it through the async proxy. */
        if (tile + 1 < p.num_tiles) {
            const int64_t j1 = j0 + kBlockN;
            const int n1 = ta_tile_keys<kBlockN>(p.last_key, j1);
            ta_load_tile_sw128<Traits, kBlockN>(s_k + (stage ^ 1) * Traits::kSmemKVElems,
                                                p.k_head + j1 * d.k_stride[1], d.k_stride[1], n1,
                                                head_dim);
            ta_load_tile_sw128<Traits, kBlockN>(s_v + (stage ^ 1) * Traits::kSmemKVElems,
                                                p.v_head + j1 * d.v_stride[1], d.v_stride[1], n1,
                                                head_dim);
        }
        ta_cp_async_commit();
        ta_cp_async_wait<1>();
        ta_fence_async_shared();
        __syncthreads();

        const ta_tile_kind kind = ta_classify_tile(&p.win, p.i0, p.m, j0, n);
        if (kind != TA_TILE_HIDDEN) {
            /* S = Q K^T: the first k step overwrites the accumulators. */
            float acc_s[1][kNTilesS][4];
#pragma unroll
            for (int nt = 0; nt < kNTilesS; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    acc_s[0][nt][c] = 0.0f;
            ta_wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsQK; ks++)
                ta_wgmma_ss<Element, kBlockN>(acc_s[0], desc_q(ks), desc_k(stage, ks), ks > 0);
            ta_wgmma_commit();
            ta_wgmma_wait<0>();
            ta_wgmma_fence_operands(acc_s[0]);

            const bool mask = kind == TA_TILE_PARTIAL || n < kBlockN;
            if (p.has_mods || mask)
                ta_mask_scores(acc_s, d, p, p.i0 + warp_row0, lane, j0, n, mask);
            ta_online_softmax(acc_s, acc_o, row_max, row_sum, p.score_to_log2);

            /* O += P V. wgmma reads P's registers after it is issued, so all
             * of them stay live (and unchanged) until the wait. */
            unsigned p_frag[Traits::kKStepsPV][4];
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsPV; ks++)
                ta_p_fragment<Element>(acc_s, 0, ks, p_frag[ks]);
            ta_wgmma_fence_operands(acc_o[0]);
            ta_wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsPV; ks++)
                ta_wgmma_rs<Element, kHeadDim>(acc_o[0], p_frag[ks], desc_v(stage, ks));
            ta_wgmma_commit();
            ta_wgmma_wait<0>();
            ta_wgmma_fence_operands(acc_o[0]);
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsPV; ks++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    asm volatile("" : "+r"(p_frag[ks][c])::"memory");
        }
        __syncthreads(); /* the next iteration's prefetch overwrites this stage */
    }

    ta_write_output(d, a, p, h, b, warp_row0, lane, acc_o, row_max, row_sum);
#else
    (void)d, (void)a;
    __trap();
#endif
}

#endif /* TILEATTN_CUDA_FLASH_FWD_WGMMA_KERNEL_CUH */
