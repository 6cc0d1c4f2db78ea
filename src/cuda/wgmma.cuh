/*
 * Hopper's warpgroup matrix multiply (wgmma, sm_90a), the pieces the
 * forward kernel needs, as PTX.
 *
 * A warpgroup (4 consecutive warps) multiplies a 64 x 16 A by a 16 x N B
 * into a 64 x N float32 accumulator that its 128 threads hold in registers,
 * warp w rows 16 w .. 16 w + 15, in mma.sync's C layout per 8 columns. B,
 * and A when it is not in registers, are read from shared memory through a
 * 64-bit matrix descriptor. The instruction is asynchronous: issue, commit
 * the group, and wait before the accumulators are read.
 *
 * Shared-memory layout ("128-byte swizzle"): a tile is stored as blocks of
 * 64 columns (128 bytes of 16-bit values); inside a block, row r is 128
 * contiguous bytes whose 16-byte chunk c sits at chunk c ^ (r % 8), and
 * every 8 rows make one 1024-byte atom. Each block starts 1024-byte
 * aligned. The same bytes serve both operand kinds:
 *   K-major (Q and K: the reduction dimension, head_dim, is contiguous):
 *     8-row groups 1024 bytes apart (SBO); a k step of 16 columns is 32
 *     bytes further inside the row, the next 64 columns the next block.
 *   MN-major (V in P V: the output dimension, head_dim, is contiguous;
 *     the reduction runs over rows): 64-column blocks LBO bytes apart,
 *     8-row groups 1024 bytes apart (SBO); a k step of 16 rows is 2048
 *     bytes further.
 * The hardware applies the XOR itself from the address bits, which is why
 * a descriptor may start 32 bytes into a row.
 */
#ifndef TILEATTN_CUDA_WGMMA_CUH
#define TILEATTN_CUDA_WGMMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* wgmma exists only in sm_90a code; other targets compile the kernels to a
 * trap, and the planner never launches them there. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TA_WGMMA_ENABLED 1
#else
#define TA_WGMMA_ENABLED 0
#endif

/* Descriptor of a 128-byte-swizzled operand starting at shared address
 * addr; offsets in bytes (the descriptor keeps them in 16-byte units). */
__device__ __forceinline__ uint64_t ta_wgmma_desc(unsigned addr, unsigned lbo, unsigned sbo) {
    uint64_t desc = (uint64_t)((addr & 0x3FFFFu) >> 4);
    desc |= (uint64_t)((lbo >> 4) & 0x3FFFu) << 16;
    desc |= (uint64_t)((sbo >> 4) & 0x3FFFu) << 32;
    desc |= (uint64_t)1 << 62; /* layout type 1: 128-byte swizzle */
    return desc;
}

/* Orders this thread's register accesses before the next wgmma (needed
 * before the first wgmma that reads registers written by other code). */
