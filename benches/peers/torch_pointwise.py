#!/usr/bin/env python3
"""PyTorch CPU peer for the `pointwise` rows of `openkern bench --device cpu`: the same
elementwise, activation, unary, norm, RoPE and cast computations on the same shapes,
timed the same way (0.1 s of warm-up, then the median of 5 windows of ~30 ms).

The bench starts this script once and talks to it over stdin/stdout, one case per line,
so that each of its rows and the peer's are measured back to back (interleaved):

    in:  OP DTYPE ROWS COLS          e.g. `gelu f16 4096 4096`
    out: SECONDS                     (or `skip REASON`)

A first line `ready torch VERSION THREADS` says the peer is up. Run by hand for a table:

    python3 benches/peers/torch_pointwise.py --table [--threads N]
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

# the same timing as the linear peer: warm-up, then the median of 5 windows
from torch_ops_cpu import median_seconds

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def data(rows, cols, dt, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, cols, generator=g) * 4 - 2).to(dt)


def rope_tables(tokens, head_dim, dt):
    inv = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = torch.arange(tokens, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dt)[:, None, :], emb.sin().to(dt)[:, None, :]


def case_fn(op, dt, rows, cols):
    """The computation of `op` on [rows, cols] (RoPE: [rows, cols/128, 128])."""
    a = data(rows, cols, dt, 1)
    b = data(rows, cols, dt, 2)
    w = torch.ones(cols, dtype=dt)
    bias = data(1, cols, dt, 3)[0]
    eps = 1e-5
    if op == "rope":
        x = a.view(rows, cols // 128, 128)
        cos, sin = rope_tables(rows, 128, dt)

        def rope():
            x1, x2 = x[..., :64], x[..., 64:]
            return x * cos + torch.cat((-x2, x1), dim=-1) * sin

        return rope
    table = {
        "add": lambda: a + b,
        "mul": lambda: a * b,
        "add.bias_row": lambda: a + bias,
        "mul_scalar": lambda: a * 0.5,
        "gelu": lambda: F.gelu(a),
        "gelu_tanh": lambda: F.gelu(a, approximate="tanh"),
        "silu": lambda: F.silu(a),
        "relu": lambda: F.relu(a),
        "swiglu": lambda: F.silu(a) * b,
        "exp": lambda: torch.exp(a),
        "log": lambda: torch.log(a),
        "sqrt": lambda: torch.sqrt(a),
        "rsqrt": lambda: torch.rsqrt(a),
        "neg": lambda: torch.neg(a),
        "abs": lambda: torch.abs(a),
        "tanh": lambda: torch.tanh(a),
        "sigmoid": lambda: torch.sigmoid(a),
        "clamp": lambda: torch.clamp(a, -1.0, 1.0),
        "rms_norm": lambda: F.rms_norm(a, (cols,), w, eps),
        "layer_norm": lambda: F.layer_norm(a, (cols,), w, bias, eps),
        # the residual sum is an output too (the next layer's residual)
        "add_rms_norm": lambda: (lambda h: (h, F.rms_norm(h, (cols,), w, eps)))(a + b),
        "l2_normalize": lambda: F.normalize(a, dim=-1, eps=eps),
        "cast": lambda: a.to(torch.float16 if dt == torch.float32 else torch.float32),
    }
    return table.get(op)


def serve():
    print(f"ready torch {torch.__version__} {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 4 or parts[1] not in DTYPES:
            print("skip malformed request", flush=True)
            continue
        op, dt, rows, cols = parts[0], DTYPES[parts[1]], int(parts[2]), int(parts[3])
        with torch.inference_mode():
            fn = case_fn(op, dt, rows, cols)
            if fn is None:
                print(f"skip no torch twin for {op}", flush=True)
                continue
            print(f"{median_seconds(fn):.9g}", flush=True)


def table():
    ops = ["add", "mul", "add.bias_row", "gelu", "silu", "swiglu", "exp", "rms_norm",
           "layer_norm", "add_rms_norm", "rope", "cast"]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads (CPU)")
    with torch.inference_mode():
        for name, dt in (("f32", torch.float32), ("f16", torch.float16)):
            for op in ops:
                s = median_seconds(case_fn(op, dt, 4096, 4096))
                print(f"{op:<14} 4096x4096 {name:4} {s * 1e3:9.3f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.table:
        table()
    else:
        serve()


if __name__ == "__main__":
    main()
