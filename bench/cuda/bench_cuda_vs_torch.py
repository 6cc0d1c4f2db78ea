#!/usr/bin/env python3
"""tileattn's CUDA forward against PyTorch's flash and cuDNN attention, in one process.

Shapes are the FlashAttention-2 paper's: bfloat16, batch x seqlen = 16k tokens,
hidden 2048 (H = 2048 / D), D = 64 and 128, seqlen 512 ... 16k, causal and not.
Each kernel is timed with CUDA events, median of --repeats runs after --warmup
runs; FLOPs are 4 B H S^2 D, halved for causal. tileattn's output is checked
against PyTorch's (max abs error) before it is timed.

    python3 bench/cuda/bench_cuda_vs_torch.py --lib build-gpu/src/cuda/libtileattn_cuda.so
"""
import argparse
import ctypes
import os
import re
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

TILEATTN_BF16 = 2
TILEATTN_CAUSAL_NONE, TILEATTN_CAUSAL_TOP_LEFT = 0, 2


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("stride_b", ctypes.c_int64),
                ("stride_s", ctypes.c_int64), ("stride_h", ctypes.c_int64)]


class ForwardArgs(ctypes.Structure):
    """Mirror of tileattn_forward_args (include/tileattn.h), field for field."""
    _fields_ = [
        ("batch", ctypes.c_int64), ("seqlen_q", ctypes.c_int64), ("seqlen_k", ctypes.c_int64),
        ("heads_q", ctypes.c_int64), ("heads_kv", ctypes.c_int64), ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64), ("dtype", ctypes.c_int),
        ("q", Tensor), ("k", Tensor), ("v", Tensor), ("o", Tensor),
        ("lse", ctypes.c_void_p),
        ("scale", ctypes.c_float), ("causal", ctypes.c_int),
        ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("alibi_slopes", ctypes.c_void_p), ("alibi_stride_b", ctypes.c_int64),
        ("bias_kind", ctypes.c_int), ("bias", ctypes.c_void_p), ("bias_dtype", ctypes.c_int),
        ("bias_stride_b", ctypes.c_int64), ("bias_stride_h", ctypes.c_int64),
        ("bias_stride_q", ctypes.c_int64),
        ("sinks", ctypes.c_void_p), ("cu_seqlens_q", ctypes.c_void_p),
        ("cu_seqlens_k", ctypes.c_void_p), ("num_threads", ctypes.c_int),
    ]


