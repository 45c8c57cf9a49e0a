#!/usr/bin/env python
"""Time and peak memory of every non-training pipeline step on a large Xenium-like slice.

Never part of ``make test``. Each step runs as the pipeline runs it, as its own process (the
``spatialdomains`` subcommand of the Nextflow task, reading the previous step's file), under
``/usr/bin/time -v``: the table gives wall seconds and the peak resident set size (``Maximum resident
set size``) of each. A watchdog kills a step whose process tree grows past ``--max-rss-gb`` (the
machine is shared) or runs past ``--timeout`` and records why.

Steps: ``write`` (``simulate --format xenium``: the input, not a pipeline step), ``read``, ``qc``,
``hvg`` (``pp.highly_variable_genes`` alone, inside the prepare step), ``prepare`` (STAIG recipe:
HVGs, normalisation, sd scaling, spatial graph), ``embed`` (a stand-in for training, not profiled
here: 30 SVD components of the prepared features averaged over two hops of the spatial graph, so that
the later steps get an embedding with spatial structure), ``cluster`` (mclust with K = 7, spatial
refinement), ``cluster_kmeans`` (k-means, K by silhouette over 5-10, refinement), ``evaluate`` (with the truth, and with two batches: the slice's left and
right halves, so that the batch metrics run), ``analyse`` (DEG + enrichment on the planted gene
sets), ``report`` and ``multiqc`` (``multiqc-content``).

Usage::

    python benchmarks/steps_scaling.py --n-cells 100000 --tag after --workdir /tmp/scale-prof
    python benchmarks/steps_scaling.py --n-cells 1000000 --tag before --src /tmp/main-src/src

``--src`` runs the steps with another checkout's ``src`` first on ``PYTHONPATH`` (the "before"
code); the input folder is always written by this checkout. Results are merged into
``benchmarks/results/steps_scaling.json`` (keyed by tag, size and step) and the markdown table
beside it is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "steps_scaling.json"
STEPS = ("write", "read", "qc", "hvg", "prepare", "embed", "cluster", "cluster_kmeans", "evaluate", "analyse",
         "report", "multiqc")
CLI = "import sys; from spatialdomains.cli import main; sys.exit(main())"

HVG_SNIPPET = """
import sys, time, anndata as ad
from spatialdomains import pp
a = ad.read_h5ad(sys.argv[1])
t = time.perf_counter()
pp.highly_variable_genes(a, int(sys.argv[2]), flavor="seurat_v3")
print(f"HVG_SECONDS {time.perf_counter() - t:.2f}")
"""

EMBED_SNIPPET = """
import sys, numpy as np, scipy.sparse as sp, anndata as ad
from sklearn.decomposition import TruncatedSVD
a = ad.read_h5ad(sys.argv[1])
z = TruncatedSVD(30, random_state=0).fit_transform(a.X).astype(np.float32)
adj = sp.csr_matrix(a.obsp["spatial_connectivities"]) + sp.eye(a.n_obs, format="csr")
adj = sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj
z = adj @ (adj @ z)
a.obsm["X_staig"] = np.ascontiguousarray(z, dtype=np.float32)
x = a.obsm["spatial"][:, 0]
a.obs["half"] = np.where(x < np.median(x), "left", "right")
a.obs["half"] = a.obs["half"].astype("category")
a.uns.setdefault("spatialdomains", {})["train_staig"] = {"seed": 0}
a.write_h5ad(sys.argv[2])
"""


def _parse_time(stderr: str) -> dict[str, float]:
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if m:
        out["peak_rss_gb"] = int(m.group(1)) / 1024**2
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["wall_s"] = secs
    m = re.search(r"HVG_SECONDS ([\d.]+)", stderr)
    if m:
        out["inner_s"] = float(m.group(1))
    return out


def run_step(cmd: list[str], env: dict[str, str], *, max_rss_gb: float, timeout: float, log: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v with a memory/time watchdog; return its measurements."""
    import psutil

    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "nice", "-n", "10", *cmd], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        watched = psutil.Process(proc.pid)
        reason, seen_peak = None, 0.0
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)])
            except psutil.Error:
                rss = 0
            seen_peak = max(seen_peak, rss / 1024**3)
            if seen_peak > max_rss_gb:
                reason = f"killed: process tree above {max_rss_gb} GB RSS"
            elif time.perf_counter() - start > timeout:
                reason = f"killed: ran past {timeout:.0f} s"
            if reason:
                for p in [*watched.children(recursive=True), watched]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                break
            time.sleep(0.25)
        rc = proc.wait()
    text = log.read_text()
    res = {"rc": rc, **_parse_time(text)}
    res.setdefault("wall_s", time.perf_counter() - start)
    res.setdefault("peak_rss_gb", seen_peak)
    if reason:
        res["failed"] = reason
    elif rc != 0:
        res["failed"] = f"exit {rc}: " + " | ".join(text.strip().splitlines()[-25:-23])
    return res


