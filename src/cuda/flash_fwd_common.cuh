/*
 * What both forward kernels (flash_fwd_mma_kernel.cuh for sm_80 and later,
 * flash_fwd_wgmma_kernel.cuh for Hopper) share: the block's slice of the
 * problem, the score modifications and mask, the online-softmax step and
 * the epilogue. They differ only in how S = Q K^T and O += P V are computed.
 *
 * Both keep S and O in the MMA accumulator layout: a warp owns 16-row
 * tiles, and in each, thread `lane` holds rows lane / 4 and lane / 4 + 8 at
 * columns 8 t + 2 (lane % 4) + {0, 1} of every 8-column tile t (mma.sync's
 * C fragment; wgmma's m64nN accumulator is four of these, one per warp).
 */
#ifndef TILEATTN_CUDA_FLASH_FWD_COMMON_CUH
#define TILEATTN_CUDA_FLASH_FWD_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "desc.h"
#include "mask.h"

#define TA_LOG2E 1.4426950408889634f
#define TA_LN2   0.6931471805599453f

/* ---- Primitives: PTX the kernels need, one instruction each. ---- */

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

/* ---- The block's slice of the problem. ---- */

/* One thread block's query tile: where its rows and its head's K/V live,
 * which keys its rows may see, and how scores become log2 units. */
template <typename Element> struct ta_block_problem {
    int64_t q_start, k_start; /* token offsets of this sequence (varlen) */
    int64_t seqlen_q;
    int64_t i0; /* first query row of the tile, inside the sequence */
    int m;      /* valid rows of the tile (0: nothing to do) */
    ta_window win;
    int64_t first_key, last_key; /* keys any row of the tile may see */
    int num_tiles;               /* key tiles from first_key to last_key */
    const Element *q, *k_head, *v_head;
    bool has_mods;       /* softcap or ALiBi: scores are rescaled per element */
    float score_to_log2; /* multiplies a raw score (or a modified one) into log2 units */
    float slope, inv_softcap;
};

template <typename Element, int kBlockM, int kBlockN>
__device__ __forceinline__ ta_block_problem<Element>
ta_make_block_problem(const ta_desc &d, const tileattn_forward_args &a, int m_block, int h, int b) {
    ta_block_problem<Element> p;
    const int64_t kv_head = h / d.group;
    p.q_start = 0, p.k_start = 0, p.seqlen_q = d.seqlen_q;
    int64_t seqlen_k = d.seqlen_k;
    if (d.varlen) {
        p.q_start = a.cu_seqlens_q[b];
        p.k_start = a.cu_seqlens_k[b];
        p.seqlen_q = a.cu_seqlens_q[b + 1] - p.q_start;
        seqlen_k = a.cu_seqlens_k[b + 1] - p.k_start;
    }
    p.i0 = (int64_t)m_block * kBlockM;
    p.m = p.i0 >= p.seqlen_q ? 0 : (int)(p.seqlen_q - p.i0 < kBlockM ? p.seqlen_q - p.i0 : kBlockM);
    p.win = {d.top_left ? 0 : seqlen_k - p.seqlen_q, d.window_left, d.window_right, seqlen_k};
    p.first_key = ta_first_key(&p.win, p.i0);
    p.last_key = ta_last_key(&p.win, p.i0 + (p.m > 0 ? p.m : 1) - 1);
    p.num_tiles =
        p.m > 0 && p.first_key <= p.last_key ? (int)((p.last_key - p.first_key) / kBlockN + 1) : 0;
    p.q = static_cast<const Element *>(a.q.data) + b * d.q_stride[0] +
          (p.q_start + p.i0) * d.q_stride[1] + h * d.q_stride[2];
    p.k_head = static_cast<const Element *>(a.k.data) + b * d.k_stride[0] +
               p.k_start * d.k_stride[1] + kv_head * d.k_stride[2];
    p.v_head = static_cast<const Element *>(a.v.data) + b * d.v_stride[0] +
               p.k_start * d.v_stride[1] + kv_head * d.v_stride[2];
    /* Softcap and ALiBi work on natural-unit scores, so S is then rescaled
     * once per element; without them scale folds into the exp2's FFMA. */
    p.has_mods = d.softcap > 0.0f || d.has_alibi;
    p.score_to_log2 = p.has_mods ? TA_LOG2E : d.scale * TA_LOG2E;
    p.slope = d.has_alibi ? a.alibi_slopes[b * d.alibi_stride_b + h] : 0.0f;
    p.inv_softcap = d.softcap > 0.0f ? 1.0f / d.softcap : 0.0f;
    return p;
}

