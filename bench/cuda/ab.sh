#!/bin/bash
# A/B of a compile-time variant of the CUDA kernels, on a GPU machine:
#   bash bench/cuda/ab.sh MACRO LOGDIR [bench_cuda_vs_torch.py options...]
# builds the library twice (build-a as is, build-b with -DMACRO), runs the
# CUDA suite on build-b, then the benchmark a b a b (interleaved, so that a
# drift of the GPU's clocks hits both) and prints both variants' TFLOP/s and
# the ratio of their best runs. The code under test reads the macro with
# #ifdef; remove it once decided.
set -u
macro=$1 logdir=$2
shift 2
mkdir -p "$logdir"
meson setup build-a -Dtests=disabled -Dcuda=enabled > "$logdir/setup-a.log" 2>&1
meson setup build-b -Dtests=disabled -Dcuda=enabled -Dcuda_args=-D"$macro" > "$logdir/setup-b.log" 2>&1
targets="src/cuda/libtileattn_cuda.so.0.1.0 tests/cuda/test_cuda_forward"
ninja -C build-a $targets > "$logdir/build-a.log" 2>&1 &
ninja -C build-b $targets > "$logdir/build-b.log" 2>&1 &
wait
grep -E "error|FAILED" "$logdir"/build-?.log | head
build-b/tests/cuda/test_cuda_forward > "$logdir/test-b.txt" 2>&1
echo "suite on b: $(tail -1 "$logdir/test-b.txt")"
for run in 1 2; do
  for v in a b; do
    python3 bench/cuda/bench_cuda_vs_torch.py --lib build-$v/src/cuda/libtileattn_cuda.so "$@" \
      > "$logdir/bench-$v-$run.txt" 2>&1
  done
done
python3 - "$logdir" <<'PY'
import collections, glob, sys
runs = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1] + "/bench-*.txt")):
    v = f.rsplit("bench-", 1)[1][0]
    for line in open(f):
        w = line.split()
        if len(w) > 6 and w[0].isdigit():
            runs[(w[0], w[1], w[2], w[4], v)].append(float(w[5]))
shapes = sorted({k[:4] for k in runs}, key=lambda k: (int(k[0]), k[1], int(k[2]), k[3]))
print("   D causal seqlen            tiles   a (TFLOP/s)     b (TFLOP/s)     best b / best a")
for k in shapes:
    a, b = runs[k + ("a",)], runs[k + ("b",)]
    print(f"{k[0]:>4} {k[1]:>6} {k[2]:>6} {k[3]:>16}  {' '.join(f'{x:6.1f}' for x in a)}  "
          f"{' '.join(f'{x:6.1f}' for x in b)}  {max(b) / max(a):6.3f}")
PY
