#!/usr/bin/env python3
"""NumPy peer of `openkern bench` on the CPU: the same shapes (openkern's shape list),
timed by wall clock, written in the openkern-bench JSON format.

    openkern bench --device cpu --json ok.json
    python3 benches/peers/numpy_suite.py --openkern target/release/openkern --json numpy.json
    openkern compare numpy.json ok.json

NumPy's matmul is its BLAS (OpenBLAS in the wheels); everything else is plain NumPy
array code, as a Python engine without a kernel library would write it. f16 matmuls are
skipped (NumPy has no f16 BLAS; they would time a scalar loop). Skips with a message
when NumPy is not installed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_suite  # noqa: E402

try:
    import numpy as np
except ImportError:
    print("numpy_suite: skipped: NumPy is not installed (pip install numpy)")
    sys.exit(0)


def data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.random(shape, dtype=np.float32) * 4 - 2).astype(dtype)


def rms(x, w):
    x32 = x.astype(np.float32)
    return (x32 / np.sqrt((x32 * x32).mean(-1, keepdims=True) + 1e-6) * w).astype(x.dtype)


def make(case):
    dt = {"f32": np.float32, "f16": np.float16}.get(case["dtype"])
    fam, op, s = case["family"], case["op"], case["shape"]
    if dt is None or (fam in ("linear", "gemv", "gemm") and dt != np.float32):
        print(f"numpy_suite: skipped {op} {s} {case['dtype']}: no {case['dtype']} BLAS in NumPy", file=sys.stderr)
        return None
    if fam in ("linear", "gemv"):
        m, n, k = s
        x, w = data((m, k), dt, 4), data((n, k), dt, 3)
        return "x @ w.T (BLAS)", lambda: x @ w.T
    if fam == "gemm":
        n = s[0]
        a, b = data((n, n), dt, 1), data((n, n), dt, 2)
        return "a @ b (BLAS)", lambda: a @ b
    if op == "rms_norm":
        x, w = data(s, dt, 1), data(s[-1:], dt, 3)
        return "numpy", lambda: rms(x, w)
    if op == "add_rms_norm":
        x, r, w = data(s, dt, 1), data(s, dt, 2), data(s[-1:], dt, 3)

        def f():
            h = x + r
            return h, rms(h, w)

        return "numpy", f
    if op == "add":
        a, b = data(s, dt, 1), data(s, dt, 2)
        return "numpy", lambda: a + b
    if op == "swiglu":
        g, u = data(s, dt, 1), data(s, dt, 2)
        return "numpy", lambda: g / (1 + np.exp(-g)) * u
    if op == "silu":
        x = data(s, dt, 1)
        return "numpy", lambda: x / (1 + np.exp(-x))
    if fam == "rope":
        rows, heads, d = s
        x = data(s, dt, 1)
        pos0 = 4000 if case["phase"] == "decode" else 0
        inv = (1.0 / 500000.0 ** (np.arange(0, d, 2, dtype=np.float64) / d)).astype(np.float32)

        def f():
            ang = (np.arange(pos0, pos0 + rows, dtype=np.float32)[:, None] * inv)[:, None, :]
            c, sn = np.cos(ang), np.sin(ang)
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
            return np.concatenate([x1 * c - x2 * sn, x2 * c + x1 * sn], -1).astype(dt)

        return "numpy (halves)", f
    if fam == "embedding":
        tokens, vocab, d = s
        table = data((vocab, d), dt, 1)
        ids = (np.arange(tokens) * 7919) % vocab
        return "table[ids]", lambda: table[ids]
    if fam == "softmax":
        x = data(s, dt, 1)
        causal = op == "softmax.causal"
        scale = 0.088 if causal else 1.0
        q, k = (s[-2], s[-1]) if len(s) == 3 else (1, s[-1])
        mask = np.where(np.arange(k)[None, :] <= np.arange(q)[:, None] + (k - q), 0, -np.inf).astype(np.float32)

        def f():
            z = x.astype(np.float32) * scale
            if causal:
                z = z + mask
            z = np.exp(z - z.max(-1, keepdims=True))
            return (z / z.sum(-1, keepdims=True)).astype(dt)

        return "numpy", f
    if op == "argmax":
        x = data(s, dt, 1)
        return "np.argmax", lambda: x.argmax(-1)
    print(f"numpy_suite: skipped {fam}/{op}: no NumPy version", file=sys.stderr)
    return None


if __name__ == "__main__":
    args = peer_suite.parser(__doc__.splitlines()[0]).parse_args()
    device = {
        "name": peer_suite.cpu_name(),
        "backend": "numpy",
        "device_type": "cpu",
        "driver": f"numpy {np.__version__}",
    }
    peer_suite.main("numpy", np.__version__, device, make, args)