def tensor_of(t):
    """A [B, S, H, D] torch tensor as a tileattn tensor (strides in elements)."""
    return Tensor(t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


def time_ms(fn, warmup, repeats, inner):
    """Median time of one call; each sample times `inner` back-to-back calls so
    that host-side launch overhead hides behind queued kernels."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", default="build-gpu/src/cuda/libtileattn_cuda.so")
    parser.add_argument("--dims", default="64,128")
    parser.add_argument("--seqlens", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--tokens", type=int, default=16384, help="batch x seqlen")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--causal", choices=("both", "yes", "no"), default="both")
    parser.add_argument("--tiles", default="", help="comma-separated TILEATTN_CUDA_TILES values to compare ('default': the planner's)")
    opts = parser.parse_args()

    lib = ctypes.CDLL(os.path.abspath(opts.lib))
    lib.tileattn_cuda_forward.argtypes = [ctypes.POINTER(ForwardArgs), ctypes.c_void_p]
    lib.tileattn_cuda_forward.restype = ctypes.c_int
    lib.tileattn_cuda_last_error_string.restype = ctypes.c_char_p
    lib.tileattn_cuda_describe_plan.argtypes = [ctypes.POINTER(ForwardArgs), ctypes.c_char_p,
                                                ctypes.c_size_t]
    if not lib.tileattn_cuda_available():
        sys.exit("no usable CUDA device: " + lib.tileattn_cuda_last_error_string().decode())
    dev = torch.cuda.get_device_properties(0)
    print(f"# {dev.name}, {dev.multi_processor_count} SMs, torch {torch.__version__}")

    tile_choices = [t for t in opts.tiles.split(",") if t] or [""]
    header = (f"{'D':>4} {'causal':>6} {'seqlen':>6} {'batch':>5} {'tiles':>16} "
              f"{'tileattn':>9} {'flash':>7} {'cudnn':>7} {'vs flash':>8} {'vs cudnn':>8} "
              f"{'max err':>8}")
    print("TFLOP/s (median of %d after %d warm-up runs)" % (opts.repeats, opts.warmup))
    print(header)
    rows = []
    torch.manual_seed(0)
    for d in [int(x) for x in opts.dims.split(",")]:
        for causal in {"both": (False, True), "yes": (True,), "no": (False,)}[opts.causal]:
            for s in [int(x) for x in opts.seqlens.split(",")]:
                b, h = max(1, opts.tokens // s), opts.hidden // d
                q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16)
                           for _ in range(3))
                o = torch.empty_like(q)
                lse = torch.empty(b, h, s, device="cuda", dtype=torch.float32)
                a = ForwardArgs()
                a.batch, a.seqlen_q, a.seqlen_k, a.heads_q, a.heads_kv = b, s, s, h, h
                a.head_dim, a.dtype = d, TILEATTN_BF16
                a.q, a.k, a.v, a.o = tensor_of(q), tensor_of(k), tensor_of(v), tensor_of(o)
                a.lse = lse.data_ptr()
                a.causal = TILEATTN_CAUSAL_TOP_LEFT if causal else TILEATTN_CAUSAL_NONE
                a.window_left = a.window_right = -1
                stream = torch.cuda.current_stream().cuda_stream
                qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, S, D] views

                def run_tileattn():
                    st = lib.tileattn_cuda_forward(ctypes.byref(a), stream)
                    if st:
                        raise RuntimeError(lib.tileattn_cuda_last_error_string().decode())

                def sdpa(backend):
                    def run():
                        with sdpa_kernel([backend]):
                            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                    return run

                flops = 4 * b * h * s * s * d / (2 if causal else 1)
                tflops = lambda ms: flops / ms / 1e9
                inner = max(1, int(3e11 / flops))  # about 1 ms of work per sample
                timing = (opts.warmup, opts.repeats, inner)
                ref = sdpa(SDPBackend.FLASH_ATTENTION)().transpose(1, 2)
                t_flash = tflops(time_ms(sdpa(SDPBackend.FLASH_ATTENTION), *timing))
                try:
                    t_cudnn = tflops(time_ms(sdpa(SDPBackend.CUDNN_ATTENTION), *timing))
                except RuntimeError:
                    t_cudnn = float("nan")
                for tiles in tile_choices:
                    if tiles and tiles != "default":
                        os.environ["TILEATTN_CUDA_TILES"] = tiles
                    else:
                        os.environ.pop("TILEATTN_CUDA_TILES", None)
                    o.fill_(float("nan"))
                    try:
                        run_tileattn()
                    except RuntimeError as e:  # a tile choice not instantiated for this D
                        print(f"# D={d} tiles {tiles}: {e}")
                        continue
                    torch.cuda.synchronize()
                    err = (o.float() - ref.float()).abs().max().item()
                    t_ta = tflops(time_ms(run_tileattn, *timing))
                    plan = ctypes.create_string_buffer(512)
                    lib.tileattn_cuda_describe_plan(ctypes.byref(a), plan, 512)
                    m = re.search(r"-wide (\S+) kernel, tiles (\d+) x (\d+).*?(\d+) warps",
                                  plan.value.decode())
                    engine = {"mma.sync": "mma"}.get(m[1], m[1]) if m else ""
                    label = f"{m[2]}x{m[3]}x{m[4]}:{engine}" if m else "?"
                    line = (f"{d:>4} {str(causal):>6} {s:>6} {b:>5} {label:>16} {t_ta:>9.1f} "
                            f"{t_flash:>7.1f} {t_cudnn:>7.1f} {t_ta / t_flash:>8.2f} "
                            f"{t_ta / t_cudnn:>8.2f} {err:>8.4f}")
                    print(line, flush=True)
                    rows.append(line)
                del q, k, v, o, lse, ref
    os.environ.pop("TILEATTN_CUDA_TILES", None)


if __name__ == "__main__":
    main()
