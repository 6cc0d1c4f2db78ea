#!/usr/bin/env python3
"""What float16 arithmetic would cost attention's accuracy.

AVX512-FP16 (Sapphire Rapids and later) multiplies and adds float16 vectors
at twice the float32 rate, but only into float16: VFMADD*PH round every
fused multiply-add to binary16 (11 significant bits). x86 has no float16
dot product into float32 before AVX10.2's VDPPHPS, so a tileattn kernel on
AVX512-FP16 would accumulate Q.K^T over D and P.V over the keys in float16.
This script measures what that does to O, against float32 accumulation (what
tileattn does for float16 inputs: they are widened when packed), both
against float64, on the same float16 inputs, N(0,1) data:

    python3 bench/fp16_accumulation_error.py

Each float16 FMA is emulated exactly: the product of two float16 values and
its sum with a float16 accumulator are exact in float64, then rounded once
to float16 (numpy's float16 cast rounds to nearest even), as VFMADD231PH
does. The softmax itself is computed in float64 in all three, so the
difference is the accumulation alone. Needs numpy.
"""
import numpy as np


def fma16(acc, a, b):
    """acc + a * b with one rounding to float16 (a fused multiply-add)."""
    return (acc.astype(np.float64) + a.astype(np.float64) * b.astype(np.float64)).astype(
        np.float16)


def attention(q, k, v, accumulate):
    """O of softmax(q k^T / sqrt(D)) v with Q.K^T and P.V accumulated in
    float64, float32 or float16 (P rounded to float16 for P.V there)."""
    scale = 1.0 / np.sqrt(q.shape[1])
    if accumulate == "f16":
        s = np.zeros((q.shape[0], k.shape[0]), np.float16)
        for c in range(q.shape[1]):
            s = fma16(s, q[:, c:c + 1], k[None, :, c])
        s = s.astype(np.float64) * scale
    else:
        t = np.float64 if accumulate == "f64" else np.float32
        s = (q.astype(t) @ k.astype(t).T).astype(np.float64) * scale
    p = np.exp(s - s.max(axis=1, keepdims=True))
    denom = p.sum(axis=1, keepdims=True)
    if accumulate == "f16":
        p16, o = p.astype(np.float16), np.zeros((q.shape[0], v.shape[1]), np.float16)
        for j in range(k.shape[0]):
            o = fma16(o, p16[:, j:j + 1], v[None, j, :])
        return o.astype(np.float64) / denom
    t = np.float64 if accumulate == "f64" else np.float32
    return (p.astype(t) @ v.astype(t)).astype(np.float64) / denom


def main():
    rng = np.random.default_rng(0)
    for n, d in ((256, 64), (256, 128), (1024, 128)):
        q, k, v = (rng.standard_normal((n, d)).astype(np.float16) for _ in range(3))
        ref = attention(q, k, v, "f64")
        e32 = np.abs(attention(q, k, v, "f32") - ref).max()
        e16 = np.abs(attention(q, k, v, "f16") - ref).max()
        print(f"Sq = Sk = {n:5d}, D = {d:3d}: max |O - O_float64|: float32 accumulation "
              f"{e32:.2e}, float16 accumulation {e16:.2e} ({e16 / e32:.0f}x); "
              f"max |O| {np.abs(ref).max():.2f}")


if __name__ == "__main__":
    main()