/* Valid keys of the key tile starting at j0. */
template <int kBlockN> __device__ __forceinline__ int ta_tile_keys(int64_t last_key, int64_t j0) {
    return (int)(last_key + 1 - j0 < kBlockN ? last_key + 1 - j0 : kBlockN);
}

/* Row state at the start: the sink is one more logit without a value, so
 * start the max at it, with a sum of exp(0) = 1 counted once per row (by
 * the quad's first thread). */
template <int kMTiles, typename Element>
__device__ __forceinline__ void
ta_init_rows(const ta_desc &d, const tileattn_forward_args &a, const ta_block_problem<Element> &p,
             int h, int lane, float (&row_max)[kMTiles][2], float (&row_sum)[kMTiles][2]) {
    const float sink_max = d.has_sinks ? a.sinks[h] * TA_LOG2E / p.score_to_log2 : -INFINITY;
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            row_max[mt][r] = sink_max;
            row_sum[mt][r] = d.has_sinks && lane % 4 == 0 ? 1.0f : 0.0f;
        }
}

/* Sets MMA accumulators (kMTiles x kNTiles tiles of 4 floats) to 0. */
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void ta_zero_accumulators(float (&acc)[kMTiles][kNTiles][4]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTiles; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++)
                acc[mt][nt][c] = 0.0f;
}

/* ---- One key tile's softmax step, on S in registers. ---- */

/* Score modifications and the mask, in the order tileattn.h defines: scale,
 * softcap, ALiBi, then the window. Keys past the tile's n valid ones are
 * masked too. row0 is the sequence row of the warp's first row. */
template <int kMTiles, int kNTilesS, typename Element>
__device__ __forceinline__ void ta_mask_scores(float (&acc_s)[kMTiles][kNTilesS][4],
                                               const ta_desc &d, const ta_block_problem<Element> &p,
                                               int64_t row0, int lane, int64_t j0, int n,
                                               bool mask) {
    const int group_row = lane / 4, pair_col = 2 * (lane % 4);
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int64_t i = row0 + mt * 16 + group_row + 8 * r;
            /* Visible keys of row i, relative to j0 */
            int64_t lo = ta_first_key(&p.win, i) - j0;
            int64_t hi = ta_last_key(&p.win, i) - j0;
            if (hi > n - 1) hi = n - 1;
#pragma unroll
            for (int nt = 0; nt < kNTilesS; nt++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int col = nt * 8 + pair_col + c;
                    float s = acc_s[mt][nt][2 * r + c];
                    if (p.has_mods) {
                        s *= d.scale;
                        if (d.softcap > 0.0f) s = d.softcap * tanhf(s * p.inv_softcap);
                        if (d.has_alibi) {
                            int64_t dist = i + p.win.offset - (j0 + col);
                            s -= p.slope * (float)(dist < 0 ? -dist : dist);
                        }
                    }
                    if (mask && (col < lo || col > hi)) s = -INFINITY;
                    acc_s[mt][nt][2 * r + c] = s;
                }
        }
}

/* Online softmax, the statistics half: the new row max, the old sum
 * rescaled by alpha = exp2(m_old - m_new), and S replaced by
 * P = exp2(S - m_new) (in log2 units). O must be rescaled by the same alpha
 * (ta_rescale_o) before P V is added to it. Row max and sum need only
 * shuffles among the 4 threads that share a row. */
template <int kMTiles, int kNTilesS>
__device__ __forceinline__ void
ta_softmax_update(float (&acc_s)[kMTiles][kNTilesS][4], float (&row_max)[kMTiles][2],
                  float (&row_sum)[kMTiles][2], float score_to_log2, float (&alpha)[kMTiles][2]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float tile_max = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < kNTilesS; nt++)
                tile_max = fmaxf(tile_max, fmaxf(acc_s[mt][nt][2 * r], acc_s[mt][nt][2 * r + 1]));
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
            const float new_max = fmaxf(row_max[mt][r], tile_max);
            /* A row that has seen nothing yet keeps -inf; subtract 0 then,
             * so exp2 gives 0 and never NaN. */
            const float max_log2 = new_max == -INFINITY ? 0.0f : new_max * score_to_log2;
            alpha[mt][r] = ta_exp2(row_max[mt][r] * score_to_log2 - max_log2);
            row_max[mt][r] = new_max;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < kNTilesS; nt++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    float e = ta_exp2(acc_s[mt][nt][2 * r + c] * score_to_log2 - max_log2);
                    acc_s[mt][nt][2 * r + c] = e;
                    sum += e;
                }
            row_sum[mt][r] = row_sum[mt][r] * alpha[mt][r] + sum;
        }
}