def step_commands(step: str, w: Path, data: Path, truth: Path, n_top: int, platform: str) -> list[str]:
    py = sys.executable
    cli = [py, "-c", CLI]
    return {
        "read": cli + ["read", "--data", str(data), "--sample", "slice0", "--platform", platform, "--truth",
                       str(truth), "-o", str(w / "read.h5ad"), "--threads", "2"],
        "qc": cli + ["qc", "-i", str(w / "read.h5ad"), "-o", str(w / "qc.h5ad"), "--qc-json", str(w / "qc.json"),
                     "--min-counts", "10", "--min-cells", "10", "--threads", "2"],
        "hvg": [py, "-c", HVG_SNIPPET, str(w / "qc.h5ad"), str(n_top)],
        "prepare": cli + ["prepare", "-i", str(w / "qc.h5ad"), "-o", str(w / "prep.h5ad"), "--method", "staig",
                          "--platform", platform, "--threads", "2"],
        "embed": [py, "-c", EMBED_SNIPPET, str(w / "prep.h5ad"), str(w / "trained.h5ad")],
        "cluster": cli + ["cluster", "-i", str(w / "trained.h5ad"), "-o", str(w / "clustered.h5ad"), "--method",
                          "staig", "--algorithm", "mclust", "--n-domains", "7", "--refine", "--threads", "2"],
        "cluster_kmeans": cli + ["cluster", "-i", str(w / "trained.h5ad"), "-o", str(w / "clustered_km.h5ad"),
                                 "--method", "staig", "--algorithm", "kmeans", "--k-min", "5", "--k-max", "10",
                                 "--refine", "--threads", "2"],
        "evaluate": cli + ["evaluate", "-i", str(w / "clustered.h5ad"), "-o", str(w / "metrics.json"), "--method",
                           "staig", "--batch-key", "half", "--threads", "2"],
        "analyse": cli + ["analyse", "-i", str(w / "clustered.h5ad"), "--method", "staig", "--deg-csv",
                          str(w / "deg.csv"), "--gmt", str(data.parent / "genesets.gmt"), "--go-csv",
                          str(w / "go.csv"), "--threads", "2"],
        "report": cli + ["report", "--clustered", str(w / "clustered.h5ad"), "--metrics", str(w / "metrics.json"),
                         "--deg", str(w / "deg.csv"), "--go", str(w / "go.csv"), "--qc", str(w / "qc.json"), "-o",
                         str(w / "report.html"), "--threads", "2"],
        "multiqc": cli + ["multiqc-content", "--metrics", str(w / "metrics.json"), "--qc", str(w / "qc.json"),
                          "--outdir", str(w / "mqc")],
    }[step]


def _size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def _column_label(size_key: str) -> str:
    n, _, fmt = size_key.partition("_")
    return _size_label(int(n)) + (" HD" if fmt == "hd" else "")


