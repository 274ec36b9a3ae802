#!/usr/bin/env python3
"""PyTorch/cuBLAS peer for `openkern bench --filter matmul`: GFLOP/s of f32 (TF32 off)
and f16 GEMMs at the sizes openkern benchmarks, timed with CUDA events.

Run it on the same machine, right after openkern's bench, and compare row by row:

    python3 benches/peers/torch_matmul.py            # all shapes
    python3 benches/peers/torch_matmul.py --quick    # 4096³ and M=1 only

Output: one line per case, `case dtype ms GFLOP/s [GB/s for M=1]`.
"""
import argparse

import torch


def bench(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    # cuBLAS f32 without tensor cores: the "f32 with TF32 off" baseline.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    dev = torch.device("cuda")
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name(dev)}")
    squares = [4096] if args.quick else [256, 512, 1024, 2048, 4096]
    for n in squares:
        for dt in (torch.float32, torch.float16):
            a = torch.randn(n, n, device=dev, dtype=dt)
            b = torch.randn(n, n, device=dev, dtype=dt)
            s = bench(lambda: a @ b, 50 if n <= 2048 else 20)
            print(f"{n}^3 {str(dt)[6:]:8} {s * 1e3:10.3f} ms {2 * n**3 / s / 1e9:10.1f} GFLOP/s")
    ms = [1] if args.quick else [1, 16, 512]
    for n, k in [(4096, 4096), (11008, 4096), (4096, 11008)]:
        for dt in (torch.float32, torch.float16):
            w = torch.randn(n, k, device=dev, dtype=dt)
            for m in ms:
                x = torch.randn(m, k, device=dev, dtype=dt)
                s = bench(lambda: torch.nn.functional.linear(x, w), 100)
                line = f"linear {m}x{n}x{k} {str(dt)[6:]:8} {s * 1e3:10.3f} ms {2 * m * n * k / s / 1e9:10.1f} GFLOP/s"
                if m == 1:
                    bytes_ = (n * k + k + n) * w.element_size()
                    line += f" {bytes_ / s / 1e9:8.1f} GB/s"
                print(line)


if __name__ == "__main__":
    main()