/* O *= alpha, row by row. */
template <int kMTiles, int kNTilesO>
__device__ __forceinline__ void ta_rescale_o(float (&acc_o)[kMTiles][kNTilesO][4],
                                             const float (&alpha)[kMTiles][2]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int nt = 0; nt < kNTilesO; nt++) {
            acc_o[mt][nt][0] *= alpha[mt][0];
            acc_o[mt][nt][1] *= alpha[mt][0];
            acc_o[mt][nt][2] *= alpha[mt][1];
            acc_o[mt][nt][3] *= alpha[mt][1];
        }
}

/* P as MMA A fragments (16 x 16 per k step ks): the accumulator layout of
 * the two 8-column tiles 2 ks and 2 ks + 1 is the A layout of one 16 x 16
 * tile, so no shuffles. P is rounded to the input dtype, as FA2 does. */
template <typename Element, int kMTiles, int kNTilesS>
__device__ __forceinline__ void ta_p_fragment(const float (&acc_s)[kMTiles][kNTilesS][4], int mt,
                                              int ks, unsigned (&frag)[4]) {
    frag[0] = ta_pack2<Element>(acc_s[mt][2 * ks][0], acc_s[mt][2 * ks][1]);
    frag[1] = ta_pack2<Element>(acc_s[mt][2 * ks][2], acc_s[mt][2 * ks][3]);
    frag[2] = ta_pack2<Element>(acc_s[mt][2 * ks + 1][0], acc_s[mt][2 * ks + 1][1]);
    frag[3] = ta_pack2<Element>(acc_s[mt][2 * ks + 1][2], acc_s[mt][2 * ks + 1][3]);
}

/* ---- Epilogue ---- */

/* Finishes the row sums across the quad, divides, writes O and LSE.
 * row0_in_tile is the warp's first row inside the block's query tile. */
template <int kMTiles, int kNTilesO, typename Element>
__device__ __forceinline__ void
ta_write_output(const ta_desc &d, const tileattn_forward_args &a,
                const ta_block_problem<Element> &p, int h, int b, int row0_in_tile, int lane,
                const float (&acc_o)[kMTiles][kNTilesO][4], const float (&row_max)[kMTiles][2],
                const float (&row_sum)[kMTiles][2]) {
    const int group_row = lane / 4, pair_col = 2 * (lane % 4);
    const int head_dim = (int)d.head_dim;
    Element *o = static_cast<Element *>(a.o.data) + b * d.o_stride[0] +
                 (p.q_start + p.i0) * d.o_stride[1] + h * d.o_stride[2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float sum = row_sum[mt][r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const int row = row0_in_tile + mt * 16 + group_row + 8 * r;
            if (row >= p.m) continue;
            /* A row that saw no key has nothing to average: O = 0. */
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            Element *o_row = o + row * d.o_stride[1];
#pragma unroll
            for (int nt = 0; nt < kNTilesO; nt++) {
                const int col = nt * 8 + pair_col;
                if (col < head_dim)
                    *reinterpret_cast<unsigned *>(o_row + col) = ta_pack2<Element>(
                        acc_o[mt][nt][2 * r] * inv, acc_o[mt][nt][2 * r + 1] * inv);
            }
            if (a.lse && lane % 4 == 0) {
                const float lse =
                    sum > 0.0f ? row_max[mt][r] * p.score_to_log2 * TA_LN2 + logf(sum) : -INFINITY;
                const int64_t token = p.q_start + p.i0 + row;
                const int64_t lse_off = d.varlen
                                            ? h * (int64_t)a.cu_seqlens_q[d.batch] + token
                                            : ((int64_t)b * d.heads_q + h) * d.seqlen_q + token;
                a.lse[lse_off] = lse;
            }
        }
}

#endif /* TILEATTN_CUDA_FLASH_FWD_COMMON_CUH */
