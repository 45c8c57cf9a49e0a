"""Runs that are disturbed on purpose, with the local executor (`-profile test`, STAIG only, seed 0):

(a) a TRAIN task killed while it trains (SIGKILL of its CLI process, as the kernel's OOM killer does: exit 137)
    is retried by conf/base.config's errorStrategy and the run completes with the results of an undisturbed run;
(b) the Nextflow driver killed (SIGKILL) while TRAIN runs: nothing of the unfinished task is published, every
    published file is an exact copy of a finished task's output, and `-resume` takes the finished tasks from the
    cache and ends with the results of an undisturbed run.

The undisturbed run is the session's `-profile test` run (tests/pipeline/conftest.py). The same kill of a TRAIN
task under SLURM (`scancel`) is in tests/slurm/test_slurm.py (`make test-slurm`).
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from nfutil import (HAS_NEXTFLOW, ROOT, cli_pids, compare_runs, explain, kill_pids, nextflow, nextflow_bg,
                    pids_in, read_trace, running_task_dir, short, wait_for)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`")]

RUN_ID = "demo_staig_s0"   # group demo, STAIG, seed 0: also a run of the session's undisturbed test profile
ARGS = ["-profile", "test", "--methods", "staig", "--outdir", "results", "-w", "work"]


def _undisturbed(real_run) -> Path:
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    return cwd / "results"


def _training(workdir: Path, proc) -> tuple[Path, list[int]]:
    """Wait for a TRAIN task whose CLI runs; return its folder and the CLI's pid(s)."""
    def found():
        d = running_task_dir(workdir, "SPATIALDOMAINS_TRAIN")
        pids = cli_pids(d, "train") if d else []
        return (d, pids) if pids else None
    return wait_for(found, 900, "a running SPATIALDOMAINS_TRAIN task", proc=proc)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_train_task_is_retried_with_the_same_results(real_run, tmp_path):
    expected = _undisturbed(real_run)
    proc = nextflow_bg(["run", str(ROOT), *ARGS, "--trace_report_suffix", "kill"], tmp_path)
    try:
        task, pids = _training(tmp_path / "work", proc)
        time.sleep(3)   # well into training
        assert kill_pids(pids, signal.SIGKILL), f"no CLI process left to kill in {task}"
        rc = proc.wait(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, explain(cwd=tmp_path)
    assert (task / ".exitcode").read_text().strip() == "137"
    trace = read_trace(tmp_path / "results/pipeline_info/execution_trace_kill.txt")
    train = sorted((r["attempt"], r["status"], r["exit"]) for r in trace if short(r["process"]) == "SPATIALDOMAINS_TRAIN")
    assert train == [("1", "FAILED", "137"), ("2", "COMPLETED", "0")], train
    assert all(r["status"] == "COMPLETED" for r in trace if short(r["process"]) != "SPATIALDOMAINS_TRAIN")
    summary = compare_runs(expected, tmp_path / "results", ids=[RUN_ID])
    print(f"retry: {summary}")


def test_killed_driver_resumes_from_the_cache_without_partial_outputs(real_run, tmp_path):
    expected = _undisturbed(real_run)
    work, results = tmp_path / "work", tmp_path / "results"
    proc = nextflow_bg(["run", str(ROOT), *ARGS, "--trace_report_suffix", "crash"], tmp_path)
    try:
        task, _ = _training(work, proc)
        time.sleep(3)   # the tasks before TRAIN have finished and published
        done = {f"{d.parent.name}/{d.name[:6]}": d for d in (p.parent for p in work.glob("*/*/.exitcode"))
                if (d / ".exitcode").read_text().strip() == "0"}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # what a dead driver leaves running: its tasks (ours, found by their working directory under work/)
    orphans = pids_in(work)
    kill_pids(orphans, signal.SIGKILL)
    assert done, "no task had finished before the driver was killed"

    # (1) nothing of the unfinished TRAIN task was published, and every published file is complete
    finished_outputs: dict[str, set[str]] = {}
    for d in done.values():
        for f in d.iterdir():
            if f.is_file() and not f.name.startswith(".") and not f.is_symlink():
                finished_outputs.setdefault(f.name, set()).add(_sha(f))
    unfinished = {f.name for f in task.iterdir() if f.is_file() and not f.name.startswith(".")}
    published = [p for p in results.rglob("*") if p.is_file() and "pipeline_info" not in p.parts]
    assert published, "nothing was published before the crash"
    for path in published:
        assert path.name not in unfinished or path.name in finished_outputs, f"{path} comes from the killed task"
        assert _sha(path) in finished_outputs.get(path.name, set()), f"{path} is not a finished task's output"

    # (2) -resume: the finished tasks come from the cache, the run completes with the undisturbed results
    res = nextflow(["run", str(ROOT), *ARGS, "--trace_report_suffix", "resume", "-resume"], tmp_path, timeout=1500)
    assert res.returncode == 0, explain(res)
    trace = read_trace(results / "pipeline_info/execution_trace_resume.txt")
    by_hash = {r["hash"]: r for r in trace}
    assert set(done) <= set(by_hash), sorted(set(done) - set(by_hash))
    assert all(by_hash[h]["status"] == "CACHED" for h in done), [(by_hash[h]["name"], by_hash[h]["status"]) for h in done]
    train = [r for r in trace if short(r["process"]) == "SPATIALDOMAINS_TRAIN"]
    assert [r["status"] for r in train] == ["COMPLETED"], train
    print(f"resume: {len(done)} task(s) cached, {sum(r['status'] == 'COMPLETED' for r in trace)} run")
    compare_runs(expected, results, ids=[RUN_ID])
    for path in published:   # the files published before the crash are still those of the finished tasks
        assert _sha(path) in finished_outputs.get(path.name, set()), path
