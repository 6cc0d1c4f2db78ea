#!/usr/bin/env python3
"""GQA decoding: PyTorch's CPU scaled_dot_product_attention against tileattn.

What it measures
    One decoding step (Sq_new = 1 query token per sequence) over a full KV
    cache, GQA with H=32 query heads and Hk=8 KV heads, D=128, float32 and
    bfloat16 (Q, cache and O all in that dtype), on all physical cores:
      * PyTorch: F.scaled_dot_product_attention(q [B,H,1,D], k, v [B,Hk,S,D],
        enable_gqa=True) (torch >= 2.5), forced to the CPU flash kernel by
        default (--torch-backend any lets PyTorch choose);
      * tileattn: tileattn_decode() (include/tileattn.h) on a contiguous cache
        [B, S_max, Hk, D] with cache_seqlens[b] = S_max = S, no append;
    in ONE process, on the SAME cache memory, with the SAME threads, timed the
    same way (median of --repeats calls after --warmup).
    Shapes: B=8 with 32k tokens (a 2 GiB fp32 / 1 GiB bf16 cache, several
    times a large last-level cache) and B=1 with 128k tokens.

How it is counted
    Effective bandwidth = bytes of K and V read / time, i.e.
    B * S * Hk * (D + Dv) * sizeof(dtype) / t in GB/s (1e9 bytes); Q, O and
    the partial results of a split are not counted (a few KiB).
    read BW = a STREAM-style read measured in the same process with the same
    thread count: torch.sum over a float32 tensor of --stream-mib MiB (far
    larger than the last-level cache), whose bytes / median time is the
    bandwidth; measured right before and right after each point's decoding
    runs, and the two medians averaged (the machine may be noisy).
    tileattn/torch = torch time / tileattn time (> 1: tileattn faster).
    Targets (the issue): tileattn/torch >= 3 and tileattn BW >= 0.8 x read
    BW; the last column says which are met. max|dO| = max |O_tileattn -
    O_torch| (sanity check; flagged above 1e-4 * max(1, max|O|) in fp32 and
    2^-6 * max(1, max|O|) in bf16, which makes the exit status 1).

Memory layout
    --layout bshd (default): the cache is [B, S, Hk, D] (tileattn's and
    flash_attn_with_kvcache's layout) and PyTorch reads .transpose(1, 2)
    views of it; --layout bhsd: the cache is [B, Hk, S, D] (PyTorch's native
    layout) and tileattn gets those strides. Either way both read the same
    bytes. The cache is written by one thread (first touch): on a machine
    with several NUMA nodes, run under numactl --interleave=all.

Run (16-core Xeon; about a minute plus input generation):
    meson setup build -Dtests=disabled && ninja -C build
    OMP_PROC_BIND=close OMP_PLACES=cores \\
        python3 bench/torch_cpu_decode.py --lib build/src/libtileattn.so \\
        --csv decode.csv --markdown
The C-side bandwidth bench, for comparison: build/src/cli/tileattn bench --decode.

Needs only the standard library and torch; imports the ctypes mirror and
helpers of torch_common.py (same directory).
"""

import argparse
import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import (  # noqa: E402  (after the path is set)
    SHORT, TA_DTYPE, TILEATTN_OK, TaTensor, TaTensorOut, F, c_enum, check_status,
    check_struct_size, compare, cpu_info, dtype_list, int_list, llc_bytes, load_library,
    print_machine, print_markdown, print_table, sdpa_context, ta_view, time_median, torch,
    write_csv, TOLERANCE_TEXT)

# --------------------------------------------------------------------------
# tileattn_decode_args, mirrored field by field from include/tileattn.h.
# --------------------------------------------------------------------------


