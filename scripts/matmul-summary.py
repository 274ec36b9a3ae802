#!/usr/bin/env python3
"""The three matmul figures issue #11 asks of a GPU run, from the bundle's result files:

  f32 GEMM / linear vs the peer's f32 (cuBLAS on CUDA; goal >= 75%)
  f16 on the cooperative-matrix kernel vs the peer's f16 (cuBLAS; goal >= 50%)
  GEMV (M = 1) vs the copy probe of the same run (goal >= 80%), and vs the peer

    python3 matmul-summary.py openkern.json [torch.json] [--tests tests.txt]

Prints Markdown (a README table's worth). Rows are matched by case (family, op, model,
phase, shape, dtype), as `openkern compare` does; a ratio is peer time / openkern time,
so 0.75 means openkern reaches 75% of the peer's rate. The peer is optional: without it
only the fractions of the copy probe are printed.
"""
import argparse
import json
import math

GOALS = {"f32": 0.75, "f16 coop": 0.50, "gemv": 0.80}


def key(r):
    return (r["family"], r["op"], r["model"], r["phase"], tuple(r["shape"]), r["dtype"])


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def shape(r):
    return "x".join(map(str, r["shape"]))


def table(title, rows, peer, goal, extra=None):
    """One section: a row per case, then the geometric mean against `goal`."""
    print(f"\n### {title}\n")
    if not rows:
        print("no rows (was the suite filtered or did the run fail?)\n")
        return None
    cols = ["case", "dtype", "openkern kernel", "openkern", "peer", "openkern / peer"]
    if extra:
        cols.append(extra[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    ratios, extras = [], []
    for r in rows:
        p = peer.get(key(r))
        ratio = p["median_s"] / r["median_s"] if p else None
        unit = "GFLOP/s" if r["bound"] == "compute" else "GB/s"
        cells = [
            f"{r['family']} {r['op']} {r['model']} {shape(r)}".replace("  ", " "),
            r["dtype"],
            r["kernel"],
            f"{r['rate'] / 1e9:.1f} {unit}",
            f"{p['rate'] / 1e9:.1f} {unit}" if p else "-",
            pct(ratio),
        ]
        if extra:
            e = extra[1](r)
            extras.append(e)
            cells.append(pct(e))
        ratios.append(ratio)
        print("| " + " | ".join(cells) + " |")
    g = geomean(ratios)
    line = f"\ngeometric mean vs peer: {pct(g)}"
    if extra:
        ge = geomean(extras)
        line += f"; {extra[0]}: {pct(ge)}"
        g = ge if extra[2] else g
    if goal is not None and g is not None:
        line += f" (goal {pct(goal)}: {'met' if g >= goal else 'NOT met'})"
    print(line)
    return g


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("openkern")
    p.add_argument("peer", nargs="?")
    p.add_argument("--tests", help="the bundle's tests.txt: its coop lines are quoted")
    args = p.parse_args()
    ok = json.load(open(args.openkern))
    peer_run = json.load(open(args.peer)) if args.peer else None
    peer = {key(r): r for r in peer_run["rows"]} if peer_run else {}
    dev = ok["device"]
    print(f"## matmul on {dev['name']} ({dev['backend']}, {dev['driver']})\n")
    print(f"openkern {ok['tool'].get('git_commit', '?')[:10]}, {ok['date']}, tier {ok['tier']}, "
          f"timing {ok['rows'][0]['timing'] if ok['rows'] else '-'}; cooperative matrices: "
          f"{', '.join(dev.get('features', {}).get('cooperative_matrix', [])) or 'none'}")
    if peer_run:
        pd = peer_run["device"]
        print(f"peer: {peer_run['tool']['name']} {peer_run['tool'].get('version', '')} on "
              f"{pd['name']} ({pd.get('driver', '')}), {peer_run['date']}")
    copy = (ok.get("probes") or {}).get("copy") or {}
    if copy:
        print(f"copy probe: {copy['per_second'] / 1e9:.0f} GB/s ({copy.get('timing', '')})")
    rows = ok["rows"]
    mm = [r for r in rows if r["family"] in ("gemm", "linear") and r["op"] != "linear.bias"]
    table("f32 GEMM and linear vs the peer's f32", [r for r in mm if r["dtype"] == "f32"],
          peer, GOALS["f32"])
    f16 = [r for r in mm if r["dtype"] == "f16"]
    coop = [r for r in f16 if r["kernel"].startswith("coop")]
    if f16 and not coop:
        kernels = sorted({r["kernel"] for r in f16})
        print(f"\n### f16 on the cooperative-matrix kernel vs the peer's f16\n\nno f16 row ran "
              f"a cooperative-matrix kernel on this adapter (they ran {', '.join(kernels)}); "
              f"`openkern info` says why")
    else:
        table("f16 on the cooperative-matrix kernel vs the peer's f16", coop, peer,
              GOALS["f16 coop"])
    gemv = [r for r in rows if r["family"] == "gemv"]
    table("GEMV (M = 1) vs the copy probe", gemv, peer, GOALS["gemv"],
          extra=("of copy probe", lambda r: r.get("fraction_of_limit"), True))
    if args.tests:
        lines = [l.rstrip() for l in open(args.tests, errors="replace")
                 if "cooperative-matrix" in l or "coop" in l.lower() and "test " in l]
        if lines:
            print("\n### cooperative-matrix tests\n\n```")
            print("\n".join(lines[:40]))
            print("```")


if __name__ == "__main__":
    main()
