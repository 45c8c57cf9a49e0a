#!/usr/bin/env python
"""The whole pipeline (``nextflow run``) on large synthetic slices in real formats, plus BANKSY on the same files.

Never part of ``make test``. For every (format, size, method): ``spatialdomains simulate --format
visium_hd|xenium`` writes the input once into a cache folder (reused when present; written to a
temporary folder and renamed, so a killed write leaves nothing half-done), a sample sheet names it, and
``nextflow run <repo> --input sheet --outdir ... --methods <method> --seeds 0 -with-trace`` runs it with a
per-run timeout. From the trace: wall time (``realtime``) and peak RSS per process (the max over its tasks),
failed or killed tasks with their exit codes; from the outputs: the ARI of the domains the pipeline wrote
(``<group>/<method>/seed0/<id>.domains.csv``) against the planted domains (``<slice>_truth.csv``, labelled
cells only); and the run's total wall time. With ``--banksy``, pybanksy (the ``bench`` extra) runs its own
recipe (``benchmarks/accuracy.py``'s :func:`banksy_embedding`, mclust K = the planted domains) on the same
files, read with ``spatialdomains.io.read``, in a subprocess under ``/usr/bin/time -v``: wall time, peak RSS
and ARI, or how it failed (exception, killed, timeout).

Usage::

    python benchmarks/scale_pipeline.py --format xenium --n 2000 --genes 300 --methods staig,spotscape
    python benchmarks/scale_pipeline.py --format visium_hd --n 2000 --genes 2000 --methods staig
    python benchmarks/scale_pipeline.py --format xenium --n 2000 --genes 300 --methods none --banksy
    # the targets of issue 14 (hours, a large machine):
    python benchmarks/scale_pipeline.py --format visium_hd --n 500000 --genes 18000 --timeout 86400
    python benchmarks/scale_pipeline.py --format xenium --n 1000000 --genes 300 --timeout 86400 --banksy

Nextflow is ``.venv/bin/nextflow`` (or ``--nextflow``), run offline with the venv's ``bin/`` first on
``PATH`` (where the tasks find ``spatialdomains``); ``--profile`` is empty by default (what a user runs:
the local executor caps every request to this machine). ``--nf-arg`` passes more options (e.g.
``--nf-arg=--staig_epochs=100``); they are recorded. Results are merged (never overwritten) into
``benchmarks/results/scale_pipeline.json`` keyed ``<format>/<n>/<genes>/<method>`` (``banksy`` for BANKSY),
and ``scale_pipeline.md`` is regenerated from it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "scale_pipeline.json"
DEFAULT_CACHE = Path("/tmp/spatialdomains-scale")
#: the venv's bin/ (nextflow, the ``spatialdomains`` console script): this checkout's, else the running Python's
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
N_DOMAINS = 7
#: trace fields of the runs (a ``-c`` config: ``-with-trace`` sets only the file)
TRACE_FIELDS = "task_id,process,name,tag,status,exit,attempt,cpus,memory,realtime,duration,peak_rss,peak_vmem,%cpu"
FAILED_STATUSES = {"FAILED", "ABORTED"}

_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# --------------------------------------------------------------------------------------------------
# trace parsing (pure)
# --------------------------------------------------------------------------------------------------
def parse_size(text: str | None) -> int | None:
    """Bytes of a trace memory value (``1.2 GB``, ``350 MB``, ``0``); None for ``-`` or empty."""
    text = (text or "").strip()
    if not text or text == "-":
        return None
    m = re.fullmatch(r"([\d.]+)\s*([KMGTP]?B)?", text, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"not a trace size: {text!r}")
    return int(round(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "B").upper()]))


def parse_duration(text: str | None) -> float | None:
    """Seconds of a trace duration (``350ms``, ``12.5s``, ``1m 2s``, ``1h 3m 4s``, ``2d 1h``); None for ``-``."""
    text = (text or "").strip()
    if not text or text == "-":
        return None
    parts = re.findall(r"([\d.]+)\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(r"[\d.]+\s*(ms|s|m|h|d)", "", text).strip():
        raise ValueError(f"not a trace duration: {text!r}")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)


def read_trace(text: str) -> list[dict[str, str]]:
    """Rows of a Nextflow trace file (tab-separated, one header line)."""
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def short_name(process: str) -> str:
    """``SPATIALDOMAINS:...:SPATIALDOMAINS_TRAIN`` -> ``SPATIALDOMAINS_TRAIN``."""
    return process.rsplit(":", 1)[-1]


def _process_of(row: dict[str, str]) -> str:
    """The process of a row: the ``process`` field, else the task name without its tag."""
    if row.get("process"):
        return short_name(row["process"])
    return short_name(re.sub(r"\s*\(.*\)\s*$", "", row.get("name", "?")))


def summarise_trace(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Per process: tasks, max and summed wall time (s), max peak RSS (bytes), max %CPU; and the failed tasks.

    A task counts as failed when its status is FAILED/ABORTED or its exit code is set and not 0 (a retried
    task appears once per attempt: the failed attempt is listed, the process still gets the later success).
    """
    procs: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for row in rows:
        name = _process_of(row)
        p = procs.setdefault(name, {"tasks": 0, "wall_s": None, "wall_s_sum": 0.0, "peak_rss": None,
                                    "cpu_pct": None, "failed": 0, "first_task": None})
        p["tasks"] += 1
        task_id = (row.get("task_id") or "").strip()
        if task_id.isdigit():  # submission order: the table lists the processes in pipeline order
            p["first_task"] = min(p["first_task"] or int(task_id), int(task_id))
        wall = parse_duration(row.get("realtime"))
        if wall is not None:
            p["wall_s"] = max(p["wall_s"] or 0.0, wall)
            p["wall_s_sum"] += wall
        rss = parse_size(row.get("peak_rss"))
        if rss is not None:
            p["peak_rss"] = max(p["peak_rss"] or 0, rss)
        cpu = (row.get("%cpu") or "-").strip().rstrip("%")
        if cpu not in ("", "-"):
            p["cpu_pct"] = max(p["cpu_pct"] or 0.0, float(cpu))
        status = (row.get("status") or "").strip().upper()
        code = (row.get("exit") or "-").strip()
        if status in FAILED_STATUSES or (code not in ("", "-", "0")):
            p["failed"] += 1
            failed.append({"process": name, "name": row.get("name", name), "status": status,
                           "exit": int(code) if code.lstrip("-").isdigit() else None,
                           "attempt": row.get("attempt") or None})
    return {"processes": procs, "failed_tasks": failed,
            "max_peak_rss": max((p["peak_rss"] or 0 for p in procs.values()), default=0)}


