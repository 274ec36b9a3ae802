#!/usr/bin/env python3
"""PyTorch CPU peer for `openkern bench --device cpu --filter <family>` (elementwise,
activation, norm, rope, cast rows at 4096x4096) and the small-M linears of the encoder:
ms and GB/s (GFLOP/s for linear) of the same computation, to divide row by row.

    python3 benches/peers/torch_ops_cpu.py [--threads N]
    python3 benches/peers/torch_ops_cpu.py --linear 16x1536x384,512x960x576
        # M x N x K: F.linear(x [M, K], w [N, K], bias [N]) in f32; prints the median
        # seconds per call of each case, one per line (what `openkern bench` calls for
        # its `linear-torch` rows; the same timing scheme as openkern's rows: warm-up,
        # then 5 windows of at least 30 ms, their median)
    python3 benches/peers/torch_ops_cpu.py --serve-linear [--threads N]
        # `ready`, then for each stdin line `M N K ITERS` the seconds per F.linear over
        # ITERS calls (f32, with bias): what `openkern bench` alternates with its own
        # `linear-torch` windows

Without torch it prints a message and exits with status 0.
"""
import argparse
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_ops_cpu.py: torch is not installed (pip install torch); skipping the peer", file=sys.stderr)
    sys.exit(0)


def bench(fn, iters=10):
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def median_seconds(fn, window=0.03, samples=5):
    """Median seconds per call over `samples` windows of at least `window` seconds, after
    0.1 s of warm-up calls (OpenMP's threads spin up on the first ones)."""
    start = time.perf_counter()
    while time.perf_counter() - start < 0.1:
        fn()
    start = time.perf_counter()
    fn()
    first = max(time.perf_counter() - start, 1e-7)
    iters = max(1, min(500, int(window / first)))
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - start) / iters)
    out.sort()
    return out[len(out) // 2]


def linear_cases(spec):
    """Seconds of F.linear with bias for each MxNxK case of `spec`, f32."""
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for case in spec.split(","):
            m, n, k = (int(v) for v in case.split("x"))
            x = torch.rand(m, k, generator=g) * 2 - 1
            w = (torch.rand(n, k, generator=g) * 2 - 1) / k**0.5
            b = torch.rand(n, generator=g)
            print(f"{median_seconds(lambda: F.linear(x, w, b)):.9f}", flush=True)


def serve_linear():
    """The `--serve-linear` loop: inputs made and 0.1 s of warm-up calls run the first
    time a shape is asked for, then a timed window per request."""
    g = torch.Generator().manual_seed(0)
    calls = {}
    print("ready", flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            m, n, k, iters = (int(v) for v in line.split())
            if (m, n, k) not in calls:
                x = torch.rand(m, k, generator=g) * 2 - 1
                w = (torch.rand(n, k, generator=g) * 2 - 1) / k**0.5
                b = torch.rand(n, generator=g)
                fn = lambda x=x, w=w, b=b: F.linear(x, w, b)
                start = time.perf_counter()
                while time.perf_counter() - start < 0.1:
                    fn()
                calls[(m, n, k)] = fn
            fn, iters = calls[(m, n, k)], max(iters, 1)
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            print(f"{(time.perf_counter() - start) / iters:.9f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--linear", help="MxNxK cases, comma-separated: print seconds per F.linear")
    ap.add_argument("--serve-linear", action="store_true", help="time F.linear windows asked for on stdin (see above)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.serve_linear:
        serve_linear()
        return
    if args.linear:
        linear_cases(args.linear)
        return
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
