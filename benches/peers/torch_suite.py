#!/usr/bin/env python3
"""PyTorch peer of `openkern bench`: the same shapes (openkern's shape list), written in
the openkern-bench JSON format. On CUDA: cuBLAS matmuls (TF32 off for f32, so f32 is
f32), scaled_dot_product_attention for attention rows, timed with CUDA events. On the
CPU (no CUDA, or --cpu): PyTorch's CPU kernels, timed by wall clock.

    openkern bench --full --json ok.json
    python3 benches/peers/torch_suite.py --openkern ./openkern --full --json torch.json
    openkern compare torch.json ok.json

Skips with a message when PyTorch is not installed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_suite  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_suite: skipped: PyTorch is not installed (pip install torch)")
    sys.exit(0)

DEV = "cpu"


def data(shape, dt, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.rand(shape, generator=g) * 4 - 2).to(device=DEV, dtype=dt)


def rms(x, w):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w


def make(case):
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[case["dtype"]]
    fam, op, s = case["family"], case["op"], case["shape"]
    lib = "cuBLAS" if DEV == "cuda" else "torch cpu"
    if fam in ("linear", "gemv"):
        m, n, k = s
        x, w = data((m, k), dt, 4), data((n, k), dt, 3)
        return f"F.linear ({lib})", lambda: F.linear(x, w)
    if fam == "gemm":
        n = s[0]
        a, b = data((n, n), dt, 1), data((n, n), dt, 2)
        return f"a @ b ({lib})", lambda: a @ b
    if op == "rms_norm":
        x, w = data(s, dt, 1), data(s[-1:], dt, 3)
        if hasattr(F, "rms_norm"):
            return "F.rms_norm", lambda: F.rms_norm(x, (s[-1],), w, 1e-6)
        return "torch ops", lambda: rms(x, w)
    if op == "add_rms_norm":
        x, r, w = data(s, dt, 1), data(s, dt, 2), data(s[-1:], dt, 3)

        def f():
            h = x + r
            return h, F.rms_norm(h, (s[-1],), w, 1e-6) if hasattr(F, "rms_norm") else rms(h, w)

        return "add + F.rms_norm", f
    if op == "add":
        a, b = data(s, dt, 1), data(s, dt, 2)
        return "torch.add", lambda: a + b
    if op == "swiglu":
        g, u = data(s, dt, 1), data(s, dt, 2)
        return "F.silu(g) * u", lambda: F.silu(g) * u
    if op == "silu":
        x = data(s, dt, 1)
        return "F.silu", lambda: F.silu(x)
    if fam == "rope":
        rows, heads, d = s
        x = data(s, dt, 1)
        pos0 = 4000 if case["phase"] == "decode" else 0
        inv = 1.0 / 500000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        inv = inv.float().to(DEV)

        def f():
            # as Hugging Face Llama: cos/sin of the positions, then rotate_half
            ang = (torch.arange(pos0, pos0 + rows, device=DEV, dtype=torch.float32)[:, None] * inv)
            emb = torch.cat([ang, ang], -1)[:, None, :]
            c, sn = emb.cos().to(dt), emb.sin().to(dt)
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
            return x * c + torch.cat([-x2, x1], -1) * sn

        return "rotate_half (HF)", f
    if fam == "embedding":
        tokens, vocab, d = s
        table = data((vocab, d), dt, 1)
        ids = ((torch.arange(tokens) * 7919) % vocab).to(DEV)
        return "F.embedding", lambda: F.embedding(ids, table)
    if fam == "softmax":
        x = data(s, dt, 1)
        if op == "softmax.causal":
            q, k = s[-2], s[-1]
            keep = torch.arange(k, device=DEV)[None, :] <= torch.arange(q, device=DEV)[:, None] + (k - q)
            mask = torch.zeros(q, k, device=DEV, dtype=dt).masked_fill(~keep, float("-inf"))
            return "softmax(x*scale + mask)", lambda: torch.softmax(x * 0.088 + mask, -1)
        return "torch.softmax", lambda: torch.softmax(x, -1)
    if op == "argmax":
        x = data(s, dt, 1)
        return "torch.argmax", lambda: x.argmax(-1)
    if fam == "attention":
        # [heads, kv_heads, q_len, kv_len, head_dim]; causal for prefill
        h, kvh, q, kv, d = s
        qt = data((1, h, q, d), dt, 1)
        kt = data((1, kvh, kv, d), dt, 2).repeat_interleave(h // kvh, 1)
        vt = data((1, kvh, kv, d), dt, 3).repeat_interleave(h // kvh, 1)
        causal = case["phase"] == "prefill"
        return "F.scaled_dot_product_attention", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
    print(f"torch_suite: skipped {fam}/{op}: no PyTorch version", file=sys.stderr)
    return None


def cuda_clock(run, iters):
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


if __name__ == "__main__":
    p = peer_suite.parser(__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="the CPU even where CUDA is available")
    p.add_argument("--threads", type=int, help="torch.set_num_threads on the CPU (an "
                   "OpenMP pool as large as an oversubscribed machine's cores stalls for ms)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.cuda.is_available() and not args.cpu:
        DEV = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        props = torch.cuda.get_device_properties(0)
        device = {
            "name": props.name,
            "backend": "cuda",
            "device_type": "discrete-gpu",
            "driver": f"torch {torch.__version__}, CUDA {torch.version.cuda}",
        }
        peer_suite.main("torch", torch.__version__, device, make, args, clock=cuda_clock,
                        sync=torch.cuda.synchronize, timing="cuda-events")
    else:
        device = {
            "name": peer_suite.cpu_name(),
            "backend": "torch-cpu",
            "device_type": "cpu",
            "driver": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        }
        peer_suite.main("torch", torch.__version__, device, make, args)
