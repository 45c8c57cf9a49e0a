#!/usr/bin/env python3
"""Merge the metrics JSONs of one group (every method x seed) into one CSV table.

One row per method and seed: the flattened metrics, plus ``seed_ari_mean``, the mean ARI between
this seed's domains and those of the method's other seeds (stability; empty with one seed).
Inputs are named ``<group>_<method>_s<seed>.metrics.json`` / ``.domains.csv`` by the pipeline.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def ari(a: pd.Series, b: pd.Series) -> float:
    table = pd.crosstab(a, b).to_numpy().astype(float)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    n = table.sum()
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", nargs="+", type=Path, required=True)
    parser.add_argument("--domains", nargs="*", type=Path, default=[])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    rows = []
    for path in sorted(args.metrics):
        run_id = path.name.removesuffix(".metrics.json")
        seed = re.search(r"_s(\d+)$", run_id)
        row = {"id": run_id, "seed": int(seed.group(1)) if seed else None}
        row.update(flatten(json.loads(path.read_text() or "{}")))
        rows.append(row)
    table = pd.DataFrame(rows)
    if "method" not in table:
        table["method"] = None

    labels = {}
    for path in args.domains:
        if path.stat().st_size:
            frame = pd.read_csv(path, dtype=str)
            keys = [c for c in ("barcode", "slice") if c in frame]
            labels[path.name.removesuffix(".domains.csv")] = frame.set_index(keys)["domain"]
    stability = []
    for _, row in table.iterrows():
        mine = labels.get(row["id"])
        others = [labels[o] for o in table.loc[(table["method"] == row["method"]) & (table["id"] != row["id"]), "id"]
                  if o in labels]
        scores = [ari(*mine.align(other, join="inner")) for other in others] if mine is not None else []
        stability.append(float(np.mean(scores)) if scores else None)
    table["seed_ari_mean"] = stability

    first = ["id", "method", "seed"]
    table = table[first + sorted(c for c in table.columns if c not in first)].sort_values(["method", "seed"])
    table.to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
