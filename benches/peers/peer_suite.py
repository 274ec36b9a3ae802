"""Shared driver of the peer suites (torch_suite.py, numpy_suite.py).

A peer reads the shape list openkern exports (`openkern bench --list-shapes FILE`, or
runs that command itself), times each case with its own library, and writes a file in
the `openkern-bench` format (benches/README.md) so that

    openkern compare peer.json openkern.json

puts the two side by side, row by row. The work counted per row (FLOPs, bytes) uses
the same formulas as openkern's families, so rates are comparable; `compare` divides
median times, which needs no formula at all.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

FORMAT_VERSION = 1
SIZES = {"f32": 4, "f16": 2, "bf16": 2}


def work(case):
    """(flops, bytes, bound) of one run of `case`, as openkern counts them."""
    op, s, sz = case["op"], case["shape"], SIZES[case["dtype"]]
    e = math.prod(s)
    fam = case["family"]
    if fam in ("linear", "gemv"):
        m, n, k = s
        return 2.0 * m * n * k, float((m * k + n * k + m * n) * sz), "memory" if m == 1 else "compute"
    if fam == "gemm":
        n = s[0]
        return 2.0 * n ** 3, float(3 * n * n * sz), "compute"
    if op == "add_rms_norm":
        return 5.0 * e, 4.0 * e * sz, "memory"
    if op == "rms_norm":
        return 4.0 * e, 2.0 * e * sz, "memory"
    if op == "add":
        return float(e), 3.0 * e * sz, "memory"
    if op == "swiglu":
        return 6.0 * e, 3.0 * e * sz, "memory"
    if op == "silu":
        return 4.0 * e, 2.0 * e * sz, "memory"
    if fam == "rope":
        return 3.0 * e, 2.0 * e * sz, "memory"
    if fam == "embedding":
        tokens, _, d = s
        return 0.0, float(tokens * 4 + 2 * tokens * d * sz), "memory"
    if fam == "softmax":
        return 5.0 * e, 2.0 * e * sz, "memory"
    if op == "argmax":
        return float(e), float(e * sz + s[0] * 4), "memory"
    if fam == "attention":
        # [heads, kv_heads, q_len, kv_len, head_dim]: QKᵀ and PV
        h, _, q, kv, d = s
        return 4.0 * h * q * kv * d, float((2 * h * q * d + 2 * s[1] * kv * d) * sz), "compute"
    raise KeyError(f"no work formula for {fam}/{op}")


def load_shapes(args):
    if args.shapes:
        with open(args.shapes) as f:
            return json.load(f)
    exe = args.openkern or shutil.which("openkern")
    if not exe:
        sys.exit(
            "no shape list: pass --shapes FILE (from `openkern bench --list-shapes FILE`) "
            "or --openkern PATH to the openkern binary"
        )
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"openkern-shapes-{os.getpid()}.json")
    cmd = [exe, "bench", "--list-shapes", path]
    if args.quick:
        cmd.append("--quick")
    if args.full:
        cmd.append("--full")
    if args.filter:
        cmd += ["--filter", args.filter]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        data = json.load(f)
    os.remove(path)
    return data


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--shapes", help="shape list from `openkern bench --list-shapes FILE`")
    p.add_argument("--openkern", help="openkern binary to ask for the shape list")
    p.add_argument("--quick", action="store_true", help="the quick tier (with --openkern)")
    p.add_argument("--full", action="store_true", help="the full tier (with --openkern)")
    p.add_argument("--filter", help="as `openkern bench --filter` (with --openkern)")
    p.add_argument("--json", required=True, help="write the results here")
    return p


def measure(run, sync, clock, tier):
    """Median, min, max seconds per run of `run` and the sample count, openkern's way:
    a warm-up, then 3-7 samples of enough runs for a window (3 single runs when slow)."""
    run()
    sync()
    first = clock(run, 1)
    want, window = {"quick": (3, 0.01), "default": (5, 0.03)}.get(tier, (7, 0.1))
    if first > 0.5:
        want = 3
    iters = int(min(500, max(1, window / max(first, 1e-7))))
    samples = [first] if iters == 1 else []
    while len(samples) < want:
        samples.append(clock(run, iters))
    samples.sort()
    return samples[len(samples) // 2], samples[0], samples[-1], len(samples)


def wall_clock(sync):
    def clock(run, iters):
        sync()
        t = time.perf_counter()
        for _ in range(iters):
            run()
        sync()
        return (time.perf_counter() - t) / iters

    return clock


def main(name, version, device, make, args, clock=None, sync=lambda: None, timing="wall-clock"):
    """Times every case `make(case)` returns a runnable for (None: skipped, with the
    reason printed by `make`), and writes the file."""
    shapes = load_shapes(args)
    tier = shapes.get("tier", "default")
    clock = clock or wall_clock(sync)
    rows = []
    cases = shapes["cases"]
    started = time.perf_counter()
    for i, case in enumerate(cases):
        label = f"{case['model']:<4} {case['phase']:<7} {case['op']:<16} {str(case['shape']):<22} {case['dtype']}"
        try:
            made = make(case)
        except (MemoryError, RuntimeError) as e:
            print(f"[{i + 1}/{len(cases)}] {label}  skipped: {str(e).splitlines()[0]}", file=sys.stderr)
            continue
        if made is None:
            continue
        kernel, run = made
        try:
            med, lo, hi, n = measure(run, sync, clock, tier)
        except (MemoryError, RuntimeError) as e:
            print(f"[{i + 1}/{len(cases)}] {label}  skipped: {str(e).splitlines()[0]}", file=sys.stderr)
            continue
        finally:
            run = None
        flops, nbytes, bound = work(case)
        rate = (flops if bound == "compute" else nbytes) / med
        unit = "GFLOP/s" if bound == "compute" else "GB/s"
        print(f"[{i + 1}/{len(cases)}] {label}  {med * 1e3:9.3f} ms  {rate / 1e9:8.1f} {unit}  {kernel}", file=sys.stderr)
        rows.append(dict(case, kernel=kernel, bound=bound, median_s=med, min_s=lo, max_s=hi,
                         samples=n, timing=timing, flops=flops, bytes=nbytes, rate=rate,
                         fraction_of_limit=None))
    out = {
        "format": "openkern-bench",
        "version": FORMAT_VERSION,
        "tool": {"name": name, "version": version, "git_commit": ""},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tier": tier,
        "device": dict({"threads": os.cpu_count() or 0, "features": {}, "limits": {}}, **device),
        "probes": {"copy": None, "fma": None},
        "models": shapes.get("models", []),
        "rows": rows,
        "summary": [],
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{name}: {len(rows)} of {len(cases)} cases in {time.perf_counter() - started:.1f} s; wrote {args.json}")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

