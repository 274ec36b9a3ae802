#!/usr/bin/env python3
"""PyTorch peer of `examples/encoder/`: the same BERT-style encoder (6 layers, hidden
384, 12 heads, FFN 1536, GELU, post-LayerNorm, mean pooling) on the same safetensors
file the example writes (random weights plus the padded batch of ids and lengths), on
the CPU. Prints the embeddings (compare with the example's) and ms per batch.

    cargo run --release --example encoder -- --seq 18 --dtype f32
    python3 benches/peers/torch_encoder.py --dtype f32 [--iters 10] [--threads N]

With `--serve` it loads and warms up, prints `ready`, then for each line `N` on stdin
runs N forwards and prints their mean seconds, until stdin closes: `openkern bench`
alternates these windows with its own (a host whose speed drifts moves both sides).

Same computation, op for op: separate Q/K/V linears, scores = q·kᵀ, softmax(scale ·
scores + additive mask), ·v, output linear, post-LN, GELU (erf) FFN, post-LN, masked
mean. f16 runs with f16 weights and activations and f32 LayerNorm parameters, as the
example does.
"""
import argparse
import json
import math
import os
import struct
import tempfile
import time

import torch
import torch.nn.functional as F

LAYERS, HIDDEN, HEADS, FFN = 6, 384, 12, 1536
HEAD_DIM = HIDDEN // HEADS
EPS = 1e-12


def load_safetensors(path):
    """A minimal safetensors reader (8-byte header length, JSON header, raw data), so the
    peer needs nothing beyond torch."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    kinds = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=kinds[meta["dtype"]])
        out[name] = t.reshape(meta["shape"])
    return out


def forward(w, ids, lengths, dtype):
    batch, seq = ids.shape
    # weights were cast to the activation dtype once, at load (see main)
    c = f = lambda name: w[name]
    x = c("embeddings.word_embeddings.weight")[ids]
    x = x + c("embeddings.position_embeddings.weight")[:seq]
    x = x + c("embeddings.token_type_embeddings.weight")[0]
    x = F.layer_norm(x, (HIDDEN,), f("embeddings.LayerNorm.weight").to(dtype), f("embeddings.LayerNorm.bias").to(dtype), EPS)
    keep = torch.arange(seq)[None, :] < lengths[:, None]
    mask = torch.zeros(batch, 1, 1, seq, dtype=dtype).masked_fill(~keep[:, None, None, :], float("-inf"))
    heads = lambda t: t.view(batch, seq, HEADS, HEAD_DIM).permute(0, 2, 1, 3)
    for l in range(LAYERS):
        p = f"encoder.layer.{l}."
        lin = lambda t, n: F.linear(t, c(p + n + ".weight"), f(p + n + ".bias").to(dtype))
        q = heads(lin(x, "attention.self.query"))
        k = heads(lin(x, "attention.self.key"))
        v = heads(lin(x, "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM) + mask
        probs = torch.softmax(scores.float(), dim=-1).to(dtype)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(batch, seq, HIDDEN)
        attn = lin(ctx, "attention.output.dense")
        ln = p + "attention.output.LayerNorm"
        x = F.layer_norm(attn + x, (HIDDEN,), f(ln + ".weight").to(dtype), f(ln + ".bias").to(dtype), EPS)
        h = F.gelu(lin(x, "intermediate.dense"))
        h = lin(h, "output.dense")
        ln = p + "output.LayerNorm"
        x = F.layer_norm(h + x, (HIDDEN,), f(ln + ".weight").to(dtype), f(ln + ".bias").to(dtype), EPS)
    summed = (x * keep[:, :, None].to(dtype)).float().sum(1)
    return summed / lengths[:, None].float()


def serve(run):
    """The `--serve` loop: one warm-up forward, `ready`, then a timed window per line."""
    import sys

    run()
    print("ready", flush=True)
    for line in sys.stdin:
        n = max(int(line), 1)
        start = time.perf_counter()
        for _ in range(n):
            run()
        print(f"{(time.perf_counter() - start) / n:.9f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=os.path.join(tempfile.gettempdir(), "openkern_encoder_random.safetensors"))
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--serve", action="store_true", help="time windows of N forwards read from stdin (see above)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    w = load_safetensors(args.file)
    ids, lengths = w["input_ids"], w["lengths"]
    # cast once, as a model loaded in that dtype would be (not on every forward)
    w = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in w.items()}
    with torch.inference_mode():
        if args.serve:
            serve(lambda: forward(w, ids, lengths, dtype))
            return
        emb = forward(w, ids, lengths, dtype)
        print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; batch {tuple(ids.shape)} lengths {lengths.tolist()} {args.dtype}")
        for b, row in enumerate(emb):
            head = ", ".join(f"{v:+.5f}" for v in row[:6].tolist())
            print(f"embedding[{b}] = [{head}, ...]  |e| = {row.norm().item():.5f}")
        start = time.perf_counter()
        for _ in range(args.iters):
            forward(w, ids, lengths, dtype)
        ms = (time.perf_counter() - start) * 1e3 / max(args.iters, 1)
    print(f"time per batch: {ms:.2f} ms ({ids.shape[0]} x {ids.shape[1]} tokens, {args.dtype}, {args.iters} iterations)")


if __name__ == "__main__":
    main()
