#!/usr/bin/env python3
"""PyTorch CPU peer for `openkern bench --device cpu --filter attention`:
`torch.nn.functional.scaled_dot_product_attention` on the CPU for openkern's attention
shapes, timed with a warm-up and a loop of about 0.5 s.

    python3 benches/peers/torch_sdpa.py                      # the whole table
    python3 benches/peers/torch_sdpa.py --one 32 8 1 2048 128 1   # q_heads kv_heads q_len kv_len head_dim causal

`--one` prints the seconds per call of that shape only (what openkern's bench calls for
each row, so the two are measured interleaved). Without torch it prints a message and
exits with status 0 (the bench then shows no peer).
"""
import argparse
import sys
import time

try:
    import torch
except ImportError:
    print("torch_sdpa.py: torch is not installed (pip install torch); skipping the peer", file=sys.stderr)
    sys.exit(0)


def seconds(hq, hk, ql, kl, d, causal, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, hq, ql, d, generator=g, dtype=dtype)
    k = torch.randn(1, hk, kl, d, generator=g, dtype=dtype)
    v = torch.randn(1, hk, kl, d, generator=g, dtype=dtype)
    mask = None
    if causal and ql == 1:
        # one query at the end sees every key
        causal = False
    if causal and ql != kl:
        # causal aligned to the end of the keys (torch's is_causal aligns to the start)
        i = torch.arange(ql).unsqueeze(1) + (kl - ql)
        mask = torch.arange(kl).unsqueeze(0) <= i
        causal = False
    gqa = hq != hk

    def f():
        torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa
        )

    with torch.inference_mode():
        f()
        t = time.perf_counter()
        f()
        once = time.perf_counter() - t
        iters = max(2, min(50, int(0.5 / max(once, 1e-6))))
        t = time.perf_counter()
        for _ in range(iters):
            f()
        return (time.perf_counter() - t) / iters


def flops(hq, ql, kl, d, causal):
    if causal:
        visible = sum(min(kl, i + kl - ql + 1) for i in range(ql))
    else:
        visible = ql * kl
    return 4.0 * hq * visible * d


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--one", nargs=6, type=int, metavar=("HQ", "HK", "QL", "KL", "D", "CAUSAL"))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.one:
        hq, hk, ql, kl, d, causal = a.one
        print(seconds(hq, hk, ql, kl, d, bool(causal)))
        return
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    seqs = [512, 1024] if a.quick else [512, 1024, 2048, 4096]
    cases = [(8, 8, 1024, 1024, 64, True), (32, 32, 2048, 2048, 128, True)]
    cases += [(32, 8, s, s, 128, True) for s in seqs]
    cases += [(12, 12, s, s, 64, False) for s in (128, 256, 512)]
    for c in cases:
        s = seconds(*c)
        print(f"sdpa hq{c[0]} hkv{c[1]} q{c[2]} kv{c[3]} d{c[4]} causal={c[5]}: {s * 1e3:9.3f} ms "
              f"{flops(c[0], c[2], c[3], c[4], c[5]) / s / 1e9:8.1f} GFLOP/s")
    for kl in ([1024, 4096] if a.quick else [1024, 4096, 16384, 32768]):
        s = seconds(32, 8, 1, kl, 128, True)
        print(f"decode hq32 hkv8 kv{kl} d128: {s * 1e3:9.3f} ms {2 * 8 * kl * 128 * 4 / s / 1e9:8.1f} GB/s of K/V")


if __name__ == "__main__":
    main()
