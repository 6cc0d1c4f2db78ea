"""Shared by torch_cpu_prefill.py and torch_cpu_decode.py: tileattn's C API
mirrored with ctypes, the library loader, the machine header, timing, the
output comparison, and the table, markdown and CSV writers.
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import csv
import glob
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F  # noqa: F401  (re-exported to the scripts)
except ImportError:  # the message is the only useful thing to do without torch
    sys.exit("tileattn torch benchmarks: PyTorch is not installed (import torch failed)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --------------------------------------------------------------------------
# The C API, mirrored field by field from include/tileattn.h. C enums are
# `int` (4 bytes) on every ABI this runs on; ctypes pads the structs exactly
# as the C compiler does. check_struct_size() verifies the mirror at run time.
# --------------------------------------------------------------------------

TILEATTN_OK = 0
TILEATTN_F32, TILEATTN_F16, TILEATTN_BF16 = 0, 1, 2
TILEATTN_CAUSAL_NONE, TILEATTN_CAUSAL_BOTTOM_RIGHT, TILEATTN_CAUSAL_TOP_LEFT = 0, 1, 2
TILEATTN_P_FLOAT32, TILEATTN_P_INPUT_DTYPE = 0, 1
c_enum = ctypes.c_int

TA_DTYPE = {torch.float32: TILEATTN_F32, torch.float16: TILEATTN_F16,
            torch.bfloat16: TILEATTN_BF16}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SHORT = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class TaTensor(ctypes.Structure):
    """tileattn_tensor: read-only [B, S, H, dim], strides in elements."""
    _fields_ = [("data", ctypes.c_void_p),
                ("stride_b", ctypes.c_int64),
                ("stride_s", ctypes.c_int64),
                ("stride_h", ctypes.c_int64)]


class TaTensorOut(ctypes.Structure):
    """tileattn_tensor_out: the writable twin of TaTensor."""
    _fields_ = TaTensor._fields_


class TaForwardArgs(ctypes.Structure):
    """tileattn_forward_args, in the header's field order."""
    _fields_ = [
        ("batch", ctypes.c_int64),
        ("seqlen_q", ctypes.c_int64),
        ("seqlen_k", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("dtype", c_enum),
        ("q", TaTensor),
        ("k", TaTensor),
        ("v", TaTensor),
        ("o", TaTensorOut),
        ("lse", ctypes.POINTER(ctypes.c_float)),
        ("scale", ctypes.c_float),
        ("causal", c_enum),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("alibi_slopes", ctypes.POINTER(ctypes.c_float)),
        ("alibi_stride_b", ctypes.c_int64),
        ("bias_kind", c_enum),
        ("bias", ctypes.c_void_p),
        ("bias_dtype", c_enum),
        ("bias_stride_b", ctypes.c_int64),
        ("bias_stride_h", ctypes.c_int64),
        ("bias_stride_q", ctypes.c_int64),
        ("sinks", ctypes.POINTER(ctypes.c_float)),
        ("cu_seqlens_q", ctypes.POINTER(ctypes.c_int32)),
        ("cu_seqlens_k", ctypes.POINTER(ctypes.c_int32)),
        ("num_threads", ctypes.c_int),
        ("p_precision", c_enum),
    ]


def find_library(path):
    """--lib, else $TILEATTN_LIB, else a build directory of this checkout."""
    candidates = [path] if path else []
    if os.environ.get("TILEATTN_LIB"):
        candidates.append(os.environ["TILEATTN_LIB"])
    candidates.append(os.path.join(REPO, "build", "src", "libtileattn.so"))
    candidates += sorted(glob.glob(os.path.join(REPO, "build*", "src", "libtileattn.so")))
    for c in candidates:
        if os.path.exists(c):
            return os.path.abspath(c)
    found = ctypes.util.find_library("tileattn")  # an installed one
    if found:
        return found
    sys.exit("libtileattn.so not found: build it (meson setup build && ninja -C build) "
             "and pass --lib build/src/libtileattn.so")


def load_library(path):
    """Loads libtileattn.so (after torch, so that libgomp is shared) and
    declares the prototypes this script and torch_cpu_decode.py use."""
    lib = ctypes.CDLL(find_library(path))
    lib.tileattn_status_string.restype = ctypes.c_char_p
    lib.tileattn_status_string.argtypes = [c_enum]
    lib.tileattn_isa_name.restype = ctypes.c_char_p
    lib.tileattn_isa_name.argtypes = []
    lib.tileattn_describe_machine.restype = c_enum
    lib.tileattn_describe_machine.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.tileattn_forward_args_init.restype = None
    lib.tileattn_forward_args_init.argtypes = [ctypes.POINTER(TaForwardArgs)]
    lib.tileattn_forward.restype = c_enum
    lib.tileattn_forward.argtypes = [ctypes.POINTER(TaForwardArgs)]
    lib.tileattn_describe_plan.restype = c_enum
    lib.tileattn_describe_plan.argtypes = [ctypes.POINTER(TaForwardArgs), ctypes.c_char_p,
                                           ctypes.c_size_t]
    lib.path = lib._name
    return lib


def check_status(lib, status, what):
    if status != TILEATTN_OK:
        msg = lib.tileattn_status_string(status).decode()
        raise RuntimeError(f"{what} failed: {msg} (status {status})")


def check_struct_size(init, struct_type, last_field, window_fields=()):
    """The C init function zeroes every field of the C struct and sets the
    windows to -1. Run it on our struct inside a larger buffer filled with
    0xA5: a C struct larger than ours would overwrite the bytes after it, a
    smaller one would leave our last field (or a misplaced window) unset."""
    size = ctypes.sizeof(struct_type)
    buf = (ctypes.c_ubyte * (size + 256))(*([0xA5] * (size + 256)))
    args = struct_type.from_buffer(buf)
    init(ctypes.byref(args))
    ok = all(b == 0xA5 for b in buf[size:])
    ok = ok and getattr(args, last_field) == 0
    ok = ok and all(getattr(args, f) == -1 for f in window_fields)
    if not ok:
        sys.exit(f"{struct_type.__name__} ({size} bytes) does not match the library's C struct: "
                 "include/tileattn.h changed, update the ctypes mirror in this script")


def ta_view(t, out=False):
    """A tileattn tensor for a torch tensor viewed as [B, S, H, dim]."""
    assert t.dim() == 4 and t.stride(3) == 1, "tileattn needs the head dimension contiguous"
    cls = TaTensorOut if out else TaTensor
    return cls(t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


# --------------------------------------------------------------------------
# Machine description, timing, tables: shared with torch_cpu_decode.py.
# --------------------------------------------------------------------------

def cpu_info():
    """Model name, logical CPUs and physical cores from /proc/cpuinfo."""
    model, cores, logical = "unknown", set(), 0
    try:
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name":
                    model = val
                elif key == "processor":
                    logical += 1
                elif key == "physical id":
                    phys = val
                elif key == "core id":
                    core = val
                elif not key and phys is not None:  # blank line ends a CPU
                    cores.add((phys, core))
        if phys is not None:
            cores.add((phys, core))
    except OSError:
        pass
    logical = logical or os.cpu_count() or 1
    return model, logical, len(cores) or logical


def llc_bytes():
    """Total last-level cache: the sum over the distinct L3 (else L2)
    instances listed in sysfs; 0 if unknown."""
    for level in ("3", "2"):
        seen, total = set(), 0
        for d in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cache/index*"):
            try:
                if open(os.path.join(d, "level")).read().strip() != level:
                    continue
                if open(os.path.join(d, "type")).read().strip() == "Instruction":
                    continue
                shared = open(os.path.join(d, "shared_cpu_list")).read().strip()
                size = open(os.path.join(d, "size")).read().strip()
            except OSError:
                continue
            if shared in seen:
                continue
            seen.add(shared)
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            total += int(size.rstrip("KMG")) * mult
        if total:
            return total
    return 0


def openmp_runtimes():
    """The distinct libgomp/libiomp files mapped into this process."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                name = line.split()[-1]
                base = os.path.basename(name)
                if base.startswith(("libgomp", "libiomp", "libomp")):
                    libs.add(name)
    except OSError:
        pass
    return sorted(libs)


def print_machine(lib, threads):
    model, logical, cores = cpu_info()
    print(f"machine : {model}")
    print(f"cpus    : {cores} physical cores, {logical} logical CPUs; "
          f"last-level cache {llc_bytes() / 2**20:.0f} MiB in all")
    print(f"threads : {', '.join(map(str, threads))} (torch.set_num_threads and "
          f"tileattn num_threads)")
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    print(f"torch   : {torch.__version__}, cpu capability {cap}, default threads "
          f"{torch.get_num_threads()}")
    print(f"tileattn: {lib.path}, microkernels {lib.tileattn_isa_name().decode()}")
    omp = openmp_runtimes()
    if len(omp) == 1:
        print(f"openmp  : one runtime shared by both: {omp[0]}")
    else:
        print(f"openmp  : {len(omp)} runtimes loaded (separate thread pools): {', '.join(omp)}")
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES",
                                             "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "TILEATTN_ISA",
                                             "KMP_AFFINITY", "ATEN_CPU_CAPABILITY")
           if k in os.environ]
    print(f"env     : {' '.join(env) if env else '(no OpenMP/ISA variables set)'}")


def time_median(fn, warmup, repeats):
    """Median and best wall time (seconds) of `repeats` calls after `warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def time_median_interleaved(fns, warmup, repeats):
    """time_median for several functions whose timed calls alternate
    (f0, f1, ..., f0, f1, ...) after each one's warm-up: on a shared machine
    a slow spell then falls on every side. One (median, best) per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [(statistics.median(t), min(t)) for t in times]


def int_list(s):
    return [int(x) for x in s.split(",") if x]


def dtype_list(s):
    out = []
    for x in s.split(","):
        if x not in DTYPES:
            raise argparse.ArgumentTypeError(f"unknown dtype {x!r} (choose from {list(DTYPES)})")
        out.append(DTYPES[x])
    return out


def print_table(columns, rows):
    """Fixed-width table; columns = [(header, key, format)]."""
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        cells.append([fmt.format(r[k]) if r.get(k) is not None else "-" for _, k, fmt in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_markdown(columns, rows):
    print("| " + " | ".join(h.replace("|", "\\|") for h, _, _ in columns) + " |")
    print("|" + "|".join("---:" for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt.format(r[k]) if r.get(k) is not None else "-"
                                for _, k, fmt in columns) + " |")


def write_csv(path, keys, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def sdpa_context(backend):
    """The backend selection for PyTorch: 'flash' forces the CPU flash kernel
    (torch >= 2.3); 'any' lets PyTorch choose. Returns (factory, label)."""
    if backend == "any":
        return contextlib.nullcontext, "torch's choice"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        kind = getattr(SDPBackend, {"flash": "FLASH_ATTENTION", "math": "MATH"}[backend])
        return (lambda: sdpa_kernel(kind)), backend
    except (ImportError, AttributeError):
        print(f"note: torch {torch.__version__} has no torch.nn.attention.sdpa_kernel/"
              f"SDPBackend; PyTorch picks its backend itself")
        return contextlib.nullcontext, "torch's choice"



# Two correct kernels differ by their float32 summation order, then each
# rounds O to its dtype: about 1e-6 in float32, one or two units in the last
# place in bfloat16 (2^-7 relative, so 2^-6 * max|O| covers two).
TOLERANCE_TEXT = "1e-4 * max(1, max|O|) in fp32, 2^-6 * max(1, max|O|) in bf16/fp16"


def compare(o_a, o_b):
    """max |o_a - o_b| and the tolerance it should stay within."""
    diff = (o_a.double() - o_b.double()).abs().max().item()
    rel = 1e-4 if o_a.dtype == torch.float32 else 2.0 ** -6
    return diff, rel * max(1.0, o_b.double().abs().max().item())
