#!/usr/bin/env python3
"""PyTorch CPU peer of openkern's `llama` bench rows: the same LLaMA decoder (the ~135M
shape of SmolLM-135M: hidden 576, 9 heads over 3 kv heads, FFN 1536, vocab 49152, tied
head) in plain torch ops, f32, eager, on the CPU, with a preallocated KV cache (what
transformers' StaticCache does; its default cache concatenates every step, which is
slower). Random weights; the decoder is HF's LlamaForCausalLM forward written out:
RMS norm, q/k/v projections, RoPE in the split-halves layout, SDPA with grouped-query
heads, o projection, SwiGLU MLP, final norm, LM head of the last position, argmax.

    python3 benches/peers/torch_llama.py                 # prefill 512 + decode, 30 layers
    python3 benches/peers/torch_llama.py --json torch_llama.json [--full] [--layers N]
    python3 benches/peers/torch_llama.py --one 30 512 30  # layers prompt steps: prints
                                                          # "prefill_s decode_s_per_token"
    python3 benches/peers/torch_llama.py --save DIR --layers 4 --prompt-ids 1,2,3 --new 8

`--one` is what `openkern bench` calls for each llama row on the CPU device, so the two
are measured interleaved. `--json` writes rows in the `openkern-bench` format with the
same keys as openkern's (family `llama`, op `llama.prefill` / `llama.decode`, model
`135m`, shape [layers, prompt, steps]), so `openkern compare torch_llama.json ok.json`
sets them side by side. `--save` writes the random model as a Hugging Face checkpoint
(config.json + model.safetensors) and prints the greedy ids torch generates for the
prompt: `cargo run --release --example llama -- --model DIR --prompt-ids ...` must print
the same ids. Without torch it prints a message and exits with status 0.
"""
import argparse
import datetime
import json
import math
import os
import struct
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch_llama.py: torch is not installed (pip install torch); skipping the peer", file=sys.stderr)
    sys.exit(0)

HIDDEN, HEADS, KV_HEADS, FFN, VOCAB, LAYERS = 576, 9, 3, 1536, 49152, 30
HEAD_DIM = HIDDEN // HEADS
THETA, EPS = 100000.0, 1e-5


