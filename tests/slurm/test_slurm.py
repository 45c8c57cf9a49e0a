"""`make test-slurm`: the test profile through a real SLURM cluster (scripts/slurm.sh: one node on loopback).

- every task is a SLURM job (the trace's native_id is the job id; squeue saw them);
- a TRAIN job cancelled while it trains (`scancel`) is retried (conf/base.config) and the run completes;
- the domains and metrics equal those of the same run with the local executor (same seeds: ARI 1.0);
- the daemons are stopped by PID also when a run fails (fixture finaliser).

Opt-in (not part of `make test`): SPATIALDOMAINS_TEST_SLURM=1, which `make test-slurm` sets. Needs root to start
munge/slurmctld/slurmd (slurm-wlm and munge are installed from apt when missing).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from nfutil import (HAS_NEXTFLOW, ROOT, compare_runs, explain, nextflow, nextflow_bg, read_trace,
                    running_task_dir, short, wait_for)

pytestmark = [
    pytest.mark.skipif(os.environ.get("SPATIALDOMAINS_TEST_SLURM") != "1",
                       reason="opt-in: `make test-slurm` (SPATIALDOMAINS_TEST_SLURM=1)"),
    pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`"),
]

LOCAL_CONFIG = ROOT / "tests/slurm/local_cluster.config"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Start the cluster; always stop it (by the PIDs it wrote), whatever the tests did."""
    state = tmp_path_factory.mktemp("slurm")
    env = {"SLURM_CONF": str(state / "slurm.conf")}
    try:
        start = subprocess.run(["bash", "scripts/slurm.sh", "start", str(state)], cwd=ROOT, capture_output=True,
                               text=True, timeout=300)
        assert start.returncode == 0, f"slurm did not start:\n{start.stdout}\n{start.stderr}"
        print(start.stdout.strip())
        yield env
    finally:
        # jobs a failed test left behind belong to this cluster only (SLURM_CONF): cancel them, then stop it
        subprocess.run(["scancel", "--user", str(os.getuid())], env={**os.environ, **env}, capture_output=True)
        stop = subprocess.run(["bash", "scripts/slurm.sh", "stop", str(state)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        print(stop.stdout.strip())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("local")
    start = time.monotonic()
    res = nextflow(["run", str(ROOT), "-profile", "test", "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", "local"], cwd, timeout=2400)
    took = time.monotonic() - start
    assert res.returncode == 0, explain(res)
    print(f"local executor: {len(read_trace(cwd / 'results/pipeline_info/execution_trace_local.txt'))} tasks "
          f"in {took:.0f} s")
    return cwd


def _squeue(env: dict[str, str]) -> list[list[str]]:
    res = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%Z"], env={**os.environ, **env}, capture_output=True,
                         text=True)
    return [line.split("|") for line in res.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """`-profile test,slurm` on the cluster; one TRAIN job is cancelled with scancel while it runs."""
    cwd = tmp_path_factory.mktemp("slurm_run")
    start = time.monotonic()
    proc = nextflow_bg(["run", str(ROOT), "-profile", "test,slurm", "-c", str(LOCAL_CONFIG), "--outdir", "results",
                        "-w", "work", "--trace_report_suffix", "slurm"], cwd, env=cluster)
    seen_jobs: set[str] = set()
    try:
        def train_job():
            rows = _squeue(cluster)
            seen_jobs.update(r[0] for r in rows)
            task = running_task_dir(cwd / "work", "SPATIALDOMAINS_TRAIN")
            if task is None:
                return None
            for job, name, state, workdir in rows:
                if state == "RUNNING" and Path(workdir).resolve() == task.resolve():
                    return job, task
            return None
        job, task = wait_for(train_job, 1500, "a running TRAIN job in squeue", every=1, proc=proc)
        time.sleep(5)  # well into training
        cancel = subprocess.run(["scancel", job], env={**os.environ, **cluster}, capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr
        while proc.poll() is None:
            seen_jobs.update(r[0] for r in _squeue(cluster))
            time.sleep(2)
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - start
    return cwd, rc, job, task, seen_jobs, took


def test_every_task_ran_as_a_slurm_job(slurm_run):
    cwd, rc, job, task, seen_jobs, took = slurm_run
    assert rc == 0, explain(cwd=cwd)
    trace = read_trace(cwd / "results/pipeline_info/execution_trace_slurm.txt")
    assert trace
    for row in trace:
        assert row["native_id"].isdigit(), f"{row['name']}: native_id {row['native_id']!r} is not a SLURM job id"
    ids = [row["native_id"] for row in trace]
    assert len(set(ids)) == len(ids), "two tasks share a job id"
    assert set(ids) & seen_jobs, "squeue never listed the pipeline's jobs"
    # the sbatch header Nextflow wrote: the partition and the task's resources
    header = (task / ".command.run").read_text()
    assert "#SBATCH -p debug" in header and "#SBATCH --mem" in header, header[:800]
    print(f"slurm: {len(trace)} tasks in {took:.0f} s (incl. one retry)")
    print("trace excerpt (name, native_id = SLURM job id, status, exit, attempt):")
    for row in trace[:6] + [r for r in trace if short(r["process"]) == "SPATIALDOMAINS_TRAIN"]:
        print(f"  {row['name']:<60} {row['native_id']:>6} {row['status']:<10} {row['exit']:>4} {row['attempt']}")


def test_cancelled_train_job_was_retried(slurm_run):
    cwd, rc, job, task, seen_jobs, took = slurm_run
    assert rc == 0, explain(cwd=cwd)
    trace = read_trace(cwd / "results/pipeline_info/execution_trace_slurm.txt")
    cancelled = [r for r in trace if r["native_id"] == job]
    assert len(cancelled) == 1 and cancelled[0]["status"] == "FAILED", cancelled
    assert cancelled[0]["exit"] in {str(c) for c in [*range(130, 146), 104, 175]}, cancelled
    retried = [r for r in trace if short(r["process"]) == "SPATIALDOMAINS_TRAIN" and r["tag"] == cancelled[0]["tag"]]
    assert sorted((r["attempt"], r["status"]) for r in retried) == [("1", "FAILED"), ("2", "COMPLETED")], retried
    assert all(r["status"] == "COMPLETED" for r in trace if r is not cancelled[0])


def test_slurm_results_equal_the_local_run(slurm_run, local_run):
    cwd, rc, *_ = slurm_run
    assert rc == 0, explain(cwd=cwd)
    summary = compare_runs(local_run / "results", cwd / "results")
    assert len(summary) == 2, summary   # both methods, seed 0
    for group in ("demo",):
        assert (cwd / "results" / group / "report.html").exists()
    assert (cwd / "results/multiqc/multiqc_report.html").exists()
    print(f"slurm vs local: {summary}")