# --------------------------------------------------------------------------------------------------
# results (pure)
# --------------------------------------------------------------------------------------------------
def result_key(fmt: str, n: int, genes: int, method: str, nf_args: list[str] | tuple[str, ...] = ()) -> str:
    """``<format>/<n>/<genes>/<method>``; runs with ``--nf-arg`` options get them appended (``+a=1,b=2``)."""
    extra = ",".join(a.lstrip("-") for a in nf_args).replace("/", "_")
    return f"{fmt}/{n}/{genes}/{method}" + (f"+{extra}" if extra else "")


def merge_results(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with the entries of ``new`` added or replacing those of the same key (other keys kept)."""
    return {**existing, **new}


def verdicts(entry: dict[str, Any]) -> dict[str, bool | None]:
    """Target verdicts of one row: the whole run finished; every process (or BANKSY) stayed under the memory."""
    mem = entry.get("machine_memory")
    if entry.get("method") == "banksy":
        ok = entry.get("status") == "ok"
        rss = entry.get("peak_rss")
        return {"finished": ok, "under_memory": None if rss is None or not mem else rss < mem}
    finished = entry.get("status") == "ok" and not entry.get("failed_tasks")
    peak = entry.get("max_peak_rss")
    return {"finished": finished, "under_memory": None if not peak or not mem else peak < mem}


def _gb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.2f}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _yes(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "**no**"


def _sort_key(key: str) -> tuple:
    fmt, n, genes, method = key.split("/", 3)
    return fmt, int(n), int(genes), method == "banksy", method


def _column(r: dict[str, Any]) -> str:
    """Column label of one run: input, size, method and its extra options."""
    args = " ".join(r.get("nf_args") or [])
    return f"{r['format']} {r['n']}x{r['genes']} {r['method']}" + (f" ({args})" if args else "")


def process_order(results: dict[str, Any]) -> list[str]:
    """Every process of the results, in submission order (the earliest first task of any run), then by name."""
    first: dict[str, float] = {}
    for r in results.values():
        for name, p in (r.get("processes") or {}).items():
            rank = p.get("first_task") if p.get("first_task") is not None else float("inf")
            first[name] = min(first.get(name, float("inf")), rank)
    return sorted(first, key=lambda name: (first[name], name))


def render_markdown(results: dict[str, Any]) -> str:
    """The table of every row of the JSON: totals and verdicts, then per process wall s / peak RSS GiB."""
    keys = sorted(results, key=_sort_key)
    lines = ["# Whole pipeline on large synthetic inputs (`benchmarks/scale_pipeline.py`)", "",
             "`spatialdomains simulate --format visium_hd|xenium` slices (7 planted domains) run by `nextflow run`",
             "(one method, seed 0, the methods' default epochs unless *args* says otherwise), and BANKSY (pybanksy,",
             "its own recipe, mclust) on the same files. Wall time and peak RSS per process from the Nextflow trace",
             "(max over the process's tasks); ARI of the published domains against the planted ones (labelled",
             "cells). **The machine is shared** with other jobs: the 1-min load average at the start of each row",
             "says how busy it was, so the seconds are upper bounds of what the steps need, not their cost on an",
             "idle machine. Verdicts: *finished* = the run ended with exit 0 and no failed task; *under memory* =",
             "every process's peak RSS (BANKSY's) below the machine's memory.", "",
             "| input | spots | genes | method | status | total wall s | ARI | max peak RSS GiB | finished |"
             " under memory | load at start | cores / memory GiB | args |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        r = results[key]
        v = verdicts(r)
        ari = "-" if r.get("ari") is None else f"{r['ari']:.3f}"
        peak = r.get("max_peak_rss") if r.get("method") != "banksy" else r.get("peak_rss")
        lines.append(f"| {r['format']} | {r['n']} | {r['genes']} | {r['method']} | {r.get('status', '?')} | "
                     f"{_s(r.get('wall_s'))} | {ari} | {_gb(peak)} | {_yes(v['finished'])} | "
                     f"{_yes(v['under_memory'])} | {r.get('load_start', '-')} | {r.get('machine_cpus', '-')} / "
                     f"{_gb(r.get('machine_memory'))} | {' '.join(r.get('nf_args') or []) or '-'} |")
    procs = process_order(results)
    runs = [k for k in keys if results[k].get("processes")]
    if runs:
        lines += ["", "Per process: `wall s / peak RSS GiB` (max over its tasks; `xN` = N tasks).", "",
                  "| process | " + " | ".join(_column(results[k]) for k in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        for proc in procs:
            cells = []
            for k in runs:
                p = results[k]["processes"].get(proc)
                if p is None:
                    cells.append("")
                    continue
                mark = f" **{p['failed']} failed**" if p.get("failed") else ""
                count = f" x{p['tasks']}" if p["tasks"] > 1 else ""
                cells.append(f"{_s(p.get('wall_s'))} / {_gb(p.get('peak_rss'))}{count}{mark}")
            lines.append(f"| {proc.removeprefix('SPATIALDOMAINS_')} | " + " | ".join(cells) + " |")
    banksy = [k for k in keys if results[k].get("method") == "banksy" and results[k].get("banksy_s") is not None]
    if banksy:
        lines += ["", "BANKSY (one process under `/usr/bin/time -v`): `read s / embedding s / mclust s` inside it.", ""]
        lines += [f"- `{k}`: {_s(results[k].get('read_s'))} / {_s(results[k]['banksy_s'])} / "
                  f"{_s(results[k].get('cluster_s'))}" for k in banksy]
    remarks = [(k, results[k]["note"]) for k in keys if results[k].get("note")]
    if remarks:
        lines += ["", "Notes:", ""] + [f"- `{k}`: {note}" for k, note in remarks]
    notes = [(k, results[k]) for k in keys if results[k].get("failed_tasks") or results[k].get("failure")]
    if notes:
        lines += ["", "Failures:", ""]
        for k, r in notes:
            if r.get("failure"):
                lines.append(f"- `{k}`: {r['failure']}")
            for t in r.get("failed_tasks") or []:
                lines.append(f"- `{k}`: task `{t['name']}` {t['status']} exit {t['exit']} (attempt {t['attempt']})")
    return "\n".join(lines) + "\n"


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(new: dict[str, Any], path: Path = RESULTS) -> dict[str, Any]:
    """Merge ``new`` into the JSON at ``path`` (re-read first: another run may have written) and regenerate the md."""
    merged = merge_results(load_results(path), new)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    path.with_suffix(".md").write_text(render_markdown(merged))
    return merged


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------
def input_dir(cache: Path, fmt: str, n: int, genes: int) -> Path:
    return cache / f"{fmt}_{n}x{genes}"


def simulate_cached(cache: Path, fmt: str, n: int, genes: int, timeout: float) -> tuple[Path, float | None]:
    """The simulated folder (reused when complete); written into a temporary folder, renamed when done."""
    final = input_dir(cache, fmt, n, genes)
    if (final / "samplesheet.csv").exists():
        return final, None
    tmp = cache / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "spatialdomains", "simulate", "--format", fmt, "--n-spots", str(n), "--n-genes",
           str(genes), "--n-domains", str(N_DOMAINS), "--seed", "0", "--out", str(tmp)]
    t0 = time.perf_counter()
    subprocess.run(["nice", "-n", "10", *cmd], check=True, timeout=timeout, env=_py_env())
    seconds = time.perf_counter() - t0
    tmp.rename(final)  # the sheet's relative paths stay valid
    return final, seconds


def write_sheet(inputs: Path, out: Path, group: str) -> tuple[Path, list[dict[str, str]]]:
    """The simulated sample sheet with absolute paths and our group name; returns it and its rows."""
    with open(inputs / "samplesheet.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["group"] = group
        for col in ("data", "truth", "image"):
            if row.get(col):
                row[col] = str((inputs / row[col]).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out, rows


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def read_truth(rows: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    """(slice, barcode) -> planted domain, labelled cells only, from the sheet's truth files."""
    import pandas as pd

    truth = {}
    for row in rows:
        t = pd.read_csv(row["truth"], dtype=str).dropna()
        truth.update({(row["sample"], b): lab for b, lab in zip(t.iloc[:, 0], t.iloc[:, 1]) if lab.strip()})
    return truth


def ari_of_domains(domains_csv: Path, truth: dict[tuple[str, str], str]) -> tuple[float | None, int]:
    """ARI of ``barcode,slice,domain`` against the truth (cells in both); and the number of cells scored."""
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    d = pd.read_csv(domains_csv, dtype=str)
    pred, true = [], []
    for b, s, dom in zip(d["barcode"], d["slice"], d["domain"]):
        lab = truth.get((s, b)) or truth.get((s, b.removeprefix(f"{s}_")))
        if lab is not None:
            pred.append(dom)
            true.append(lab)
    if not pred:
        return None, 0
    return float(adjusted_rand_score(true, pred)), len(pred)


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
def _py_env() -> dict[str, str]:
    """This checkout's package first on PYTHONPATH, the venv's bin/ first on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _machine() -> dict[str, Any]:
    return {"machine_cpus": os.cpu_count(), "machine_memory": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "load_start": round(os.getloadavg()[0], 1)}


def _run_group(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float, log: Path) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; on timeout SIGTERM the group (then SIGKILL). Returns (rc, why)."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return None, f"timeout: ran past {timeout:.0f} s, killed"


def run_pipeline(args: argparse.Namespace, fmt: str, n: int, genes: int, method: str, inputs: Path) -> dict[str, Any]:
    """One ``nextflow run`` of one method; its measurements as a results entry."""
    run_dir = args.workdir / f"{fmt}_{n}x{genes}_{method}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    group = f"{fmt}_{n}"
    sheet, rows = write_sheet(inputs, run_dir / "samplesheet.csv", group)
    trace = run_dir / "trace.txt"
    config = run_dir / "trace.config"
    config.write_text(f"trace.fields = '{TRACE_FIELDS}'\n")
    cmd = ["nice", "-n", "10", str(args.nextflow), "run", str(ROOT), "--input", str(sheet), "--outdir",
           str(run_dir / "results"), "--methods", method, "--seeds", "0", "-w", str(run_dir / "work"),
           "-with-trace", str(trace), "-c", str(config), *(["-profile", args.profile] if args.profile else []), *args.nf_arg]
    env = {**_py_env(), "NXF_OFFLINE": "true", "NXF_ANSI_LOG": "false"}
    env.setdefault("NXF_OPTS", "-XX:+TieredCompilation -XX:TieredStopAtLevel=1")
    entry: dict[str, Any] = {"format": fmt, "n": n, "genes": genes, "method": method, "nf_args": list(args.nf_arg),
                             "profile": args.profile or None, "timeout_s": args.timeout, **_machine(),
                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"{fmt} {n}x{genes} {method}: nextflow run (load {entry['load_start']}) ...", flush=True)
    t0 = time.perf_counter()
    rc, why = _run_group(cmd, cwd=run_dir, env=env, timeout=args.timeout, log=run_dir / "nextflow.log.txt")
    entry["wall_s"] = time.perf_counter() - t0
    entry["exit"] = rc
    entry.update(summarise_trace(read_trace(trace.read_text())) if trace.exists() else {"processes": {}})
    entry["status"] = "ok" if rc == 0 else "timeout" if rc is None else "failed"
    if rc not in (0, None):
        tail = (run_dir / "nextflow.log.txt").read_text(errors="replace").strip().splitlines()[-6:]
        entry["failure"] = f"nextflow exit {rc}: " + " | ".join(t.strip() for t in tail if t.strip())[:600]
    elif why:
        entry["failure"] = why
    domains = sorted((run_dir / "results" / group / method).glob("seed0/*.domains.csv"))
    if domains:
        entry["ari"], entry["n_scored"] = ari_of_domains(domains[0], read_truth(rows))
        metrics = domains[0].with_name(domains[0].name.replace(".domains.csv", ".metrics.json"))
        if metrics.exists():
            entry["pipeline_ari"] = json.loads(metrics.read_text()).get("ari")
    if not args.keep:
        shutil.rmtree(run_dir / "work", ignore_errors=True)
    return entry


def _parse_time_v(text: str) -> dict[str, float]:
    """Wall seconds and peak RSS (bytes) from ``/usr/bin/time -v`` output."""
    out: dict[str, float] = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["peak_rss"] = int(m.group(1)) * 1024
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["wall_s"] = secs
    return out


def banksy_failure(rc: int | None, timed_out: str, log_text: str) -> str | None:
    """How the BANKSY subprocess failed: timeout, killed by a signal (OOM killer: SIGKILL), or its exception."""
    if timed_out:
        return timed_out
    if rc == 0:
        return None
    m = re.search(r"Command terminated by signal (\d+)", log_text)
    if m or (rc is not None and rc < 0):
        sig = int(m.group(1)) if m else -rc
        return f"killed by signal {sig}" + (" (SIGKILL: out of memory?)" if sig == 9 else "")
    errors = [ln.strip() for ln in log_text.splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", ln.strip())]
    return f"exception: {errors[-1][:400]}" if errors else f"exit {rc}"


def run_banksy(args: argparse.Namespace, fmt: str, n: int, genes: int, inputs: Path) -> dict[str, Any]:
    """BANKSY on the simulated slice in a subprocess (``--banksy-worker``) under ``/usr/bin/time -v``."""
    run_dir = args.workdir / f"{fmt}_{n}x{genes}_banksy"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    _, rows = write_sheet(inputs, run_dir / "samplesheet.csv", f"{fmt}_{n}")
    out = run_dir / "banksy.json"
    cmd = ["/usr/bin/time", "-v", "nice", "-n", "10", sys.executable, str(Path(__file__).resolve()),
           "--banksy-worker", str(run_dir / "samplesheet.csv"), str(out)]
    entry: dict[str, Any] = {"format": fmt, "n": n, "genes": genes, "method": "banksy", "timeout_s": args.timeout,
                             **_machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"{fmt} {n}x{genes} banksy (load {entry['load_start']}) ...", flush=True)
    t0 = time.perf_counter()
    env = {**_py_env(), "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    rc, why = _run_group(cmd, cwd=run_dir, env=env, timeout=args.timeout, log=run_dir / "banksy.log")
    text = (run_dir / "banksy.log").read_text(errors="replace")
    entry.update({"wall_s": time.perf_counter() - t0, **_parse_time_v(text), "exit": rc})
    failure = banksy_failure(rc, why, text)
    entry["status"] = "ok" if failure is None else "timeout" if why else "failed"
    if failure:
        entry["failure"] = failure
    if out.exists():
        entry.update(json.loads(out.read_text()))
    return entry


def banksy_worker(sheet: Path, out: Path) -> None:
    """In the subprocess: read the sheet's slice(s) as the pipeline does, BANKSY embedding, mclust, ARI."""
    sys.path.insert(0, str(HERE))
    from accuracy import RunContext, banksy_embedding

    from spatialdomains import metrics
    from spatialdomains.cluster import mclust
    from spatialdomains.io import read

    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh))
    t0 = time.perf_counter()
    slices = [read(r["data"], platform=r["platform"], truth=r["truth"], library_id=r["sample"]) for r in rows]
    read_s = time.perf_counter() - t0
    k = int(rows[0].get("n_domains") or N_DOMAINS)
    emb = banksy_embedding(slices, RunContext(seed=0, device="cpu", image=False, overrides={}))
    t1 = time.perf_counter()
    labels = mclust(emb.embedding, k, random_state=2023)
    truth = emb.obs["truth"]
    lab = truth.notna().to_numpy()
    res = {"read_s": read_s, "banksy_s": emb.info["train_seconds"], "cluster_s": time.perf_counter() - t1,
           "ari": metrics.ari(truth.astype(str).to_numpy()[lab], labels[lab]), "n_scored": int(lab.sum()),
           "banksy_params": {k_: v for k_, v in emb.info.items() if k_ != "train_seconds"}}
    out.write_text(json.dumps(res, indent=1) + "\n")


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", dest="formats", default="xenium", help="Comma list of xenium, visium_hd.")
    ap.add_argument("--n", default="2000", help="Comma list of spots (bins, cells) per slice.")
    ap.add_argument("--genes", type=int, default=300)
    ap.add_argument("--methods", default="staig,spotscape", help="Comma list; 'none' for BANKSY alone.")
    ap.add_argument("--banksy", action="store_true", help="Also BANKSY (pybanksy) on the same files.")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="Simulated inputs, reused when present.")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_CACHE / "runs", help="Run folders (work dirs deleted).")
    ap.add_argument("--nextflow", type=Path, default=VENV_BIN / "nextflow")
    ap.add_argument("--profile", default="", help="-profile of the runs (default none: what a user runs).")
    ap.add_argument("--nf-arg", action="append", default=[], help="Extra nextflow option (repeat; recorded).")
    ap.add_argument("--timeout", type=float, default=3600.0, help="Seconds per run (pipeline or BANKSY).")
    ap.add_argument("--keep", action="store_true", help="Keep the Nextflow work folders.")
    ap.add_argument("--note", default="", help="A remark recorded with every row (e.g. what else ran).")
    ap.add_argument("--banksy-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.banksy_worker:
        banksy_worker(*args.banksy_worker)
        return
    methods = [m for m in args.methods.split(",") if m and m != "none"]
    for fmt in args.formats.split(","):
        for n in (int(v) for v in args.n.split(",")):
            inputs, sim_s = simulate_cached(args.cache, fmt, n, args.genes, args.timeout)
            for method in methods:
                entry = run_pipeline(args, fmt, n, args.genes, method, inputs)
                entry.update(simulate_s=sim_s, note=args.note or None)
                save_results({result_key(fmt, n, args.genes, method, args.nf_arg): entry})
                print(f"    {entry['status']} {entry['wall_s']:.0f} s ARI {entry.get('ari')}", flush=True)
            if args.banksy:
                entry = run_banksy(args, fmt, n, args.genes, inputs)
                entry["note"] = args.note or None
                save_results({result_key(fmt, n, args.genes, "banksy"): entry})
                print(f"    banksy {entry['status']} {entry.get('wall_s', 0):.0f} s ARI {entry.get('ari')}", flush=True)
    print(RESULTS.with_suffix(".md"))


if __name__ == "__main__":
    main()
