/*
 * The FlashAttention-2 forward on the GPU, one thread block per (query tile,
 * head, batch entry) - Algorithm 1 of the paper:
 *
 *   load Q_i into shared memory, then into registers (MMA A fragments)
 *   m_i = -inf (or the sink), l_i = 0 (or 1), O_i = 0
 *   for each key tile j the mask does not hide completely (cp.async, two
 *   stages: tile j+1 streams in while tile j is computed):
 *       S  = Q_i K_j^T                    mma.sync m16n8k16, fp32 accumulators
 *       S  = softcap, ALiBi; per-element mask on boundary tiles only
 *       m_new = max(m_i, rowmax S);  P = exp2(S * log2e*scale - m_new * log2e*scale)
 *       l_i = l_i * alpha + rowsum P;  O_i = O_i * alpha   (alpha = exp2(m_i - m_new))
 *       O_i += P V_j                      P rounded to the input dtype, as FA2 does
 *   O_i /= l_i;  LSE_i = m_i * scale + ln l_i
 *
 * Each warp owns kRowsPerWarp query rows for the whole loop: its rows' max
 * and sum need only shuffles among the 4 threads that share a row.
 */
#ifndef TILEATTN_CUDA_FLASH_FWD_MMA_KERNEL_CUH
#define TILEATTN_CUDA_FLASH_FWD_MMA_KERNEL_CUH

#include "flash_fwd_common.cuh"
#include "kernel_traits.cuh"

/* ---- mma.sync and ldmatrix, one instruction each. ---- */

/* Four 8x8 16-bit matrices from shared memory; lane l gives the address of
 * row l % 8 of matrix l / 8. */