class TaDecodeArgs(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int64),
        ("seqlen_new", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("dtype", c_enum),
        ("cache_dtype", c_enum),
        ("q", TaTensor),
        ("o", TaTensorOut),
        ("lse", ctypes.POINTER(ctypes.c_float)),
        ("k_cache", TaTensorOut),
        ("v_cache", TaTensorOut),
        ("max_seqlen_cache", ctypes.c_int64),
        ("cache_seqlens", ctypes.POINTER(ctypes.c_int32)),
        ("block_table", ctypes.POINTER(ctypes.c_int32)),
        ("block_table_stride", ctypes.c_int64),
        ("num_blocks", ctypes.c_int64),
        ("block_size", ctypes.c_int64),
        ("max_blocks_per_seq", ctypes.c_int64),
        ("k_scales", ctypes.POINTER(ctypes.c_float)),
        ("v_scales", ctypes.POINTER(ctypes.c_float)),
        ("k_new", TaTensor),
        ("v_new", TaTensor),
        ("scale", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("alibi_slopes", ctypes.POINTER(ctypes.c_float)),
        ("alibi_stride_b", ctypes.c_int64),
        ("sinks", ctypes.POINTER(ctypes.c_float)),
        ("num_threads", ctypes.c_int),
    ]


def declare_decode(lib):
    lib.tileattn_decode_args_init.restype = None
    lib.tileattn_decode_args_init.argtypes = [ctypes.POINTER(TaDecodeArgs)]
    lib.tileattn_decode.restype = c_enum
    lib.tileattn_decode.argtypes = [ctypes.POINTER(TaDecodeArgs)]
    lib.tileattn_describe_decode.restype = c_enum
    lib.tileattn_describe_decode.argtypes = [ctypes.POINTER(TaDecodeArgs), ctypes.c_char_p,
                                             ctypes.c_size_t]


def decode_args(lib, q, o, k_cache, v_cache, seqlens, threads):
    """tileattn_decode_args: q, o [B, 1, H, D] views; caches [B, S_max, Hk, D]
    views (any strides, D contiguous); seqlens an int32 tensor [B]. The
    tensors must outlive the struct (it holds raw pointers)."""
    a = TaDecodeArgs()
    lib.tileattn_decode_args_init(ctypes.byref(a))
    a.batch, a.seqlen_new, a.heads_q, a.head_dim = q.shape
    a.heads_kv, a.head_dim_v = k_cache.shape[2], v_cache.shape[3]
    a.dtype = TA_DTYPE[q.dtype]
    a.cache_dtype = TA_DTYPE[k_cache.dtype]  # the F32/F16/BF16 cache dtypes share the values
    a.q, a.o = ta_view(q), ta_view(o, out=True)
    a.k_cache, a.v_cache = ta_view(k_cache, out=True), ta_view(v_cache, out=True)
    a.max_seqlen_cache = k_cache.shape[1]
    assert seqlens.dtype == torch.int32 and seqlens.is_contiguous()
    a.cache_seqlens = ctypes.cast(seqlens.data_ptr(), ctypes.POINTER(ctypes.c_int32))
    a.num_threads = threads
    return a


def make_cache(b, s, hk, d, layout, dtype, gen):
    """N(0,1) cache of logical shape [B, S, Hk, D] stored in `layout`. Drawn
    in float32 in slices (bounded temporary memory), then rounded."""
    shape = (b, s, hk, d) if layout == "bshd" else (b, hk, s, d)
    t = torch.empty(shape, dtype=dtype)
    for i in range(b):
        t[i] = torch.randn(shape[1:], generator=gen)
    return t if layout == "bshd" else t.transpose(1, 2)


def self_check(lib, layout, gqa_kwargs):
    """Before timing: tileattn_decode on a small GQA problem with two
    different cache lengths against a float64 reference. A wrong ctypes
    mirror gives an error status or garbage here."""
    gen = torch.Generator().manual_seed(2)
    b, s_max, h, hk, d = 2, 64, 8, 2, 72
    lens = torch.tensor([37, 64], dtype=torch.int32)
    for dtype in (torch.float32, torch.bfloat16):
        q = torch.randn(b, 1, h, d, generator=gen).to(dtype)
        k = make_cache(b, s_max, hk, d, layout, dtype, gen)
        v = make_cache(b, s_max, hk, d, layout, dtype, gen)
        o = torch.empty(b, 1, h, d, dtype=dtype)
        a = decode_args(lib, q, o, k, v, lens, 2)
        status = lib.tileattn_decode(ctypes.byref(a))
        if status != TILEATTN_OK:
            sys.exit(f"self-check FAILED: tileattn_decode returned "
                     f"{lib.tileattn_status_string(status).decode()}; the ctypes "
                     "mirror of the args struct or the library is wrong")
        err, tol = 0.0, 0.0
        for i in range(b):
            n = int(lens[i])
            kk = k[i, :n].double().repeat_interleave(h // hk, dim=1)  # [n, H, D]
            vv = v[i, :n].double().repeat_interleave(h // hk, dim=1)
            s = torch.einsum("hd,nhd->hn", q[i, 0].double(), kk) / d ** 0.5
            ref = torch.einsum("hn,nhd->hd", torch.softmax(s, dim=-1), vv)
            e, t = compare(o[i, 0], ref)
            err, tol = max(err, e), max(tol, t)
        if not err <= tol:
            sys.exit(f"self-check FAILED ({SHORT[dtype]}): max|O - ref| = {err:.3g} > {tol:.3g}. "
                     "The ctypes mirror of tileattn_decode_args or the library is wrong; "
                     "not timing anything.")
    print("self-check: tileattn_decode (via ctypes) matches a float64 reference on a small "
          "GQA problem, fp32 and bf16")
    if gqa_kwargs is None:
        print(f"note: torch {torch.__version__} has no enable_gqa in scaled_dot_product_attention "
              "(needs >= 2.5): PyTorch columns are left empty")


def torch_gqa_kwargs():
    """{'enable_gqa': True} when this torch accepts it, else None."""
    q = torch.zeros(1, 4, 1, 8)
    kv = torch.zeros(1, 2, 3, 8)
    try:
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
        return {"enable_gqa": True}
    except TypeError:
        return None


def read_bandwidth(x, threads, warmup, repeats):
    """STREAM-style read: bytes of x / median time of torch.sum(x)."""
    torch.set_num_threads(threads)
    t, _ = time_median(lambda: x.sum(), warmup, repeats)
    return x.numel() * x.element_size() / t


DECODE_COLUMNS = [
    ("thr", "threads", "{}"), ("B", "batch", "{}"), ("S", "seqlen", "{}"),
    ("H/Hk", "heads", "{}"), ("D", "head_dim", "{}"), ("dtype", "dtype", "{}"),
    ("KV MiB", "kv_mib", "{:.0f}"),
    ("torch ms", "torch_ms", "{:.3f}"), ("torch GB/s", "torch_gbs", "{:.1f}"),
    ("tileattn ms", "tileattn_ms", "{:.3f}"), ("tileattn GB/s", "tileattn_gbs", "{:.1f}"),
    ("read GB/s", "read_gbs", "{:.1f}"),
    ("tileattn/torch", "speedup", "{:.2f}x"), ("tileattn/read", "bw_fraction", "{:.2f}"),
    ("torch/read", "torch_bw_fraction", "{:.2f}"),
    ("max|dO|", "max_abs_diff", "{:.1e}"), ("targets", "targets", "{}"),
]
DECODE_MD_COLUMNS = [c for c in DECODE_COLUMNS if c[1] not in ("torch_ms", "tileattn_ms")]
DECODE_CSV_KEYS = [c[1] for c in DECODE_COLUMNS] + [
    "heads_q", "heads_kv", "torch_best_ms", "tileattn_best_ms", "torch_backend", "layout",
    "repeats", "stream_mib", "read_gbs_before", "read_gbs_after"]


def run_point(lib, sdpa_ctx, gqa_kwargs, opts, stream, threads, b, s, dtype):
    h, hk, d = opts.heads, opts.kv_heads, opts.head_dim
    gen = torch.Generator().manual_seed(b * 1000003 + s)
    k = make_cache(b, s, hk, d, opts.layout, dtype, gen)
    v = make_cache(b, s, hk, d, opts.layout, dtype, gen)
    q = torch.randn(b, 1, h, d, generator=gen).to(dtype)
    o = torch.empty(b, 1, h, d, dtype=dtype)
    lens = torch.full((b,), s, dtype=torch.int32)

    a = decode_args(lib, q, o, k, v, lens, threads)
    pa = ctypes.byref(a)
    if opts.plan:
        print("    " + describe_decode(lib, a))

    def run_tileattn():
        status = lib.tileattn_decode(pa)
        if status != TILEATTN_OK:
            check_status(lib, status, "tileattn_decode")

    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H(k), S, D]
    result = {}

    def run_torch():
        result["o"] = F.scaled_dot_product_attention(qt, kt, vt, **gqa_kwargs)

    bw_before = read_bandwidth(stream, threads, 1, opts.stream_repeats)
    torch.set_num_threads(threads)
    t_torch = None
    if gqa_kwargs is not None:
        with sdpa_ctx():  # sets global flags only: kept out of the timed calls
            t_torch, best_torch = time_median(run_torch, opts.warmup, opts.repeats)
    t_ta, best_ta = time_median(run_tileattn, opts.warmup, opts.repeats)
    bw_after = read_bandwidth(stream, threads, 1, opts.stream_repeats)
    read_bw = (bw_before + bw_after) / 2

    kv_bytes = b * s * hk * 2 * d * k.element_size()
    row = {
        "threads": threads, "batch": b, "seqlen": s, "heads": f"{h}/{hk}", "heads_q": h,
        "heads_kv": hk, "head_dim": d, "dtype": SHORT[dtype], "kv_mib": kv_bytes / 2**20,
        "tileattn_ms": t_ta * 1e3, "tileattn_best_ms": best_ta * 1e3,
        "tileattn_gbs": kv_bytes / t_ta / 1e9,
        "read_gbs": read_bw / 1e9, "read_gbs_before": bw_before / 1e9,
        "read_gbs_after": bw_after / 1e9, "bw_fraction": kv_bytes / t_ta / read_bw,
        "tol_ok": True,
    }
    met = [f"bw {'ok' if row['bw_fraction'] >= 0.8 else 'MISS'}"]
    if t_torch is not None:
        diff, tol = compare(o, result["o"].transpose(1, 2))
        row.update(torch_ms=t_torch * 1e3, torch_best_ms=best_torch * 1e3,
                   torch_gbs=kv_bytes / t_torch / 1e9,
                   speedup=t_torch / t_ta, torch_bw_fraction=kv_bytes / t_torch / read_bw,
                   max_abs_diff=diff, tol_ok=diff <= tol)
        met.insert(0, f"3x {'ok' if row['speedup'] >= 3 else 'MISS'}")
    row["targets"] = ", ".join(met)
    return row


def parse_shapes(text):
    """'8x32768,1x131072' -> [(8, 32768), (1, 131072)]"""
    out = []
    for item in text.split(","):
        b, _, s = item.lower().partition("x")
        out.append((int(b), int(s)))
    return out


def describe_decode(lib, a):
    buf = ctypes.create_string_buffer(8192)
    check_status(lib, lib.tileattn_describe_decode(ctypes.byref(a), buf, len(buf)),
                 "tileattn_describe_decode")
    return buf.value.decode().rstrip().replace("\n", "\n    ")


def main():
    _, _, cores = cpu_info()
    llc = llc_bytes()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", help="path to libtileattn.so (default: $TILEATTN_LIB, "
                   "else build*/src/libtileattn.so of this checkout)")
    p.add_argument("--threads", type=int_list, default=[cores],
                   help=f"comma-separated thread counts (default {cores}: all physical cores)")
    p.add_argument("--shapes", type=parse_shapes, default=[(8, 32768), (1, 131072)],
                   help="BxS pairs: batch x cache tokens (default 8x32768,1x131072)")
    p.add_argument("--heads", type=int, default=32, help="H, query heads (default 32)")
    p.add_argument("--kv-heads", type=int, default=8, help="Hk, KV heads (default 8)")
    p.add_argument("--head-dim", type=int, default=128, help="D = Dv (default 128)")
    p.add_argument("--dtypes", type=dtype_list, default=[torch.float32, torch.bfloat16],
                   help="float32,bfloat16[,float16] (default float32,bfloat16)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per point (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    default_stream = max(1024, 8 * llc >> 20)
    p.add_argument("--stream-mib", type=int, default=default_stream,
                   help=f"size of the read-bandwidth array (default {default_stream}: "
                        "8x the last-level cache, at least 1 GiB)")
    p.add_argument("--stream-repeats", type=int, default=10,
                   help="timed sums per read-bandwidth measurement (default 10)")
    p.add_argument("--layout", choices=["bshd", "bhsd"], default="bshd",
                   help="memory layout of the cache both libraries read (default bshd)")
    p.add_argument("--torch-backend", choices=["flash", "any", "math"], default="flash",
                   help="PyTorch SDPA backend (default flash: the CPU flash kernel)")
    p.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    p.add_argument("--plan", action="store_true", help="print tileattn's decode plan per point")
    opts = p.parse_args()
    if opts.heads % opts.kv_heads:
        p.error("--heads must be a multiple of --kv-heads")

    lib = load_library(opts.lib)
    declare_decode(lib)
    check_struct_size(lib.tileattn_decode_args_init, TaDecodeArgs, "num_threads",
                      ("window_left", "window_right"))
    sdpa_ctx, backend_label = sdpa_context(opts.torch_backend)
    gqa_kwargs = torch_gqa_kwargs()
    print_machine(lib, opts.threads)
    print(f"method  : decode Sq_new=1, H={opts.heads}, Hk={opts.kv_heads}, D={opts.head_dim}, "
          f"cache layout {opts.layout}; torch SDPA backend {backend_label}, enable_gqa; "
          f"median of {opts.repeats} after {opts.warmup} warm-up; GB/s = K+V bytes / t")
    print(f"read BW : torch.sum over a {opts.stream_mib} MiB float32 tensor on the same threads "
          f"(median of {opts.stream_repeats}), before and after each point, averaged")
    self_check(lib, opts.layout, gqa_kwargs)
    # Filled with ones: the memory is really touched (no zero pages).
    stream = torch.ones(opts.stream_mib * 2**20 // 4, dtype=torch.float32)
    print()

    rows = []
    for threads in opts.threads:
        for b, s in opts.shapes:
            for dtype in opts.dtypes:
                kv_bytes = b * s * opts.kv_heads * 2 * opts.head_dim * torch.tensor(
                    [], dtype=dtype).element_size()
                if llc and kv_bytes < 3 * llc:
                    print(f"  note: B={b} S={s} {SHORT[dtype]}: the cache ({kv_bytes >> 20} MiB) "
                          f"is less than 3x the last-level cache ({llc >> 20} MiB)")
                try:
                    r = run_point(lib, sdpa_ctx, gqa_kwargs, opts, stream, threads, b, s, dtype)
                except RuntimeError as e:  # e.g. "No available kernel" from PyTorch
                    print(f"skipped thr={threads} B={b} S={s} {SHORT[dtype]}: "
                          f"{str(e).splitlines()[0]}", flush=True)
                    continue
                r.update(torch_backend=backend_label, layout=opts.layout, repeats=opts.repeats,
                         stream_mib=opts.stream_mib)
                rows.append(r)
                torch_part = (f"torch {r['torch_gbs']:7.1f}" if "torch_gbs" in r
                              else "torch       -")
                print(f"  thr={threads:<3} B={b:<3} S={s:<7} {r['dtype']}  {torch_part}  "
                      f"tileattn {r['tileattn_gbs']:7.1f}  read {r['read_gbs']:7.1f} GB/s  "
                      f"[{r['targets']}]"
                      + ("" if r["tol_ok"] else "  <-- max|dO| above tolerance"), flush=True)

    print()
    print_table(DECODE_COLUMNS, rows)
    print("tileattn/torch = torch time / tileattn time; x/read = that bandwidth / read BW; "
          "targets: tileattn/torch >= 3, tileattn/read >= 0.8")
    bad = [r for r in rows if not r["tol_ok"]]
    if bad:
        print(f"WARNING: {len(bad)} point(s) with max|dO| above tolerance ({TOLERANCE_TEXT})")
    if opts.markdown:
        print()
        print_markdown(DECODE_MD_COLUMNS, rows)
    if opts.csv:
        write_csv(opts.csv, DECODE_CSV_KEYS, rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
