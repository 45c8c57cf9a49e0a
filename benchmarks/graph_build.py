#!/usr/bin/env python
"""Spatial graph build time and peak memory from 1k to 1M synthetic spots.

Each (size, repeat) runs in a fresh subprocess so peak RSS is that build's alone. Reports the median
of the repeats and the log-log memory slope between sizes. Output: benchmarks/results/graph_build.json
and a markdown table on stdout.

    .venv/bin/python benchmarks/graph_build.py [--sizes 1000,10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from spatialdomains import graph
n, kind = int(sys.argv[1]), sys.argv[2]
side = int(np.ceil(np.sqrt(2 * n)))
rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
mask = (rows + cols) % 2 == 0
xy = np.stack([cols[mask] * 50.0, rows[mask] * 86.6], 1)[:n].astype(float)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
ei = graph.knn_edges(xy, 6) if kind == "knn" else graph.hex_edges(xy)
sec = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "kind": kind, "seconds": sec, "edges": int(ei.shape[1]),
                  "peak_rss_mb": peak / 1024, "build_rss_mb": (peak - base) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kinds", default="knn,hex")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "graph_build.json"))
    args = ap.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        for n in map(int, args.sizes.split(",")):
            runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(n), kind], capture_output=True,
                                              text=True, check=True).stdout) for _ in range(args.repeats)]
            rows.append({"n": n, "kind": kind, "edges": runs[0]["edges"],
                         "seconds_median": statistics.median(r["seconds"] for r in runs),
                         "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in runs),
                         "build_rss_mb_median": statistics.median(r["build_rss_mb"] for r in runs)})
            print(f"{kind} n={n}: {rows[-1]['seconds_median']:.3f} s, build {rows[-1]['build_rss_mb_median']:.0f} MB",
                  file=sys.stderr)
    import math

    for kind in args.kinds.split(","):
        pts = [r for r in rows if r["kind"] == kind and r["build_rss_mb_median"] > 1]
        for a, b in zip(pts, pts[1:]):
            b["memory_loglog_slope_from_prev"] = math.log(b["build_rss_mb_median"] / a["build_rss_mb_median"]) / \
                math.log(b["n"] / a["n"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print("| graph | spots | edges | build s (median) | build RSS MB | peak RSS MB | mem slope |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        slope = r.get("memory_loglog_slope_from_prev")
        print(f"| {r['kind']} | {r['n']:,} | {r['edges']:,} | {r['seconds_median']:.3f} | "
              f"{r['build_rss_mb_median']:.0f} | {r['peak_rss_mb_median']:.0f} | {'' if slope is None else f'{slope:.2f}'} |")


if __name__ == "__main__":
    main()
