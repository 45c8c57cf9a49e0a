"""Helpers for the tests that run the pipeline for real: Nextflow runs (blocking or in the background), trace
files, killing one running task or the driver, and comparing the outputs of two runs.

Used by tests/pipeline/test_resilience.py (part of `make test`) and by the opt-in suites
tests/slurm/ (`make test-slurm`), tests/containers/ (`make test-containers`) and tests/full/ (`make test-full`).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv/bin"
NEXTFLOW = VENV_BIN / "nextflow" if (VENV_BIN / "nextflow").exists() else ROOT / "tools/nextflow/nextflow"
HAS_NEXTFLOW = (ROOT / "tools/nextflow/lib").exists()
METHODS = ("staig", "spotscape")


# --- running Nextflow ------------------------------------------------------------------------------------------

#: The environment before any test ran: libraries loaded by earlier tests (rpy2 edits LD_LIBRARY_PATH when R
#: starts) must not leak into Nextflow and its tasks.
_START_ENV = dict(os.environ)


def nf_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Offline, plain log, the venv's CLI on PATH, C1-only JIT (the JVM starts faster on a busy machine)."""
    env = {**_START_ENV, "NXF_OFFLINE": "true", "NXF_ANSI_LOG": "false",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("NXF_OPTS", "-XX:+TieredCompilation -XX:TieredStopAtLevel=1")
    env.pop("NXF_WORK", None)
    env.update(extra or {})
    return env


def nextflow(args: list[str], cwd: Path, timeout: int = 1800, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([str(NEXTFLOW), *args], cwd=cwd, env=nf_env(env), capture_output=True, text=True,
                          timeout=timeout)


def nextflow_bg(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a run in the background; its output goes to cwd/nextflow.stdout (the wrapper execs java, so the
    Popen pid is the driver's)."""
    out = open(cwd / "nextflow.stdout", "w")
    return subprocess.Popen([str(NEXTFLOW), *args], cwd=cwd, env=nf_env(env), stdout=out, stderr=subprocess.STDOUT,
                            text=True)


def explain(res: subprocess.CompletedProcess | None = None, cwd: Path | None = None) -> str:
    parts = []
    if res is not None:
        parts.append(f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-6000:]}\n--- stderr ---\n{res.stderr[-6000:]}")
    if cwd is not None and (cwd / "nextflow.stdout").exists():
        parts.append(f"--- nextflow.stdout ---\n{(cwd / 'nextflow.stdout').read_text()[-6000:]}")
    return "\n".join(parts)


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.5,
             proc: subprocess.Popen | None = None):
    """Poll until condition() is truthy (returned); fail after timeout or when proc ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = condition()
            if value:
                return value
            raise AssertionError(f"the run ended (exit {proc.returncode}) before: {what}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")


# --- trace and task folders ------------------------------------------------------------------------------------

def read_trace(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def short(process: str) -> str:
    return process.rsplit(":", 1)[-1]


def task_dirs(workdir: Path, process: str) -> list[Path]:
    """Work folders of `process` (short name), found by their .command.run (no trace row until a task ends)."""
    out = []
    for run in workdir.glob("*/*/.command.run"):
        text = run.read_text(errors="replace")
        head = text[:3000]  # the SLURM header (#SBATCH lines) comes before the "### name:" line
        if f":{process} (" in head or f"TASK: {process} (" in head:
            out.append(run.parent)
    return sorted(out)


def running_task_dir(workdir: Path, process: str) -> Path | None:
    """A task of `process` that has begun and not ended (.command.begin, no .exitcode)."""
    for d in task_dirs(workdir, process):
        if (d / ".command.begin").exists() and not (d / ".exitcode").exists():
            return d
    return None


def pids_in(folder: Path) -> list[int]:
    """Processes whose working directory is `folder` or below it (a task's bash, its CLI and their children)."""
    found = []
    target = str(folder.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == target or cwd.startswith(target + "/"):
            found.append(int(proc.name))
    return sorted(found)


def cli_pids(task_dir: Path, subcommand: str) -> list[int]:
    """The `spatialdomains <subcommand>` process(es) of one task (not its bash wrappers)."""
    out = []
    for pid in pids_in(task_dir):
        try:
            args = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"spatialdomains") for a in args) and subcommand.encode() in args:
            out.append(pid)
    return out


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> list[int]:
    killed = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


# --- comparing two runs ----------------------------------------------------------------------------------------

def group_dirs(outdir: Path) -> list[Path]:
    return sorted(p for p in outdir.iterdir()
                  if p.is_dir() and p.name not in ("pipeline_info", "slices", "multiqc", "simulated_input"))


def run_files(outdir: Path, suffix: str) -> dict[str, Path]:
    """`<group>/<method>/seed<k>/<id><suffix>` files of a results folder, by id."""
    return {p.name[: -len(suffix)]: p for p in sorted(outdir.glob(f"*/*/seed*/*{suffix}"))}


def ari(a, b) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def compare_runs(out_a: Path, out_b: Path, *, ids: Iterable[str] | None = None, ari_min: float = 1.0,
                 rel_tol: float = 1e-6, abs_tol: float = 1e-6) -> dict[str, dict]:
    """Domains and metrics of the runs in both folders (or `ids`): ARI between the domain calls (>= ari_min) and
    every numeric metric within tolerance. Returns per id {'ari': ..., 'max_metric_diff': ...}; raises
    AssertionError listing every difference."""
    import pandas as pd

    dom_a, dom_b = run_files(out_a, ".domains.csv"), run_files(out_b, ".domains.csv")
    met_a, met_b = run_files(out_a, ".metrics.json"), run_files(out_b, ".metrics.json")
    wanted = sorted(ids) if ids is not None else sorted(dom_a)
    problems, summary = [], {}
    for rid in wanted:
        if rid not in dom_a or rid not in dom_b:
            problems.append(f"{rid}: domains missing in {'first' if rid not in dom_a else 'second'} run")
            continue
        a, b = _domains(dom_a[rid]), _domains(dom_b[rid])
        keys = [c for c in ("slice", "barcode") if c in a]
        if not a[keys].equals(b[keys]):
            problems.append(f"{rid}: the runs called domains for different spots")
            continue
        score = ari(a["domain"].astype(str), b["domain"].astype(str))
        if score < ari_min:
            problems.append(f"{rid}: ARI between the runs' domains {score:.4f} < {ari_min}")
        ma = json.loads(met_a[rid].read_text())
        mb = json.loads(met_b[rid].read_text())
        worst = 0.0
        for key, va in ma.items():
            vb = mb.get(key)
            if isinstance(va, (int, float)) and not isinstance(va, bool) and isinstance(vb, (int, float)):
                diff = abs(va - vb)
                worst = max(worst, diff)
                if diff > abs_tol + rel_tol * abs(va):
                    problems.append(f"{rid}: metric {key} {va!r} vs {vb!r}")
            elif key not in ("seconds", "time", "elapsed") and va != vb and not isinstance(va, dict):
                problems.append(f"{rid}: {key} {va!r} vs {vb!r}")
        summary[rid] = {"ari": score, "max_metric_diff": worst}
    if problems:
        raise AssertionError("the runs differ:\n  " + "\n  ".join(problems))
    return summary


def _domains(path: Path):
    import pandas as pd

    df = pd.read_csv(path)
    return df.sort_values([c for c in ("slice", "barcode") if c in df]).reset_index(drop=True)


def peak_memory_by_label(trace: list[dict[str, str]], labels: dict[str, str]) -> dict[str, dict[str, str]]:
    """Highest peak_rss and the requested memory per resource label (labels: process short name -> label)."""
    out: dict[str, dict[str, object]] = {}
    for row in trace:
        label = labels.get(short(row["process"]), "?")
        rss = parse_size(row.get("peak_rss", "-"))
        entry = out.setdefault(label, {"peak_rss": 0, "process": "", "memory": row.get("memory", "-"), "tasks": 0})
        entry["tasks"] = int(entry["tasks"]) + 1
        if rss > int(entry["peak_rss"]):
            entry.update(peak_rss=rss, process=short(row["process"]), memory=row.get("memory", "-"))
    return {k: {**v, "peak_rss": human(int(v["peak_rss"]))} for k, v in sorted(out.items())}


_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def parse_size(text: str) -> int:
    text = (text or "").strip()
    if not text or text == "-":
        return 0
    num, _, unit = text.partition(" ")
    return int(float(num) * _UNITS.get(unit.upper() or "B", 1))


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GB"
