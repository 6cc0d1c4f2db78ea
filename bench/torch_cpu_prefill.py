#!/usr/bin/env python3
"""PyTorch's CPU scaled_dot_product_attention against tileattn, side by side.

What it measures
    The attention forward (prefill: Sq = Sk) of PyTorch's CPU SDPA, forced to
    its flash kernel (torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)),
    and of tileattn_forward (libtileattn.so through ctypes), in ONE process, on
    the SAME input memory, with the SAME thread count, timed the same way: the
    median wall time of --repeats calls after --warmup calls, one library's
    calls after the other's or, with --interleave, alternating
    (time.perf_counter around one call; PyTorch allocates its output inside
    the call, tileattn writes into a preallocated one - that is their APIs).
    Points (the README's table): B=1, H=16 at several threads and H=2 at one
    thread, Sq = Sk in {1024, 4096, 16384}, D in {64, 128}, float32 and
    bfloat16, causal and not.

How it is counted
    GFLOP/s = 4*B*H*Sq*Sk*D / time / 1e9, halved when causal (FlashAttention's
    count; the masked half is not counted). tileattn/torch = torch time /
    tileattn time, so > 1 means tileattn is faster. max|dO| =
    max |O_tileattn - O_torch| over the whole output, in float32, a sanity
    check: about 1e-6 for float32, one or two units in the last place (~1e-2)
    for bfloat16, whose outputs both round to 8 significant bits. Points
    beyond 1e-4 * max(1, max|O|) (fp32) or 2^-6 * max(1, max|O|) (bf16) are
    flagged and make the exit status 1.

Memory layout
    Both libraries read the very same tensors. With --layout bshd (default,
    FlashAttention's and tileattn's native layout) the tensors are allocated
    [B, S, H, D] and PyTorch gets .transpose(1, 2) views ([B, H, S, D] with
    strides); with --layout bhsd they are allocated [B, H, S, D] (PyTorch's
    native layout) and tileattn is given those strides. Causal masks are
    top-left aligned in both (tileattn's TILEATTN_CAUSAL_TOP_LEFT = PyTorch's
    is_causal; identical to bottom-right here since Sq = Sk).

Threads
    torch.set_num_threads(n) for PyTorch, args.num_threads = n for tileattn.
    PyTorch's wheel ships libgomp.so.1 and is imported first, so tileattn's
    libgomp.so.1 dependency resolves to the same runtime: one OpenMP thread
    pool serves both (the header says whether that happened). Pinning is left
    to the usual variables (e.g. OMP_PROC_BIND=close OMP_PLACES=cores), which
    then apply to both alike.

Run (16-core Xeon, the README's table; about 10-20 minutes):
    meson setup build -Dtests=disabled && ninja -C build
    OMP_PROC_BIND=close OMP_PLACES=cores \\
        python3 bench/torch_cpu_prefill.py --lib build/src/libtileattn.so \\
        --threads 16,1 --csv prefill.csv --markdown
A quick look: --seqlens 1024 --head-dims 64 --dtypes bfloat16 --repeats 3.

Needs only the standard library and torch (numpy is not used here).
torch_cpu_decode.py in this directory imports the helpers below.
"""

import argparse
import ctypes
import math
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import (  # noqa: E402  (after the path is set)
    SHORT, TA_DTYPE, TILEATTN_CAUSAL_NONE, TILEATTN_CAUSAL_TOP_LEFT, TILEATTN_OK,
    TILEATTN_P_FLOAT32, TILEATTN_P_INPUT_DTYPE,
    TOLERANCE_TEXT, F, TaForwardArgs, TaTensor, TaTensorOut, check_status, check_struct_size,
    compare, cpu_info, dtype_list, int_list, load_library, print_machine, print_markdown,
    print_table, sdpa_context, ta_view, time_median, time_median_interleaved, torch,
    write_csv)

def make_inputs(shape_bshd, layout, dtype, gen, scale=1.0):
    """N(0,1)*scale data of logical shape [B, S, H, D] stored in `layout`;
    returns the [B, S, H, D] view. Drawn in float32, then rounded."""
    b, s, h, d = shape_bshd
    if layout == "bshd":
        t = torch.randn(b, s, h, d, generator=gen)
    else:
        t = torch.randn(b, h, s, d, generator=gen).transpose(1, 2)
    if scale != 1.0:
        t.mul_(scale)
    return t.to(dtype) if dtype != torch.float32 else t