class Llama:
    def __init__(self, layers, seed=0, scale=0.5):
        g = torch.Generator().manual_seed(seed)

        def w(out, inp):
            return (torch.rand(out, inp, generator=g) * 2 - 1) * (scale / math.sqrt(inp))

        def norm():
            return 1.0 + 0.1 * (torch.rand(HIDDEN, generator=g) * 2 - 1)

        self.layers = layers
        self.embed = (torch.rand(VOCAB, HIDDEN, generator=g) * 2 - 1) * 0.2 * scale
        self.w = []
        for _ in range(layers):
            self.w.append(dict(
                input_layernorm=norm(),
                q_proj=w(HEADS * HEAD_DIM, HIDDEN), k_proj=w(KV_HEADS * HEAD_DIM, HIDDEN),
                v_proj=w(KV_HEADS * HEAD_DIM, HIDDEN), o_proj=w(HIDDEN, HEADS * HEAD_DIM),
                post_attention_layernorm=norm(),
                gate_proj=w(FFN, HIDDEN), up_proj=w(FFN, HIDDEN), down_proj=w(HIDDEN, FFN)))
        self.norm = norm()
        self.inv_freq = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.int64).float() / HEAD_DIM))

    def cache(self, capacity):
        return [(torch.zeros(1, KV_HEADS, capacity, HEAD_DIM), torch.zeros(1, KV_HEADS, capacity, HEAD_DIM))
                for _ in range(self.layers)]

    def next_token(self, ids, cache, pos):
        """ids: int64 [n]; appends to `cache` at `pos`; returns the argmax id tensor [1]."""
        n = ids.shape[0]
        x = F.embedding(ids, self.embed)  # [n, hidden]
        t = torch.arange(pos, pos + n, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()  # [n, head_dim]

        def rms(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

        def rope(x):  # [1, heads, n, d]
            half = HEAD_DIM // 2
            rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
            return x * cos + rot * sin

        for l, w in enumerate(self.w):
            h = rms(x, w["input_layernorm"])
            q = F.linear(h, w["q_proj"]).view(n, HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            k = F.linear(h, w["k_proj"]).view(n, KV_HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            v = F.linear(h, w["v_proj"]).view(n, KV_HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            q, k = rope(q), rope(k)
            ck, cv = cache[l]
            ck[:, :, pos:pos + n] = k
            cv[:, :, pos:pos + n] = v
            K, V = ck[:, :, :pos + n], cv[:, :, :pos + n]
            if n == 1:
                # contiguous keys (what a concatenating cache holds): torch's CPU SDPA is
                # several times faster on them than on the strided cache view
                a = F.scaled_dot_product_attention(q, K.contiguous(), V.contiguous(), enable_gqa=True)
            elif pos == 0:
                a = F.scaled_dot_product_attention(q, K, V, is_causal=True, enable_gqa=True)
            else:  # a chunk after earlier tokens: causal aligned to the end of the keys
                i = torch.arange(n).unsqueeze(1) + pos
                mask = torch.arange(pos + n).unsqueeze(0) <= i
                a = F.scaled_dot_product_attention(q, K, V, attn_mask=mask, enable_gqa=True)
            a = a.squeeze(0).transpose(0, 1).reshape(n, HEADS * HEAD_DIM)
            x = x + F.linear(a, w["o_proj"])
            h = rms(x, w["post_attention_layernorm"])
            x = x + F.linear(F.silu(F.linear(h, w["gate_proj"])) * F.linear(h, w["up_proj"]), w["down_proj"])
        last = rms(x[-1:], self.norm)
        return torch.argmax(F.linear(last, self.embed), dim=-1)


def prompt_ids(n):
    return torch.tensor([(i * 7919 + 13) % VOCAB for i in range(n)], dtype=torch.int64)


def time_prefill(model, prompt):
    ids = prompt_ids(prompt)
    samples = []
    for i in range(4):
        cache = model.cache(prompt)
        t = time.perf_counter()
        int(model.next_token(ids, cache, 0))
        if i > 0:
            samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[1], samples[0], samples[2]


def time_decode(model, context, steps):
    cache = model.cache(context + steps + 2)
    nxt = model.next_token(prompt_ids(context), cache, 0)
    pos = context
    nxt = model.next_token(nxt, cache, pos)
    pos += 1
    window = max(1, steps // 3)
    samples = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(window):
            nxt = model.next_token(nxt, cache, pos)
            int(nxt)  # the id is read each step, as a generation loop does
            pos += 1
        samples.append((time.perf_counter() - t) / window)
    samples.sort()
    return samples[1], samples[0], samples[2]


def best_of_threads(model, prompt, steps, verbose=False):
    """Prefill and decode timings, each the faster of torch's default thread count and
    one thread: on a machine shared with other work, OpenMP's spinning threads can make
    torch several times slower than one thread (measured here: 8.5x on decode), and the
    peer should be torch at its best."""
    default = torch.get_num_threads()
    best_pre, best_dec, used = None, None, []
    for n in sorted({default, 1}, reverse=True):
        torch.set_num_threads(n)
        pre, dec = time_prefill(model, prompt), time_decode(model, prompt, steps)
        if verbose:
            print(f"# {n} thread(s): prefill {pre[0] * 1e3:.1f} ms, decode {dec[0] * 1e3:.2f} ms/token")
        best_pre = pre if best_pre is None or pre[0] < best_pre[0] else best_pre
        best_dec = dec if best_dec is None or dec[0] < best_dec[0] else best_dec
        used.append(n)
    torch.set_num_threads(default)
    return best_pre, best_dec, "/".join(map(str, used))


def flops_per_token(layers):
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    return 2.0 * layers * (HIDDEN * q * 2 + HIDDEN * kv * 2 + 3 * HIDDEN * FFN)


def save(model, out_dir, prompt, new):
    """The random model as a Hugging Face checkpoint, and torch's greedy ids for `prompt`."""
    os.makedirs(out_dir, exist_ok=True)
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=HIDDEN,
                  intermediate_size=FFN, num_hidden_layers=model.layers, num_attention_heads=HEADS,
                  num_key_value_heads=KV_HEADS, rms_norm_eps=EPS, rope_theta=THETA,
                  tie_word_embeddings=True, vocab_size=VOCAB, max_position_embeddings=2048,
                  hidden_act="silu", torch_dtype="float32")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    tensors = {"model.embed_tokens.weight": model.embed, "model.norm.weight": model.norm}
    for l, w in enumerate(model.w):
        for name, t in w.items():
            group = "self_attn" if name.endswith("_proj") and name[0] in "qkvo" else (
                "mlp" if name.endswith("_proj") else None)
            key = f"model.layers.{l}.{group}.{name}.weight" if group else f"model.layers.{l}.{name}.weight"
            tensors[key] = t
    # safetensors by hand (the `safetensors` package is not needed): an 8-byte header
    # length, a JSON header of dtype/shape/offsets, then the little-endian data
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    cache = model.cache(len(prompt) + new + 1)
    ids, pos, out = torch.tensor(prompt, dtype=torch.int64), 0, []
    for _ in range(new):
        nxt = model.next_token(ids, cache, pos)
        pos += ids.shape[0]
        out.append(int(nxt))
        ids = nxt
    print("ids: " + ",".join(map(str, out)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", nargs=3, type=int, metavar=("LAYERS", "PROMPT", "STEPS"))
    p.add_argument("--json", help="write openkern-bench rows here")
    p.add_argument("--full", action="store_true", help="30 layers, 512-token prompt (the default without --json too)")
    p.add_argument("--layers", type=int)
    p.add_argument("--save", metavar="DIR", help="write the model as a HF checkpoint and print greedy ids")
    p.add_argument("--prompt-ids", default="1,2,3")
    p.add_argument("--new", type=int, default=8)
    p.add_argument("--scale", type=float, default=3.0, help="weight scale of the --save model")
    a = p.parse_args()
    torch.manual_seed(0)
    with torch.inference_mode():
        if a.one:
            layers, prompt, steps = a.one
            pre, dec, _ = best_of_threads(Llama(layers), prompt, steps)
            print(pre[0], dec[0])
            return
        if a.save:
            # larger weights than the timing model: greedy ids that do not settle into
            # repeating one token, so the comparison checks every step
            save(Llama(a.layers or 2, scale=a.scale), a.save, [int(x) for x in a.prompt_ids.split(",")], a.new)
            return
        big = a.full or not a.json
        layers, prompt, steps = (LAYERS, 512, 30) if big else (4, 64, 12)
        layers = a.layers or layers
        pre, dec, threads = best_of_threads(Llama(layers), prompt, steps, verbose=True)
        fpt, head = flops_per_token(layers), 2.0 * HIDDEN * VOCAB
        print(f"# torch {torch.__version__}, CPU, f32 eager, {layers} layers; best of {threads} threads")
        print(f"prefill {prompt} tokens: {pre[0] * 1e3:9.1f} ms  {prompt / pre[0]:8.1f} tokens/s")
        print(f"decode after {prompt}: {dec[0] * 1e3:9.2f} ms/token  {1 / dec[0]:8.1f} tokens/s")
        if not a.json:
            return
        rows = []
        for phase, t, flops, st in (("prefill", pre, fpt * prompt + head, 0), ("decode", dec, fpt + head, steps)):
            rows.append(dict(family="llama", op=f"llama.{phase}", model="135m", phase=phase,
                             shape=[layers, prompt, st], dtype="f32", kernel="torch eager + sdpa",
                             bound="compute", median_s=t[0], min_s=t[1], max_s=t[2], samples=3,
                             timing="wall-clock", flops=flops, bytes=0.0, rate=flops / t[0],
                             fraction_of_limit=None))
        out = {
            "format": "openkern-bench", "version": 1,
            "tool": {"name": "torch", "version": torch.__version__, "git_commit": ""},
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tier": "full" if big else "default",
            "device": {"name": "cpu", "backend": "torch-cpu", "device_type": "cpu", "driver": "",
                       "threads": torch.get_num_threads(), "features": {}, "limits": {}},
            "probes": {"copy": None, "fma": None}, "models": [], "rows": rows, "summary": [],
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
