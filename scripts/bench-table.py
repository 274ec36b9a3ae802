#!/usr/bin/env python3
"""Markdown tables for the README from `openkern bench --json` files and a peer's file.

    scripts/bench-table.py cpu.json lavapipe.json --peer torch.json

Prints (1) per family, each device's geometric mean fraction of its limits and the
geometric mean ratio to the peer (peer time / openkern time: > 1 means openkern is
faster), and (2) selected rows of the 8B model.
"""
import argparse
import json
import math


def load(p):
    with open(p) as f:
        return json.load(f)


def key(r):
    return (r["family"], r["op"], r["model"], r["phase"], tuple(r["shape"]), r["dtype"])


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def label(run):
    d = run["device"]
    return f"{d['name'].split(' (')[0]} ({d['backend']})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--peer")
    a = p.parse_args()
    runs = [load(r) for r in a.runs]
    peer = {key(r): r for r in load(a.peer)["rows"]} if a.peer else {}
    pname = load(a.peer)["tool"]["name"] if a.peer else ""
    fams = []
    for run in runs:
        for r in run["rows"]:
            if r["family"] not in fams:
                fams.append(r["family"])
    head = "| family |"
    for run in runs:
        head += f" {label(run)}: of limit |"
        if peer:
            head += f" {label(run)}: × {pname} CPU |"
    print(head)
    print("|---" * (1 + len(runs) * (2 if peer else 1)) + "|")
    for fam in fams:
        line = f"| {fam} |"
        for run in runs:
            rows = [r for r in run["rows"] if r["family"] == fam]
            g = geomean([r["fraction_of_limit"] for r in rows])
            line += f" {g * 100:.0f} % ({len(rows)} rows) |" if g else " — |"
            if peer:
                ratios = [peer[key(r)]["median_s"] / r["median_s"] for r in rows if key(r) in peer]
                gr = geomean(ratios)
                line += f" {gr:.2f}× |" if gr else " — |"
        print(line)
    print()
    print("| row (8B) |" + "".join(f" {label(run)} |" for run in runs) + (f" {pname} CPU |" if peer else ""))
    print("|---" * (1 + len(runs) + (1 if peer else 0)) + "|")
    want = [("linear", "linear.qkv", "prefill"), ("gemv", "gemv.qkv", "decode"),
            ("norm", "rms_norm", "prefill"), ("activation", "swiglu", "prefill"),
            ("rope", "rope.q", "prefill"), ("softmax", "softmax.causal", "decode"),
            ("embedding", "embedding", "prefill")]
    for fam, op, phase in want:
        cells, shape, dtype, pk = [], None, None, None
        for run in runs:
            r = next((r for r in run["rows"] if (r["family"], r["op"], r["model"], r["phase"]) == (fam, op, "8b", phase)), None)
            if r is None:
                cells.append("skipped")
                continue
            shape, dtype, pk = r["shape"], r["dtype"], key(r)
            unit = "GFLOP/s" if r["bound"] == "compute" else "GB/s"
            cells.append(f"{r['rate'] / 1e9:.1f} {unit}, {r['fraction_of_limit'] * 100:.0f} %")
        pc = ""
        if peer:
            pr = peer.get(pk)
            unit = "GFLOP/s" if pr and pr["bound"] == "compute" else "GB/s"
            pc = f" {pr['rate'] / 1e9:.3g} {unit} |" if pr else " — |"
        print(f"| {phase} {op} {shape} {dtype} |" + "".join(f" {c} |" for c in cells) + pc)


main()