def empty_like_layout(shape_bshd, layout, dtype):
    b, s, h, d = shape_bshd
    if layout == "bshd":
        return torch.empty(b, s, h, d, dtype=dtype)
    return torch.empty(b, h, s, d, dtype=dtype).transpose(1, 2)


# --------------------------------------------------------------------------
# Prefill
# --------------------------------------------------------------------------

def forward_args(lib, q, k, v, o, causal, threads, p_input_dtype=False):
    """tileattn_forward_args for [B, S, H, D] views q, k, v, o."""
    a = TaForwardArgs()
    lib.tileattn_forward_args_init(ctypes.byref(a))
    a.batch, a.seqlen_q, a.heads_q, a.head_dim = q.shape[0], q.shape[1], q.shape[2], q.shape[3]
    a.seqlen_k, a.heads_kv, a.head_dim_v = k.shape[1], k.shape[2], v.shape[3]
    a.dtype = TA_DTYPE[q.dtype]
    a.q, a.k, a.v, a.o = ta_view(q), ta_view(k), ta_view(v), ta_view(o, out=True)
    a.causal = TILEATTN_CAUSAL_TOP_LEFT if causal else TILEATTN_CAUSAL_NONE
    a.num_threads = threads
    a.p_precision = TILEATTN_P_INPUT_DTYPE if p_input_dtype else TILEATTN_P_FLOAT32
    return a


def reference(q, k, v, causal):
    """float64 attention on [B, S, H, D] views (GQA by repeating KV heads)."""
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        sq, sk = s.shape[-2:]
        s.masked_fill_(torch.ones(sq, sk, dtype=torch.bool).triu(1), float("-inf"))
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2)


def self_check(lib, layout):
    """Before timing: tileattn on a small odd-sized problem against a float64
    reference. A wrong ctypes mirror gives an error status or garbage here."""
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        for causal in (False, True):
            shape_q, shape_k = (2, 37, 4, 72), (2, 37, 2, 72)  # B, S, H | Hk, D; GQA 2:1
            q = make_inputs(shape_q, layout, dtype, gen)
            k = make_inputs(shape_k, layout, dtype, gen)
            v = make_inputs(shape_k, layout, dtype, gen)
            o = empty_like_layout(shape_q, layout, dtype)
            a = forward_args(lib, q, k, v, o, causal, 2)
            status = lib.tileattn_forward(ctypes.byref(a))
            if status != TILEATTN_OK:
                sys.exit(f"self-check FAILED: tileattn_forward returned "
                         f"{lib.tileattn_status_string(status).decode()}; the ctypes "
                         "mirror of the args struct or the library is wrong")
            err, tol = compare(o, reference(q, k, v, causal))
            if not err <= tol:
                sys.exit(f"self-check FAILED ({SHORT[dtype]}, causal={causal}): "
                         f"max|O - ref| = {err:.3g} > {tol:.3g}. The ctypes mirror of "
                         f"tileattn_forward_args or the library is wrong; not timing anything.")
    print("self-check: tileattn (via ctypes) matches a float64 reference on a small "
          "GQA problem, fp32 and bf16, causal and not")


def describe_plan(lib, batch, seqlen, heads, d, dtype, causal, threads):
    """tileattn's plan for a point (tile sizes, microkernels, work split)."""
    a = TaForwardArgs()
    lib.tileattn_forward_args_init(ctypes.byref(a))
    a.batch, a.seqlen_q, a.seqlen_k = batch, seqlen, seqlen
    a.heads_q = a.heads_kv = heads
    a.head_dim, a.dtype, a.num_threads = d, TA_DTYPE[dtype], threads
    a.causal = TILEATTN_CAUSAL_TOP_LEFT if causal else TILEATTN_CAUSAL_NONE
    strides = (seqlen * heads * d, heads * d, d)  # contiguous [B, S, H, D]; data NULL
    a.q = a.k = a.v = TaTensor(None, *strides)
    a.o = TaTensorOut(None, *strides)
    buf = ctypes.create_string_buffer(8192)
    check_status(lib, lib.tileattn_describe_plan(ctypes.byref(a), buf, len(buf)),
                 "tileattn_describe_plan")
    return buf.value.decode().rstrip().replace("\n", "\n    ")


