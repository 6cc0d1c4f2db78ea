#!/bin/sh
# End to end on a GPU machine: random float16 .npy inputs (numpy), then
# `tileattn run --device cuda` and `tileattn check` against the CPU's float64
# reference, for a few mask and shape cases; last, a corrupted output must
# make check fail. Usage: sh bench/cuda/check_cli.sh BUILD_DIR [WORK_DIR]
set -u
build=$1 work=${2:-$(mktemp -d)}
cli=$build/src/cli/tileattn device=${DEVICE:-cuda} # DEVICE=cpu tries the script here
mkdir -p "$work"
fails=0
make_inputs() { # B SQ SK H HK D
  python3 - "$work" "$@" <<'PY'
import sys, numpy as np
work, b, sq, sk, h, hk, d = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(b * 1000 + sq + sk + h + d)
for name, s, heads in (("q", sq, h), ("k", sk, hk), ("v", sk, hk)):
    np.save(f"{work}/{name}.npy", rng.uniform(-2, 2, (b, s, heads, d)).astype(np.float16))
np.save(f"{work}/alibi.npy", (2.0 ** -np.arange(1, h + 1)).astype(np.float32))
PY
}
case_() { # name "B SQ SK H HK D" flags...
  name=$1 shape=$2
  shift 2
  make_inputs $shape
  rm -f "$work/o.npy" "$work/lse.npy"
  if ! "$cli" run --device "$device" --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" \
       --out "$work/o.npy" --lse "$work/lse.npy" "$@" > "$work/run.txt" 2>&1; then
    echo "FAIL $name: run: $(cat "$work/run.txt")"; fails=$((fails + 1)); return
  fi
  if "$cli" check --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --o "$work/o.npy" \
       --lse "$work/lse.npy" "$@" > "$work/check.txt" 2>&1; then
    echo "ok   $name: $(grep -m1 -i 'max' "$work/check.txt")"
  else
    echo "FAIL $name: $(cat "$work/check.txt")"; fails=$((fails + 1))
  fi
}
case_ "D=64 plain"                "2 300 300 4 4 64"
case_ "D=128 causal"              "1 1000 1000 8 8 128" --causal
case_ "D=128 GQA 8/2, window"     "2 777 777 8 2 128" --window 100,20
case_ "D=64 softcap, ALiBi, Sq<Sk" "1 129 511 4 4 64" --softcap 30 --alibi "$work/alibi.npy" --causal
case_ "D=256 causal top-left"     "1 333 400 2 2 256" --causal-top-left
case_ "D=96 (runs on 128)"        "1 200 260 2 1 96" --causal
# A corrupted output must be caught.
python3 -c "import numpy as np; o = np.load('$work/o.npy'); o.flat[7] += 0.5; np.save('$work/o.npy', o)"
if "$cli" check --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --o "$work/o.npy" \
     --causal > "$work/check.txt" 2>&1; then
  echo "FAIL check accepted a corrupted output"; fails=$((fails + 1))
else
  echo "ok   check rejects a corrupted output: $(grep -m1 -i 'max' "$work/check.txt")"
fi
echo "$fails failures"
[ "$fails" -eq 0 ]
