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
#ifndef TILEATTN_CUDA_FLASH_FWD_KERNEL_CUH
#define TILEATTN_CUDA_FLASH_FWD_KERNEL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "desc.h"
#include "kernel_traits.cuh"
#include "mask.h"

#define TA_LOG2E 1.4426950408889634f
#define TA_LN2   0.6931471805599453f

/* ---- Primitives: PTX the kernel needs, one instruction each. ---- */

/* 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes zeros
 * (rows past the sequence end, padded head dimensions). */
__device__ __forceinline__ void ta_cp_async_16(void *smem, const void *gmem, bool valid) {
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
                 "r"(src_bytes));
}
__device__ __forceinline__ void ta_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int kPending> __device__ __forceinline__ void ta_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

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

/* Two floats -> one register of two 16-bit values (low = first). */
template <typename Element> __device__ __forceinline__ unsigned ta_pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned ta_pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}
template <> __device__ __forceinline__ unsigned ta_pack2<__half>(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}

/* 2^x with the hardware's approximation (relative error ~2^-22; 2^-inf = 0). */
__device__ __forceinline__ float ta_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
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
    ta_cuda_fwd_kernel(const ta_desc d, const tileattn_forward_args a) {
    using Element = typename Traits::Element;
    constexpr int kHeadDim = Traits::kHeadDim, kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN,
                  kMTiles = Traits::kMTiles;

    extern __shared__ __align__(128) unsigned char ta_smem[];
    Element *s_q = reinterpret_cast<Element *>(ta_smem);
    Element *s_k = s_q + Traits::kSmemQElems;                    /* [kStages][kBlockN][D] */
    Element *s_v = s_k + Traits::kStages * Traits::kSmemKVElems; /* [kStages][kBlockN][D] */

    /* Longest query tiles first: with a causal mask they see the most keys
     * and the short ones fill the tail (FlashAttention-2's ordering). */
    const int m_block = (int)(gridDim.x - 1 - blockIdx.x);
    const int h = (int)blockIdx.y, b = (int)blockIdx.z;
    const int64_t kv_head = h / d.group;

    int64_t q_start = 0, k_start = 0, seqlen_q = d.seqlen_q, seqlen_k = d.seqlen_k;
    if (d.varlen) {
        q_start = a.cu_seqlens_q[b];
        k_start = a.cu_seqlens_k[b];
        seqlen_q = a.cu_seqlens_q[b + 1] - q_start;
        seqlen_k = a.cu_seqlens_k[b + 1] - k_start;
    }
    const int64_t i0 = (int64_t)m_block * kBlockM;
    if (i0 >= seqlen_q) return; /* a short sequence of a varlen batch */
    const int m = (int)(seqlen_q - i0 < kBlockM ? seqlen_q - i0 : kBlockM);
    const int head_dim = (int)d.head_dim;

    const ta_window win = {d.top_left ? 0 : seqlen_k - seqlen_q, d.window_left, d.window_right,
                           seqlen_k};
    const int64_t first_key = ta_first_key(&win, i0);
    const int64_t last_key = ta_last_key(&win, i0 + m - 1);
    const int num_tiles = first_key <= last_key ? (int)((last_key - first_key) / kBlockN + 1) : 0;

    const Element *q = static_cast<const Element *>(a.q.data) + b * d.q_stride[0] +
                       (q_start + i0) * d.q_stride[1] + h * d.q_stride[2];
    const Element *k_head = static_cast<const Element *>(a.k.data) + b * d.k_stride[0] +
                            k_start * d.k_stride[1] + kv_head * d.k_stride[2];
    const Element *v_head = static_cast<const Element *>(a.v.data) + b * d.v_stride[0] +
                            k_start * d.v_stride[1] + kv_head * d.v_stride[2];

    /* Softcap and ALiBi work on natural-unit scores, so S is then rescaled
     * once per element; without them scale folds into the exp2's FFMA. */
    const bool has_mods = d.softcap > 0.0f || d.has_alibi;
    const float score_to_log2 = has_mods ? TA_LOG2E : d.scale * TA_LOG2E;
    const float slope = d.has_alibi ? a.alibi_slopes[b * d.alibi_stride_b + h] : 0.0f;
    const float inv_softcap = d.softcap > 0.0f ? 1.0f / d.softcap : 0.0f;

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int group_row = lane / 4, pair_col = 2 * (lane % 4); /* MMA fragment coordinates */
    const int lm_row = lane % 8, lm_matrix = lane / 8;         /* ldmatrix address coordinates */
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

    /* Row state: rows group_row and group_row + 8 of each MMA tile. The sink
     * is one more logit without a value: start the max at it, with a sum of
     * exp(0) = 1 counted once per row (by the quad's first thread). */
    float row_max[kMTiles][2], row_sum[kMTiles][2];
    const float sink_max = d.has_sinks ? a.sinks[h] * TA_LOG2E / score_to_log2 : -INFINITY;
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            row_max[mt][r] = sink_max;
            row_sum[mt][r] = d.has_sinks && lane % 4 == 0 ? 1.0f : 0.0f;
        }
    float acc_o[kMTiles][Traits::kNTilesO][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < Traits::kNTilesO; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++)
                acc_o[mt][nt][c] = 0.0f;

    if (num_tiles > 0) { /* a block whose rows see no key only writes zeros */
        ta_load_tile<Traits, kBlockM>(s_q, q, d.q_stride[1], m, head_dim);
        int n0 = (int)(last_key + 1 - first_key < kBlockN ? last_key + 1 - first_key : kBlockN);
        ta_load_tile<Traits, kBlockN>(s_k, k_head + first_key * d.k_stride[1], d.k_stride[1], n0,
                                      head_dim);
        ta_load_tile<Traits, kBlockN>(s_v, v_head + first_key * d.v_stride[1], d.v_stride[1], n0,
                                      head_dim);
    }
    ta_cp_async_commit();

    unsigned q_frag[kMTiles][Traits::kKStepsQK][4];
    for (int tile = 0; tile < num_tiles; tile++) {
        const int64_t j0 = first_key + (int64_t)tile * kBlockN;
        const int n = (int)(last_key + 1 - j0 < kBlockN ? last_key + 1 - j0 : kBlockN);
        const int stage = tile & 1;

        /* Prefetch the next K/V tile into the other stage, then wait for
         * this one (and for Q, committed with the first tile). */
        if (tile + 1 < num_tiles) {
            int64_t j1 = j0 + kBlockN;
            int n1 = (int)(last_key + 1 - j1 < kBlockN ? last_key + 1 - j1 : kBlockN);
            ta_load_tile<Traits, kBlockN>(s_k + (stage ^ 1) * Traits::kSmemKVElems,
                                          k_head + j1 * d.k_stride[1], d.k_stride[1], n1, head_dim);
            ta_load_tile<Traits, kBlockN>(s_v + (stage ^ 1) * Traits::kSmemKVElems,
                                          v_head + j1 * d.v_stride[1], d.v_stride[1], n1, head_dim);
        }
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

        const ta_tile_kind kind = ta_classify_tile(&win, i0, m, j0, n);
        if (kind != TA_TILE_HIDDEN) {
            const unsigned k_tile_addr = k_row_addr + stage * kStageBytes;
            const unsigned v_tile_addr = v_row_addr + stage * kStageBytes;

            /* S = Q K^T. Padded head dimensions (zeros) are skipped. */
            float acc_s[kMTiles][Traits::kNTilesS][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
                for (int nt = 0; nt < Traits::kNTilesS; nt++)
#pragma unroll
                    for (int c = 0; c < 4; c++)
                        acc_s[mt][nt][c] = 0.0f;
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

            /* Score modifications and the mask, in the order tileattn.h
             * defines: scale, softcap, ALiBi, then the window. Keys past the
             * tile's valid count are masked too. */
            const bool mask = kind == TA_TILE_PARTIAL || n < kBlockN;
            if (has_mods || mask) {
#pragma unroll
                for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        const int64_t i = i0 + warp_row0 + mt * 16 + group_row + 8 * r;
                        /* Visible keys of row i, relative to j0 */
                        int64_t lo = ta_first_key(&win, i) - j0;
                        int64_t hi = ta_last_key(&win, i) - j0;
                        if (hi > n - 1) hi = n - 1;
#pragma unroll
                        for (int nt = 0; nt < Traits::kNTilesS; nt++)
#pragma unroll
                            for (int c = 0; c < 2; c++) {
                                const int col = nt * 8 + pair_col + c;
                                float s = acc_s[mt][nt][2 * r + c];
                                if (has_mods) {
                                    s *= d.scale;
                                    if (d.softcap > 0.0f) s = d.softcap * tanhf(s * inv_softcap);
                                    if (d.has_alibi) {
                                        int64_t dist = i + win.offset - (j0 + col);
                                        s -= slope * (float)(dist < 0 ? -dist : dist);
                                    }
                                }
                                if (mask && (col < lo || col > hi)) s = -INFINITY;
                                acc_s[mt][nt][2 * r + c] = s;
                            }
                    }
            }

            /* Online softmax: new row max, rescale the old sum and O, P = exp2. */
#pragma unroll
            for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float tile_max = -INFINITY;
#pragma unroll
                    for (int nt = 0; nt < Traits::kNTilesS; nt++)
                        tile_max =
                            fmaxf(tile_max, fmaxf(acc_s[mt][nt][2 * r], acc_s[mt][nt][2 * r + 1]));
                    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
                    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
                    const float new_max = fmaxf(row_max[mt][r], tile_max);
                    /* A row that has seen nothing yet keeps -inf; subtract 0
                     * then, so exp2 gives 0 and never NaN. */
                    const float max_log2 = new_max == -INFINITY ? 0.0f : new_max * score_to_log2;
                    const float alpha = ta_exp2(row_max[mt][r] * score_to_log2 - max_log2);
                    row_max[mt][r] = new_max;
                    float sum = 0.0f;
#pragma unroll
                    for (int nt = 0; nt < Traits::kNTilesS; nt++)
#pragma unroll
                        for (int c = 0; c < 2; c++) {
                            float p = ta_exp2(acc_s[mt][nt][2 * r + c] * score_to_log2 - max_log2);
                            acc_s[mt][nt][2 * r + c] = p;
                            sum += p;
                        }
                    row_sum[mt][r] = row_sum[mt][r] * alpha + sum;
#pragma unroll
                    for (int nt = 0; nt < Traits::kNTilesO; nt++) {
                        acc_o[mt][nt][2 * r] *= alpha;
                        acc_o[mt][nt][2 * r + 1] *= alpha;
                    }
                }

                /* O += P V. The S accumulator layout of two adjacent 16x8 tiles
                 * is the A fragment layout of one 16x16 tile: no shuffles. */
#pragma unroll
            for (int ks = 0; ks < Traits::kKStepsPV; ks++) {
                unsigned p_frag[kMTiles][4];
#pragma unroll
                for (int mt = 0; mt < kMTiles; mt++) {
                    p_frag[mt][0] = ta_pack2<Element>(acc_s[mt][2 * ks][0], acc_s[mt][2 * ks][1]);
                    p_frag[mt][1] = ta_pack2<Element>(acc_s[mt][2 * ks][2], acc_s[mt][2 * ks][3]);
                    p_frag[mt][2] =
                        ta_pack2<Element>(acc_s[mt][2 * ks + 1][0], acc_s[mt][2 * ks + 1][1]);
                    p_frag[mt][3] =
                        ta_pack2<Element>(acc_s[mt][2 * ks + 1][2], acc_s[mt][2 * ks + 1][3]);
                }
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

    /* Epilogue: finish the row sums across the quad, divide, write O and LSE. */
    Element *o = static_cast<Element *>(a.o.data) + b * d.o_stride[0] +
                 (q_start + i0) * d.o_stride[1] + h * d.o_stride[2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float sum = row_sum[mt][r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const int row = warp_row0 + mt * 16 + group_row + 8 * r;
            if (row >= m) continue;
            /* A row that saw no key has nothing to average: O = 0. */
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            Element *o_row = o + row * d.o_stride[1];
#pragma unroll
            for (int nt = 0; nt < Traits::kNTilesO; nt++) {
                const int col = nt * 8 + pair_col;
                if (col < head_dim)
                    *reinterpret_cast<unsigned *>(o_row + col) = ta_pack2<Element>(
                        acc_o[mt][nt][2 * r] * inv, acc_o[mt][nt][2 * r + 1] * inv);
            }
            if (a.lse && lane % 4 == 0) {
                const float lse =
                    sum > 0.0f ? row_max[mt][r] * score_to_log2 * TA_LN2 + logf(sum) : -INFINITY;
                const int64_t token = q_start + i0 + row;
                const int64_t lse_off = d.varlen
                                            ? h * (int64_t)a.cu_seqlens_q[d.batch] + token
                                            : ((int64_t)b * d.heads_q + h) * d.seqlen_q + token;
                a.lse[lse_off] = lse;
            }
        }
}

#endif /* TILEATTN_CUDA_FLASH_FWD_KERNEL_CUH */