PREFILL_COLUMNS = [
    ("thr", "threads", "{}"), ("B", "batch", "{}"), ("H", "heads", "{}"),
    ("S", "seqlen", "{}"), ("D", "head_dim", "{}"), ("dtype", "dtype", "{}"),
    ("causal", "causal", "{}"),
    ("torch ms", "torch_ms", "{:.2f}"), ("torch GFLOP/s", "torch_gflops", "{:.1f}"),
    ("tileattn ms", "tileattn_ms", "{:.2f}"), ("tileattn GFLOP/s", "tileattn_gflops", "{:.1f}"),
    ("tileattn/torch", "speedup", "{:.2f}x"), ("max|dO|", "max_abs_diff", "{:.1e}"),
]
PREFILL_MD_COLUMNS = [c for c in PREFILL_COLUMNS if c[1] not in ("torch_ms", "tileattn_ms")]
PREFILL_CSV_KEYS = [c[1] for c in PREFILL_COLUMNS] + [
    "torch_best_ms", "tileattn_best_ms", "torch_backend", "layout", "repeats"]


def run_point(lib, sdpa_ctx, opts, threads, heads, seqlen, d, dtype, causal):
    b = opts.batch
    gen = torch.Generator().manual_seed(seqlen * 1000 + d)
    shape = (b, seqlen, heads, d)
    q, k, v = (make_inputs(shape, opts.layout, dtype, gen) for _ in range(3))
    o = empty_like_layout(shape, opts.layout, dtype)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, S, D]

    torch.set_num_threads(threads)
    result = {}

    def run_torch():
        result["o"] = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

    a = forward_args(lib, q, k, v, o, causal, threads, opts.p_input_dtype)
    pa = ctypes.byref(a)

    def run_tileattn():
        status = lib.tileattn_forward(pa)
        if status != TILEATTN_OK:
            check_status(lib, status, "tileattn_forward")

    with sdpa_ctx():  # sets global flags only: kept out of the timed calls
        if opts.interleave:
            (t_torch, best_torch), (t_ta, best_ta) = time_median_interleaved(
                [run_torch, run_tileattn], opts.warmup, opts.repeats)
        else:
            # PyTorch first, then tileattn, each with its own warm-up, so
            # neither sees the other's caches or idle threads.
            t_torch, best_torch = time_median(run_torch, opts.warmup, opts.repeats)
            t_ta, best_ta = time_median(run_tileattn, opts.warmup, opts.repeats)
    diff, tol = compare(o, result["o"].transpose(1, 2))

    flops = 4.0 * b * heads * seqlen * seqlen * d * (0.5 if causal else 1.0)
    return {
        "threads": threads, "batch": b, "heads": heads, "seqlen": seqlen, "head_dim": d,
        "dtype": SHORT[dtype], "causal": "yes" if causal else "no",
        "torch_ms": t_torch * 1e3, "torch_gflops": flops / t_torch / 1e9,
        "tileattn_ms": t_ta * 1e3, "tileattn_gflops": flops / t_ta / 1e9,
        "speedup": t_torch / t_ta, "max_abs_diff": diff,
        "torch_best_ms": best_torch * 1e3, "tileattn_best_ms": best_ta * 1e3,
        "tol_ok": diff <= tol,
    }