__device__ __forceinline__ void ta_wgmma_fence() {
#if TA_WGMMA_ENABLED
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void ta_wgmma_commit() {
#if TA_WGMMA_ENABLED
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
/* Waits until at most kPending committed groups are still running. */
template <int kPending> __device__ __forceinline__ void ta_wgmma_wait() {
#if TA_WGMMA_ENABLED
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

/* Shared memory written by ordinary stores (cp.async included) that wgmma
 * reads next: each writing thread fences before the barrier. */
__device__ __forceinline__ void ta_fence_async_shared() {
#if TA_WGMMA_ENABLED
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/* Tells the compiler that the accumulators change here: reads of them
 * after a wait cannot move above it, writes before an issue cannot move
 * below it (the wgmma statement itself does not say when it writes). */
template <int kNTiles>
__device__ __forceinline__ void ta_wgmma_fence_operands(float (&acc)[kNTiles][4]) {
#pragma unroll
    for (int t = 0; t < kNTiles; t++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            asm volatile("" : "+f"(acc[t][c])::"memory");
}

/* The same for A fragments in registers (P in O += P V): wgmma reads them
 * after it is issued, so they must stay live and unchanged until the wait. */
template <int kNFrags>
__device__ __forceinline__ void ta_wgmma_fence_operands(unsigned (&frag)[kNFrags][4]) {
#pragma unroll
    for (int f = 0; f < kNFrags; f++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            asm volatile("" : "+r"(frag[f][c])::"memory");
}

/* The accumulator operands, 4 per 8-column tile. */
#define TA_ACC4(d, t) "+f"(d[t][0]), "+f"(d[t][1]), "+f"(d[t][2]), "+f"(d[t][3])
#define TA_ACC_N64(d)                                                                              \
    TA_ACC4(d, 0), TA_ACC4(d, 1), TA_ACC4(d, 2), TA_ACC4(d, 3), TA_ACC4(d, 4), TA_ACC4(d, 5),      \
        TA_ACC4(d, 6), TA_ACC4(d, 7)
#define TA_ACC_N128(d)                                                                             \
    TA_ACC_N64(d), TA_ACC4(d, 8), TA_ACC4(d, 9), TA_ACC4(d, 10), TA_ACC4(d, 11), TA_ACC4(d, 12),   \
        TA_ACC4(d, 13), TA_ACC4(d, 14), TA_ACC4(d, 15)
#define TA_REGS_N64                                                                                \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "  \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define TA_REGS_N128                                                                               \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "  \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "   \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "   \
    "%56, %57, %58, %59, %60, %61, %62, %63}"

/* d (64 x N) = A B (+ d when accumulate), A and B both K-major in shared
 * memory (S = Q K^T). */
template <typename Element, int kN>
__device__ __forceinline__ void ta_wgmma_ss(float (&d)[kN / 8][4], uint64_t desc_a, uint64_t desc_b,
                                            int accumulate);

/* d (64 x N) += A B, A from registers (mma.sync's A fragment layout per
 * warp), B MN-major in shared memory (O += P V). */
template <typename Element, int kN>
__device__ __forceinline__ void ta_wgmma_rs(float (&d)[kN / 8][4], const unsigned (&a)[4],
                                            uint64_t desc_b);

/* The extra operands follow the accumulators: %64.. after 64 of them
 * (N = 128), %32.. after 32 (N = 64). scale-d is a predicate: 0 makes the
 * instruction overwrite d instead of adding to it. */
#if TA_WGMMA_ENABLED
#define TA_WGMMA_SS(N, TYPE, REGS, ACC, DA, DB, SCALE_D)                                           \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SCALE_D ", 0;\n"                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", " DA  \
                 ", " DB ", p, 1, 1, 0, 0;\n}\n"                                                   \
                 : ACC                                                                             \
                 : "l"(desc_a), "l"(desc_b), "r"(accumulate))
#define TA_WGMMA_RS(N, TYPE, REGS, ACC, A0, A1, A2, A3, DB, SCALE_D)                               \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SCALE_D ", 0;\n"                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", {" A0 \
                 ", " A1 ", " A2 ", " A3 "}, " DB ", p, 1, 1, 1;\n}\n"                             \
                 : ACC                                                                             \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))
#else
#define TA_WGMMA_SS(...) __trap()
#define TA_WGMMA_RS(...) __trap()
#endif

/* The four instructions (S as m64n128 or m64n64, O as m64n128 or m64n64)
 * for one 16-bit input type, TYPE its PTX name. */
#define TA_WGMMA_FOR(Element, TYPE)                                                                \
    template <>                                                                                    \
    __device__ __forceinline__ void ta_wgmma_ss<Element, 128>(float(&d)[16][4], uint64_t desc_a,   \
                                                              uint64_t desc_b, int accumulate) {   \
        TA_WGMMA_SS(128, TYPE, TA_REGS_N128, TA_ACC_N128(d), "%64", "%65", "%66");                 \
    }                                                                                              \
    template <>                                                                                    \
    __device__ __forceinline__ void ta_wgmma_ss<Element, 64>(float(&d)[8][4], uint64_t desc_a,     \
                                                             uint64_t desc_b, int accumulate) {    \
        TA_WGMMA_SS(64, TYPE, TA_REGS_N64, TA_ACC_N64(d), "%32", "%33", "%34");                    \
    }                                                                                              \
    template <>                                                                                    \
    __device__ __forceinline__ void ta_wgmma_rs<Element, 128>(                                     \
        float(&d)[16][4], const unsigned(&a)[4], uint64_t desc_b) {                                \
        TA_WGMMA_RS(128, TYPE, TA_REGS_N128, TA_ACC_N128(d), "%64", "%65", "%66", "%67", "%68",    \
                    "%69");                                                                        \
    }                                                                                              \
    template <>                                                                                    \
    __device__ __forceinline__ void ta_wgmma_rs<Element, 64>(                                      \
        float(&d)[8][4], const unsigned(&a)[4], uint64_t desc_b) {                                 \
        TA_WGMMA_RS(64, TYPE, TA_REGS_N64, TA_ACC_N64(d), "%32", "%33", "%34", "%35", "%36",       \
                    "%37");                                                                        \
    }
TA_WGMMA_FOR(__nv_bfloat16, "bf16")
TA_WGMMA_FOR(__half, "f16")

#undef TA_WGMMA_FOR
#undef TA_WGMMA_SS
#undef TA_WGMMA_RS
#undef TA_ACC4
#undef TA_ACC_N64
#undef TA_ACC_N128
#undef TA_REGS_N64
#undef TA_REGS_N128

#endif /* TILEATTN_CUDA_WGMMA_CUH */