def write_table(results: dict) -> Path:
    """Markdown table: one row per step, one column per input x code version (``wall s / peak GB``)."""
    keys = {tuple(k.split("/")[:2]) for k in results}  # (tag, size key)
    sizes = sorted({size for _, size in keys}, key=lambda v: (v.endswith("_hd"), int(v.split("_")[0])))
    cols = [(size, tag) for size in sizes for tag in ("before", "after") if (tag, size) in keys]
    lines = ["# Non-training steps: wall time and peak RSS per step (one process per step)", "",
             "Synthetic slices written by `spatialdomains simulate --format xenium` (300 genes, 7 domains) or",
             "`--format visium_hd` (HD: 18,000 genes); each step is the `spatialdomains` subcommand of its pipeline",
             "task, under `/usr/bin/time -v` on the shared 2-core machine (load average below: 10-25 means each",
             "step got a fraction of one core, so compare before/after of one size, not absolute seconds).",
             "`embed` is a stand-in for training (SVD + graph smoothing). Cells: `wall s / peak RSS GB`.", "",
             "| step | " + " | ".join(f"{_column_label(size)} {tag}" for size, tag in cols) + " |",
             "|---|" + "---|" * len(cols)]
    extra = sorted({k.split("/")[2] for k in results} - set(STEPS))  # steps of earlier definitions
    for step in (*STEPS, *extra):
        row = []
        for size, tag in cols:
            r = results.get(f"{tag}/{size}/{step}")
            if step == "write" and tag == "before":
                row.append("(new)")
            elif r is None:
                row.append("")
            elif r.get("failed"):
                row.append(f"**{r['failed'].split(':')[0]}** ({r['wall_s']:.0f} s, {r['peak_rss_gb']:.1f} GB)")
            else:
                row.append(f"{r['wall_s']:.1f} / {r['peak_rss_gb']:.2f}")
        if any(row):
            lines.append(f"| {step} | " + " | ".join(row) + " |")
    lines += ["", "Load average (1 min) at the start of the steps, and failures:", ""]
    for size, tag in cols:
        loads = [r["load"] for k, r in results.items() if k.startswith(f"{tag}/{size}/") and "load" in r]
        if loads:
            lines.append(f"- {_column_label(size)} {tag}: load {min(loads):.0f}-{max(loads):.0f}")
    for key, r in sorted(results.items()):
        if r.get("failed"):
            lines.append(f"- `{key}`: {r['failed']}")
    md = RESULTS.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, required=True)
    ap.add_argument("--n-genes", type=int, default=300)
    ap.add_argument("--format", default="xenium", choices=["xenium", "visium_hd"], help="Input folder format.")
    ap.add_argument("--tag", required=True, help="before / after")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/scale-prof"))
    ap.add_argument("--src", type=Path, default=None, help="Another checkout's src/ (the 'before' code).")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--max-rss-gb", type=float, default=8.0)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--keep", action="store_true", help="Keep the work folder (default: delete it at the end).")
    args = ap.parse_args()

    size = _size_label(args.n_cells)
    fmt = "" if args.format == "xenium" else "_hd"
    inputs = args.workdir / f"input_{size}{fmt}"
    data, truth = inputs / "slice0", inputs / "slice0_truth.csv"
    work = args.workdir / f"{args.tag}_{size}{fmt}"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2",
               NUMBA_NUM_THREADS="2", MPLCONFIGDIR=str(args.workdir / ".mpl"))
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    results: dict = {}
    for step in args.steps.split(","):
        if step == "write":
            if (inputs / "samplesheet.csv").exists():
                continue
            cmd = [sys.executable, "-c", CLI, "simulate", "--format", args.format, "--n-spots", str(args.n_cells),
                   "--n-genes", str(args.n_genes), "--n-domains", "7", "--out", str(inputs)]
            step_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # always this checkout's writer
        else:
            cmd = step_commands(step, work, data, truth, min(args.n_genes, 3000), args.format)
            step_env = env
        load = os.getloadavg()[0]
        print(f"{args.tag} {size} {step} (load {load:.1f}) ...", flush=True)
        res = run_step(cmd, step_env, max_rss_gb=args.max_rss_gb, timeout=args.timeout, log=work / f"{step}.log")
        res.update(tag=args.tag if step != "write" else "after", n_cells=args.n_cells, step=step, load=round(load, 1),
                   format=args.format, n_genes=args.n_genes)
        print(f"    {res}", flush=True)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # other runs may have written
        results[f"{res['tag']}/{args.n_cells}{fmt}/{step}"] = res
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        if res.get("failed") and step in ("read", "qc", "prepare", "embed", "cluster"):
            print(f"    {step} failed; later steps need its output, stopping", flush=True)
            break
    print(write_table(results))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
