"""`make test-full`: `-profile test_full` (12 slices in 3 groups, both methods, 3 seeds: 135 tasks) at full data
size on this machine, with tests/full/two_cores.config (requests capped to 2 CPUs / 8 GB, training cut to 20
epochs), on the local executor or, with FULL_EXECUTOR=slurm, on the local SLURM cluster (scripts/slurm.sh).

Checks: the run completes; the fan-out (tasks per process); `resourceLimits` hold (no task asked for more than
2 CPUs or 8 GB, none used more memory than it asked for); every group has its report and the MultiQC report lists
every slice and every run. Prints the wall time, the task count and the peak memory per resource label.

Opt-in (not part of `make test`; an hour or more on 2 cores): SPATIALDOMAINS_TEST_FULL=local|slurm.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from nfutil import (HAS_NEXTFLOW, ROOT, METHODS, explain, nextflow, parse_size, peak_memory_by_label, read_trace,
                    short)

MODE = os.environ.get("SPATIALDOMAINS_TEST_FULL", "")
pytestmark = [
    pytest.mark.skipif(MODE not in ("local", "slurm"), reason="opt-in: `make test-full` (SPATIALDOMAINS_TEST_FULL)"),
    pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`"),
]

N_SLICES, N_GROUPS, N_SEEDS = 12, 3, 3
RUNS = N_GROUPS * len(METHODS) * N_SEEDS
EXPECTED_TASKS = {
    "SPATIALDOMAINS_SIMULATE": 1, "SPATIALDOMAINS_VALIDATE": 1,
    "SPATIALDOMAINS_READ": N_SLICES, "SPATIALDOMAINS_QC": N_SLICES,
    "SPATIALDOMAINS_IMAGE_TILES": N_SLICES, "SPATIALDOMAINS_IMAGE_FEATURES": N_SLICES,
    "SPATIALDOMAINS_PREPARE": N_GROUPS * len(METHODS),
    "SPATIALDOMAINS_TRAIN": RUNS, "SPATIALDOMAINS_CLUSTER": RUNS, "SPATIALDOMAINS_EVALUATE": RUNS,
    "SPATIALDOMAINS_ANALYSE": RUNS, "SPATIALDOMAINS_COLLECT_METRICS": N_GROUPS, "SPATIALDOMAINS_REPORT": N_GROUPS,
    "MULTIQC": 1,
}
CAP_CPUS, CAP_MEMORY = 2, 8 * 1024 ** 3


def process_labels() -> dict[str, str]:
    """process name -> its resource label (the first label that is not process_gpu)."""
    out = {}
    for path in (ROOT / "modules").rglob("main.nf"):
        text = path.read_text()
        name = re.search(r"^process\s+(\w+)", text, re.M).group(1)
        labels = [lab for lab in re.findall(r"^\s*label\s+'(\w+)'", text, re.M) if lab != "process_gpu"]
        out[name] = labels[0] if labels else "(none)"
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("full")
    args = ["run", str(ROOT), "-profile", "test_full" + (",slurm" if MODE == "slurm" else ""),
            "-c", str(ROOT / "tests/full/two_cores.config"), "--outdir", "results", "-w", "work",
            "--trace_report_suffix", "full"]
    env, state = {}, None
    if MODE == "slurm":
        args[5:5] = ["-c", str(ROOT / "tests/slurm/local_cluster.config")]
        state = tmp_path_factory.mktemp("slurm")
        env = {"SLURM_CONF": str(state / "slurm.conf")}
    try:
        if state is not None:
            start = subprocess.run(["bash", "scripts/slurm.sh", "start", str(state)], cwd=ROOT, capture_output=True,
                                   text=True, timeout=300)
            assert start.returncode == 0, f"slurm did not start:\n{start.stdout}\n{start.stderr}"
        t0 = time.monotonic()
        res = nextflow(args, cwd, timeout=6 * 3600, env=env)
        took = time.monotonic() - t0
    finally:
        if state is not None:
            subprocess.run(["scancel", "--user", str(os.getuid())], env={**os.environ, **env}, capture_output=True)
            subprocess.run(["bash", "scripts/slurm.sh", "stop", str(state)], cwd=ROOT, capture_output=True, timeout=120)
    return cwd, res, took


def test_full_run_completes_within_the_resource_limits(full_run):
    cwd, res, took = full_run
    assert res.returncode == 0, explain(res)
    trace = read_trace(cwd / "results/pipeline_info/execution_trace_full.txt")
    counts: dict[str, int] = {}
    for row in trace:
        counts[short(row["process"])] = counts.get(short(row["process"]), 0) + 1
    assert counts == EXPECTED_TASKS, counts
    assert all(row["status"] == "COMPLETED" for row in trace), [r["name"] for r in trace if r["status"] != "COMPLETED"]
    for row in trace:
        assert int(row["cpus"]) <= CAP_CPUS, row
        assert parse_size(row["memory"]) <= CAP_MEMORY, row
        assert parse_size(row["peak_rss"]) <= parse_size(row["memory"]), f"{row['name']} used more than it asked for"
        if MODE == "slurm":
            assert row["native_id"].isdigit(), row
    print(f"\ntest_full ({MODE}): {len(trace)} tasks in {took / 60:.1f} min")
    print("peak memory per label (process with the peak, its request, tasks):")
    for label, entry in peak_memory_by_label(trace, process_labels()).items():
        print(f"  {label:<16} {entry['peak_rss']:>10}  {entry['process']:<32} asked {entry['memory']:<8} "
              f"({entry['tasks']} tasks)")


def test_full_reports_cover_every_group_slice_and_run(full_run):
    cwd, res, _ = full_run
    assert res.returncode == 0, explain(res)
    import pandas as pd

    out = cwd / "results"
    groups = [f"synthetic_g{i}" for i in range(1, N_GROUPS + 1)]
    for group in groups:
        assert (out / group / "report.html").exists(), group
        table = pd.read_csv(out / group / f"{group}.metrics.csv")
        assert len(table) == len(METHODS) * N_SEEDS and table["seed_ari_mean"].notna().all()
        assert len(list((out / group / "analysis").glob("*.go.csv"))) == len(METHODS) * N_SEEDS
    data = out / "multiqc/multiqc_data"
    assert len(pd.read_csv(data / "multiqc_spatialdomains_qc_table.txt", sep="\t")) == N_SLICES
    runs = pd.read_csv(data / "multiqc_spatialdomains_metrics_table.txt", sep="\t")
    assert sorted(runs["group"].unique()) == groups and len(runs) == RUNS
    print("mean ARI per group and method:")
    print(runs.groupby(["group", "method"])["ari"].mean().round(3).to_string())
