#!/bin/sh
# Builds the CUDA backend, runs its tests and the benchmark against PyTorch,
# on a GPU machine: sh bench/cuda/run_gpu.sh [LOGDIR] [bench options...]
# The CPU suite's Criterion tests are left out (-Dtests=disabled).
set -u
logdir=${1:-.}
[ $# -gt 0 ] && shift
mkdir -p "$logdir"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$logdir/gpu.txt" 2>&1
meson setup build-gpu -Dtests=disabled -Dcuda=enabled > "$logdir/setup.log" 2>&1 || {
  tail -30 "$logdir/setup.log"; exit 1; }
# Only the targets this needs: the CPU library (the test's reference) and ours.
start=$(date +%s)
ninja -C build-gpu src/cuda/libtileattn_cuda.so.0.1.0 tests/cuda/test_cuda_forward > "$logdir/build.log" 2>&1 || {
  grep -E "error|FAILED" "$logdir/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
grep -c "spilled" "$logdir/build.log" | sed 's/^/ptxas spill warnings: /'
meson test -C build-gpu --suite cuda --print-errorlogs > "$logdir/test.log" 2>&1
test_rc=$?
cp build-gpu/meson-logs/testlog.txt "$logdir/testlog.txt" 2>/dev/null
grep -E "FAIL|cases passed|refuses" build-gpu/meson-logs/testlog.txt | tail -15
echo "meson test rc=$test_rc"
PYTHONUNBUFFERED=1 python3 bench/cuda/bench_cuda_vs_torch.py --lib build-gpu/src/cuda/libtileattn_cuda.so "$@" 2>&1 | tee "$logdir/bench.txt"
