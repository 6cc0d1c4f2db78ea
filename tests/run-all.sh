#!/usr/bin/env bash
# The whole test suite: a release build, then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

setup() { # dir, options...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then meson setup --reconfigure "$dir" "$@"; else meson setup "$dir" "$@"; fi
}

setup build -Dtests=enabled
ninja -C build
meson test -C build --print-errorlogs --num-processes "$jobs"

# Sanitizers: any report is an error. LeakSanitizer stays on; the OpenMP
# runtime's thread pool is torn down at exit, so it reports no leaks.
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
setup build-asan -Dtests=enabled -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
  -Db_lundef=false
ninja -C build-asan
meson test -C build-asan --print-errorlogs --num-processes "$jobs" --timeout-multiplier 4

# Without hwloc (the sysfs fallback for caches and cores; threads are never
# bound): the API, unit and decoding suites, so that this configuration
# keeps building and its fallbacks stay tested.
unset ASAN_OPTIONS UBSAN_OPTIONS
setup build-nohwloc -Dtests=enabled -Dhwloc=disabled
ninja -C build-nohwloc
meson test -C build-nohwloc --print-errorlogs --num-processes "$jobs" --suite api --suite unit \
  --suite decode