__device__ __forceinline__ void ta_ldmatrix_x4(unsigned r[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ta_ldmatrix_x4_trans(unsigned r[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c += a (16x16, row) * b (16x8, col), fp32 accumulators. Not volatile:
 * registers only, so the compiler may schedule it around the loads. */
template <typename Element>
__device__ __forceinline__ void ta_mma_16816(float c[4], const unsigned a[4], unsigned b0,
                                             unsigned b1);
template <>
__device__ __forceinline__ void ta_mma_16816<__nv_bfloat16>(float c[4], const unsigned a[4],
                                                            unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void ta_mma_16816<__half>(float c[4], const unsigned a[4], unsigned b0,
                                                     unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Shared-memory tiles are rows of kHeadDim elements, 16-byte chunk c of
 * row r stored at chunk c ^ (r % 8) (see kernel_traits.cuh). */
template <int kHeadDim> __device__ __forceinline__ int ta_swizzle(int row, int col) {
    return row * kHeadDim + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

/* Byte offsets of the 16-byte chunks 2v + hi (v = 0..3) of a row whose
 * index is row8 modulo 8, after the swizzle. An MMA fragment's ldmatrix
 * reads chunk 2 ks + hi of rows with a fixed row % 8 per lane, so its
 * address is a per-lane base + chunk_bytes[ks % 4] + a compile-time
 * constant: four registers instead of one address per (ks, tile). */
struct ta_chunk_offsets {
    unsigned bytes[4];
};
__device__ __forceinline__ ta_chunk_offsets ta_make_chunk_offsets(int row8, int hi) {
    ta_chunk_offsets c;
#pragma unroll
    for (int v = 0; v < 4; v++)
        c.bytes[v] = (unsigned)(((2 * v + hi) ^ row8) * 16);
    return c;
}
/* Address of chunk pair ks (chunk 2 ks + hi) of a lane's row. */
__device__ __forceinline__ unsigned ta_chunk_addr(unsigned row_addr, const ta_chunk_offsets &c,
                                                  int ks) {
    return row_addr + (unsigned)((ks >> 2) * 128) + c.bytes[ks & 3];
}

/* Streams rows [0, kRows) of a [rows, head_dim] tile into shared memory,
 * zero-filling rows >= valid_rows and columns >= head_dim (a multiple of 8).
 * Thread t copies column chunk t % kChunksPerRow of rows t / kChunksPerRow
 * + it * kRowStep: one source pointer, stepped, and a fixed swizzle. */
template <typename Traits, int kRows>
__device__ __forceinline__ void ta_load_tile(typename Traits::Element *smem,
                                             const typename Traits::Element *gmem,
                                             int64_t row_stride, int valid_rows, int head_dim) {
    constexpr int kRowStep = Traits::kNThreads / Traits::kChunksPerRow;
    static_assert(Traits::kNThreads % Traits::kChunksPerRow == 0, "whole rows per step");
    static_assert(kRows % kRowStep == 0, "every thread copies the same count");
    const int row0 = (int)threadIdx.x / Traits::kChunksPerRow;
    const int col = ((int)threadIdx.x % Traits::kChunksPerRow) * 8;
    const bool col_valid = col < head_dim;
    const typename Traits::Element *src = gmem + row0 * row_stride + col;
    const int64_t src_step = kRowStep * row_stride;
#pragma unroll
    for (int it = 0; it < kRows / kRowStep; it++) {
        const int row = row0 + it * kRowStep;
        const bool valid = col_valid && row < valid_rows;
        ta_cp_async_16(smem + ta_swizzle<Traits::kHeadDim>(row, col), valid ? src : gmem, valid);
        src += src_step;
    }
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads)
    ta_cuda_fwd_mma_kernel(const ta_desc d, const tileattn_forward_args a) {
    using Element = typename Traits::Element;
    constexpr int kHeadDim = Traits::kHeadDim, kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN,
                  kMTiles = Traits::kMTiles;

    extern __shared__ __align__(128) unsigned char ta_smem[];
    Element *s_q = reinterpret_cast<Element *>(ta_smem);
    Element *s_k = s_q + Traits::kSmemQElems;                    /* [kStages][kBlockN][D] */
    Element *s_v = s_k + Traits::kStages * Traits::kSmemKVElems; /* [kStages][kBlockN][D] */

    /* Longest query tiles first: with a causal mask they see the most keys
     * and the short ones fill the tail (FlashAttention-2's ordering). */
    const int h = (int)blockIdx.y, b = (int)blockIdx.z;
    const ta_block_problem<Element> p = ta_make_block_problem<Element, kBlockM, kBlockN>(
        d, a, (int)(gridDim.x - 1 - blockIdx.x), h, b);
    if (p.m == 0) return; /* a short sequence of a varlen batch */
    const int head_dim = (int)d.head_dim;

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int lm_row = lane % 8, lm_matrix = lane / 8; /* ldmatrix address coordinates */
    const int warp_row0 = warp * Traits::kRowsPerWarp;

    /* ldmatrix addresses: a per-lane row plus chunk offsets (ta_chunk_offsets).
     * Q and V fragments take chunk 2 ks + (matrix / 2), K fragments chunk
     * 2 ks + (matrix % 2); the lane's row % 8 is lm_row in all three. */
    constexpr unsigned kRowBytes = kHeadDim * 2;
    constexpr unsigned kStageBytes = Traits::kSmemKVElems * 2;
    const ta_chunk_offsets chunks_qv = ta_make_chunk_offsets(lm_row, lm_matrix >> 1);
    const ta_chunk_offsets chunks_k = ta_make_chunk_offsets(lm_row, lm_matrix & 1);
    const unsigned q_row_addr = (unsigned)__cvta_generic_to_shared(s_q) +
                                (unsigned)(warp_row0 + lm_row + (lm_matrix & 1) * 8) * kRowBytes;
    const unsigned k_row_addr = (unsigned)__cvta_generic_to_shared(s_k) +
                                (unsigned)(lm_row + (lm_matrix >> 1) * 8) * kRowBytes;
    const unsigned v_row_addr = (unsigned)__cvta_generic_to_shared(s_v) +
                                (unsigned)(lm_row + (lm_matrix & 1) * 8) * kRowBytes;

    /* Row state: rows lane / 4 and lane / 4 + 8 of each MMA tile. */
    float row_max[kMTiles][2], row_sum[kMTiles][2];
    ta_init_rows(d, a, p, h, lane, row_max, row_sum);
    float acc_o[kMTiles][Traits::kNTilesO][4];
    ta_zero_accumulators(acc_o);

    /* The K and V tile of keys j .. j + kBlockN - 1 into one stage. */
    auto load_kv = [&](int stage, int64_t j) {
        const int n = ta_tile_keys<kBlockN>(p.last_key, j);
        ta_load_tile<Traits, kBlockN>(s_k + stage * Traits::kSmemKVElems,
                                      p.k_head + j * d.k_stride[1], d.k_stride[1], n, head_dim);
        ta_load_tile<Traits, kBlockN>(s_v + stage * Traits::kSmemKVElems,
                                      p.v_head + j * d.v_stride[1], d.v_stride[1], n, head_dim);
    };
    if (p.num_tiles > 0) { /* a block whose rows see no key only writes zeros */
        ta_load_tile<Traits, kBlockM>(s_q, p.q, d.q_stride[1], p.m, head_dim);
        load_kv(0, p.first_key);
    }
    ta_cp_async_commit();

    unsigned q_frag[kMTiles][Traits::kKStepsQK][4];
    for (int tile = 0; tile < p.num_tiles; tile++) {
        const int64_t j0 = p.first_key + (int64_t)tile * kBlockN;
        const int n = ta_tile_keys<kBlockN>(p.last_key, j0);
        const int stage = tile & 1;

        /* Prefetch the next K/V tile into the other stage, then wait for
         * this one (and for Q, committed with the first tile). */
        if (tile + 1 < p.num_tiles) load_kv(stage ^ 1, j0 + kBlockN);
        ta_cp_async_commit();
        ta_cp_async_wait<1>();
        __syncthreads();

        if (Traits::kQInRegs && tile == 0) { /* Q stays in registers for the whole loop */
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
                for (int ks = 0; ks < Traits::kKStepsQK; ks++)
                    ta_ldmatrix_x4(q_frag[mt][ks],
                                   ta_chunk_addr(q_row_addr + mt * 16 * kRowBytes, chunks_qv, ks));
        }

        const ta_tile_kind kind = ta_classify_tile(&p.win, p.i0, p.m, j0, n);
        if (kind != TA_TILE_HIDDEN) {
            const unsigned k_tile_addr = k_row_addr + stage * kStageBytes;
            const unsigned v_tile_addr = v_row_addr + stage * kStageBytes;

            /* S = Q K^T. Padded head dimensions (zeros) are skipped. */
            float acc_s[kMTiles][Traits::kNTilesS][4];
            ta_zero_accumulators(acc_s);
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsQK; ks++) {
                if (ks * 16 >= head_dim) break;
                if (!Traits::kQInRegs) /* this k step's Q fragments, from shared memory */
#pragma unroll
                    for (int mt = 0; mt < kMTiles; mt++)
                        ta_ldmatrix_x4(
                            q_frag[mt][ks],
                            ta_chunk_addr(q_row_addr + mt * 16 * kRowBytes, chunks_qv, ks));
#pragma unroll
                for (int np = 0; np < Traits::kNTilesS / 2; np++) {
                    unsigned kf[4]; /* b0, b1 of key tiles 2np and 2np + 1 */
                    ta_ldmatrix_x4(kf,
                                   ta_chunk_addr(k_tile_addr + np * 16 * kRowBytes, chunks_k, ks));
#pragma unroll
                    for (int mt = 0; mt < kMTiles; mt++) {
                        ta_mma_16816<Element>(acc_s[mt][2 * np], q_frag[mt][ks], kf[0], kf[1]);
                        ta_mma_16816<Element>(acc_s[mt][2 * np + 1], q_frag[mt][ks], kf[2], kf[3]);
                    }
                }
            }

            const bool mask = kind == TA_TILE_PARTIAL || n < kBlockN;
            if (p.has_mods || mask)
                ta_mask_scores(acc_s, d, p, p.i0 + warp_row0, lane, j0, n, mask);
            float alpha[kMTiles][2];
            ta_softmax_update(acc_s, row_max, row_sum, p.score_to_log2, alpha);
            ta_rescale_o(acc_o, alpha);

            /* O += P V */
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsPV; ks++) {
                unsigned p_frag[kMTiles][4];
#pragma unroll
                for (int mt = 0; mt < kMTiles; mt++)
                    ta_p_fragment<Element>(acc_s, mt, ks, p_frag[mt]);
#pragma unroll
                for (int np = 0; np < Traits::kNTilesO / 2; np++) {
                    if (np * 16 >= head_dim) break;
                    unsigned vf[4]; /* b0, b1 of output column tiles 2np and 2np + 1 */
                    ta_ldmatrix_x4_trans(
                        vf, ta_chunk_addr(v_tile_addr + ks * 16 * kRowBytes, chunks_qv, np));
#pragma unroll
                    for (int mt = 0; mt < kMTiles; mt++) {
                        ta_mma_16816<Element>(acc_o[mt][2 * np], p_frag[mt], vf[0], vf[1]);
                        ta_mma_16816<Element>(acc_o[mt][2 * np + 1], p_frag[mt], vf[2], vf[3]);
                    }
                }
            }
        }
        __syncthreads(); /* the next iteration's prefetch overwrites this stage */
    }

    ta_write_output(d, a, p, h, b, warp_row0, lane, acc_o, row_max, row_sum);
}

#endif /* TILEATTN_CUDA_FLASH_FWD_MMA_KERNEL_CUH */
