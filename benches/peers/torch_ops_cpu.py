#!/usr/bin/env python3
"""PyTorch CPU peer for `openkern bench --device cpu --filter <family>` (elementwise,
activation, norm, rope, cast rows at 4096x4096) and the small-M linears of the encoder:
ms and GB/s (GFLOP/s for linear) of the same computation, to divide row by row.

    python3 benches/peers/torch_ops_cpu.py [--threads N]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def bench(fn, iters=10):
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads (CPU)")
    m, n = 4096, 4096
    with torch.inference_mode():
        for dt, size in ((torch.float32, 4), (torch.float16, 2)):
            name = str(dt)[6:]
            a = torch.rand(m, n, dtype=dt)
            b = torch.rand(m, n, dtype=dt)
            bias = torch.rand(n, dtype=dt)
            w = torch.ones(n, dtype=dt)
            cases = [
                ("add", lambda: a + b, 3),
                ("add bias row", lambda: a + bias, 2),
                ("gelu", lambda: F.gelu(a), 2),
                ("silu", lambda: F.silu(a), 2),
                ("layer_norm", lambda: F.layer_norm(a, (n,), w, bias, 1e-5), 2),
                ("cast", lambda: a.to(torch.float16 if dt == torch.float32 else torch.float32), None),
                ("copy", lambda: a.clone(), 2),
            ]
            for case, fn, passes in cases:
                s = bench(fn)
                moved = passes * m * n * size if passes else m * n * (4 + 2)
                print(f"{case:<14} {m}x{n} {name:8} {s * 1e3:9.3f} ms {moved / s / 1e9:8.2f} GB/s")
        for rows in (16, 72):
            for k, o in ((384, 384), (384, 1536), (1536, 384)):
                x = torch.rand(rows, k)
                wt = torch.rand(o, k)
                bb = torch.rand(o)
                s = bench(lambda: F.linear(x, wt, bb), 50)
                print(f"linear {rows}x{k}->{o} f32 {s * 1e3:9.3f} ms {2 * rows * k * o / s / 1e9:8.2f} GFLOP/s")


if __name__ == "__main__":
    main()