def main():
    _, _, cores = cpu_info()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", help="path to libtileattn.so (default: $TILEATTN_LIB, "
                   "else build*/src/libtileattn.so of this checkout)")
    p.add_argument("--threads", type=int_list, default=[cores, 1],
                   help=f"comma-separated thread counts (default {cores},1: "
                        "all physical cores, then 1)")
    p.add_argument("--heads", type=int, default=16, help="H with several threads (default 16)")
    p.add_argument("--heads-1t", type=int, default=2, help="H with one thread (default 2)")
    p.add_argument("--batch", type=int, default=1, help="B (default 1)")
    p.add_argument("--seqlens", type=int_list, default=[1024, 4096, 16384],
                   help="Sq = Sk values (default 1024,4096,16384)")
    p.add_argument("--head-dims", type=int_list, default=[64, 128], help="D (default 64,128)")
    p.add_argument("--dtypes", type=dtype_list, default=[torch.float32, torch.bfloat16],
                   help="float32,bfloat16[,float16] (default float32,bfloat16)")
    p.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per point (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--interleave", action="store_true",
                   help="alternate the timed calls (torch, tileattn, torch, ...) so that a slow "
                        "spell of a shared machine falls on both sides of a ratio")
    p.add_argument("--layout", choices=["bshd", "bhsd"], default="bshd",
                   help="memory layout both libraries read (default bshd)")
    p.add_argument("--torch-backend", choices=["flash", "any", "math"], default="flash",
                   help="PyTorch SDPA backend (default flash: the CPU flash kernel)")
    p.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    p.add_argument("--plan", action="store_true", help="print tileattn's plan for each point")
    p.add_argument("--p-input-dtype", action="store_true",
                   help="let tileattn round P to the input dtype for P.V, as PyTorch's flash "
                        "kernel does for bf16 (tileattn_forward_args.p_precision)")
    opts = p.parse_args()

    lib = load_library(opts.lib)
    check_struct_size(lib.tileattn_forward_args_init, TaForwardArgs, "p_precision",
                      ("window_left", "window_right"))
    sdpa_ctx, backend_label = sdpa_context(opts.torch_backend)
    print_machine(lib, opts.threads)
    print(f"method  : prefill Sq=Sk, B={opts.batch}, layout {opts.layout}; torch SDPA backend "
          f"{backend_label}; median of {opts.repeats} after {opts.warmup} warm-up"
          f"{', calls interleaved' if opts.interleave else ''}; "
          f"GFLOP/s = 4*B*H*S*S*D/t (halved when causal); tileattn's P in P.V: "
          f"{'input dtype allowed' if opts.p_input_dtype else 'float32'}")
    self_check(lib, opts.layout)
    print()

    causals = {"both": [False, True], "yes": [True], "no": [False]}[opts.causal]
    rows = []
    for threads in opts.threads:
        heads = opts.heads if threads > 1 else opts.heads_1t
        for seqlen in opts.seqlens:
            for d in opts.head_dims:
                for dtype in opts.dtypes:
                    for causal in causals:
                        try:
                            r = run_point(lib, sdpa_ctx, opts, threads, heads, seqlen, d, dtype,
                                          causal)
                        except RuntimeError as e:  # e.g. "No available kernel" for a dtype
                            print(f"skipped thr={threads} S={seqlen} D={d} {SHORT[dtype]} "
                                  f"causal={causal}: {str(e).splitlines()[0]}", flush=True)
                            continue
                        r.update(torch_backend=backend_label, layout=opts.layout,
                                 repeats=opts.repeats)
                        rows.append(r)
                        print(f"  thr={threads:<3} H={heads:<3} S={seqlen:<6} D={d:<4} "
                              f"{r['dtype']} causal={r['causal']:<3}  torch "
                              f"{r['torch_gflops']:8.1f}  tileattn {r['tileattn_gflops']:8.1f} "
                              f"GFLOP/s  {r['speedup']:.2f}x  max|dO| {r['max_abs_diff']:.1e}"
                              + ("" if r["tol_ok"] else "  <-- above tolerance"), flush=True)
                        if opts.plan:
                            print("    " + describe_plan(lib, opts.batch, seqlen, heads, d,
                                                         dtype, causal, threads))

    print()
    print_table(PREFILL_COLUMNS, rows)
    print("tileattn/torch = torch time / tileattn time (> 1: tileattn faster)")
    bad = [r for r in rows if not r["tol_ok"]]
    if bad:
        print(f"WARNING: {len(bad)} point(s) with max|dO| above tolerance ({TOLERANCE_TEXT})")
    if opts.markdown:
        print()
        print_markdown(PREFILL_MD_COLUMNS, rows)
    if opts.csv:
        write_csv(opts.csv, PREFILL_CSV_KEYS, rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
