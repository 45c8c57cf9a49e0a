"""The pure parts of benchmarks/scale_pipeline.py: trace parsing, per-process summaries, results merging,
the markdown table and BANKSY's failure reasons. No Nextflow, no BANKSY."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sp():
    spec = importlib.util.spec_from_file_location("scale_pipeline", ROOT / "benchmarks" / "scale_pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRACE = "\t".join(["task_id", "process", "name", "status", "exit", "attempt", "realtime", "peak_rss", "%cpu"]) + "\n" + "\n".join(
    "\t".join(row) for row in [
        ["1", "PIPELINE_INITIALISATION:SPATIALDOMAINS_VALIDATE", "PIPELINE_INITIALISATION:SPATIALDOMAINS_VALIDATE (s)",
         "COMPLETED", "0", "1", "350ms", "120 MB", "95.0%"],
        ["2", "SPATIALDOMAINS:PREPARE_SLICES:SPATIALDOMAINS_READ", "SPATIALDOMAINS:PREPARE_SLICES:SPATIALDOMAINS_READ (a)",
         "COMPLETED", "0", "1", "12.5s", "350 MB", "101.2%"],
        ["3", "SPATIALDOMAINS:PREPARE_SLICES:SPATIALDOMAINS_READ", "SPATIALDOMAINS:PREPARE_SLICES:SPATIALDOMAINS_READ (b)",
         "COMPLETED", "0", "1", "1m 2s", "1.2 GB", "180.0%"],
        ["4", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_TRAIN", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_TRAIN (g)",
         "FAILED", "137", "1", "1h 3m 4s", "7.5 GB", "199.0%"],
        ["5", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_TRAIN", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_TRAIN (g)",
         "COMPLETED", "0", "2", "2m", "6 GB", "150.0%"],
        ["6", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_CLUSTER", "SPATIALDOMAINS:LEARN_DOMAINS:SPATIALDOMAINS_CLUSTER (g)",
         "ABORTED", "-", "1", "-", "-", "-"],
    ]) + "\n"


@pytest.mark.parametrize("text,expected", [("1.2 GB", round(1.2 * 1024**3)), ("350 MB", 350 * 1024**2), ("12 KB", 12288),
                                           ("0", 0), ("-", None), ("", None), (None, None), ("1 TB", 1024**4)])
def test_parse_size(sp, text, expected):
    assert sp.parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("350ms", 0.35), ("12.5s", 12.5), ("1m 2s", 62.0), ("2m", 120.0),
                                           ("1h 3m 4s", 3784.0), ("2d 1h", 2 * 86400 + 3600.0), ("-", None),
                                           ("", None)])
def test_parse_duration(sp, text, expected):
    got = sp.parse_duration(text)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("bad", ["1.2 XB", "soon"])
def test_parse_rejects_garbage(sp, bad):
    with pytest.raises(ValueError):
        sp.parse_size(bad) if "B" in bad else sp.parse_duration(bad)


def test_summarise_trace_max_per_process_and_failures(sp):
    summary = sp.summarise_trace(sp.read_trace(TRACE))
    procs = summary["processes"]
    assert set(procs) == {"SPATIALDOMAINS_VALIDATE", "SPATIALDOMAINS_READ", "SPATIALDOMAINS_TRAIN",
                          "SPATIALDOMAINS_CLUSTER"}
    read = procs["SPATIALDOMAINS_READ"]
    assert read["tasks"] == 2
    assert read["wall_s"] == pytest.approx(62.0)  # the max over the tasks
    assert read["wall_s_sum"] == pytest.approx(74.5)
    assert read["peak_rss"] == round(1.2 * 1024**3)
    assert read["cpu_pct"] == pytest.approx(180.0)
    train = procs["SPATIALDOMAINS_TRAIN"]
    assert train["tasks"] == 2 and train["failed"] == 1
    assert train["peak_rss"] == round(7.5 * 1024**3)  # the failed attempt's peak counts
    cluster = procs["SPATIALDOMAINS_CLUSTER"]
    assert cluster["wall_s"] is None and cluster["peak_rss"] is None and cluster["failed"] == 1
    failed = {(t["process"], t["status"], t["exit"]) for t in summary["failed_tasks"]}
    assert failed == {("SPATIALDOMAINS_TRAIN", "FAILED", 137), ("SPATIALDOMAINS_CLUSTER", "ABORTED", None)}
    assert summary["max_peak_rss"] == round(7.5 * 1024**3)
    assert [procs[p]["first_task"] for p in sp.process_order({"run": summary})] == [1, 2, 4, 6]


def test_summarise_trace_without_process_column(sp):
    text = "name\tstatus\texit\trealtime\tpeak_rss\nA:B:SPATIALDOMAINS_QC (s1)\tCOMPLETED\t0\t3s\t10 MB\n"
    summary = sp.summarise_trace(sp.read_trace(text))
    assert summary["processes"]["SPATIALDOMAINS_QC"]["wall_s"] == 3.0
    assert summary["failed_tasks"] == []


def test_summarise_empty_trace(sp):
    summary = sp.summarise_trace(sp.read_trace("name\tstatus\n"))
    assert summary == {"processes": {}, "failed_tasks": [], "max_peak_rss": 0}


def test_process_order_submission_then_name(sp):
    results = {"a": {"processes": {"MULTIQC": {"first_task": 9}, "SPATIALDOMAINS_READ": {"first_task": 2}}},
               "b": {"processes": {"SPATIALDOMAINS_VALIDATE": {"first_task": 1}, "OLD": {}}},
               "c": {"method": "banksy"}}
    assert sp.process_order(results) == ["SPATIALDOMAINS_VALIDATE", "SPATIALDOMAINS_READ", "MULTIQC", "OLD"]


def _entry(sp, method="staig", **kw):
    base = {"format": "xenium", "n": 2000, "genes": 300, "method": method, "status": "ok", "wall_s": 321.0,
            "ari": 0.61, "machine_memory": 8 * 1024**3, "machine_cpus": 2, "load_start": 3.5, "nf_args": [],
            **sp.summarise_trace(sp.read_trace(TRACE))}
    base.update(kw)
    return base


def test_merge_results_keeps_other_keys(sp):
    old = {"xenium/2000/300/staig": {"ari": 0.1}, "xenium/2000/300/spotscape": {"ari": 0.2}}
    merged = sp.merge_results(old, {"xenium/2000/300/staig": {"ari": 0.5}, "visium_hd/2000/2000/staig": {"ari": 0.3}})
    assert merged == {"xenium/2000/300/staig": {"ari": 0.5}, "xenium/2000/300/spotscape": {"ari": 0.2},
                      "visium_hd/2000/2000/staig": {"ari": 0.3}}
    assert old["xenium/2000/300/staig"] == {"ari": 0.1}  # not modified in place


def test_save_results_merges_file_and_writes_md(sp, tmp_path):
    path = tmp_path / "scale_pipeline.json"
    sp.save_results({sp.result_key("xenium", 2000, 300, "staig"): _entry(sp)}, path)
    sp.save_results({sp.result_key("xenium", 2000, 300, "banksy"): _entry(sp, method="banksy", peak_rss=2**30,
                                                                           processes={}, failed_tasks=[])}, path)
    data = json.loads(path.read_text())
    assert set(data) == {"xenium/2000/300/staig", "xenium/2000/300/banksy"}
    assert "| xenium | 2000 | 300 | banksy |" in path.with_suffix(".md").read_text()


def test_result_key(sp):
    assert sp.result_key("xenium", 2000, 300, "staig") == "xenium/2000/300/staig"
    key = sp.result_key("xenium", 2000, 300, "spotscape", ["--spotscape_epochs=200", "--n_top_genes=/x/y"])
    assert key == "xenium/2000/300/spotscape+spotscape_epochs=200,n_top_genes=_x_y"
    assert sp._sort_key(key) == ("xenium", 2000, 300, False, "spotscape+spotscape_epochs=200,n_top_genes=_x_y")


def test_verdicts(sp):
    failed_run = _entry(sp)  # TRAIN failed once (retried): not "finished" cleanly
    assert sp.verdicts(failed_run) == {"finished": False, "under_memory": True}
    clean = _entry(sp, failed_tasks=[], max_peak_rss=9 * 1024**3)
    assert sp.verdicts(clean) == {"finished": True, "under_memory": False}
    assert sp.verdicts(_entry(sp, method="banksy", status="failed", peak_rss=None)) == {"finished": False,
                                                                                         "under_memory": None}


def test_render_markdown(sp):
    results = {"xenium/2000/300/staig": _entry(sp),
               "xenium/2000/300/banksy": _entry(sp, method="banksy", status="failed", ari=None, peak_rss=3 * 1024**3,
                                                processes={}, failed_tasks=[],
                                                failure="killed by signal 9 (SIGKILL: out of memory?)"),
               "visium_hd/2000/2000/staig": _entry(sp, genes=2000, format="visium_hd", failed_tasks=[])}
    md = sp.render_markdown(results)
    lines = md.splitlines()
    rows = [ln for ln in lines if ln.startswith("| visium_hd") or ln.startswith("| xenium")]
    assert [r.split(" | ")[3] for r in rows] == ["staig", "staig", "banksy"]  # visium_hd first, BANKSY last
    assert "| xenium | 2000 | 300 | staig | ok | 321 | 0.610 | 7.50 | **no** | yes | 3.5 | 2 / 8.00 | - |" in md
    assert "| READ | 62.0 / 1.20 x2 | 62.0 / 1.20 x2 |" in md
    assert "| TRAIN | 3784 / 7.50 x2 **1 failed** |" in md  # max over the attempts (the failed one ran 1h 3m 4s)
    assert "SIGKILL" in md and "exit 137" in md
    assert "shared" in md
    assert "| process | visium_hd 2000x2000 staig | xenium 2000x300 staig |" in md
    assert "Notes:" not in md and "BANKSY (one process" not in md
    results["xenium/2000/300/banksy"].update(read_s=4.0, banksy_s=8.9, cluster_s=120.0)
    assert "- `xenium/2000/300/banksy`: 4.0 / 8.9 / 120" in sp.render_markdown(results)
    results["xenium/2000/300/staig"]["nf_args"] = ["--staig_epochs=100"]
    assert "| xenium 2000x300 staig (--staig_epochs=100) |" in sp.render_markdown(results)
    results["xenium/2000/300/staig"]["note"] = "ran beside another run"
    assert "- `xenium/2000/300/staig`: ran beside another run" in sp.render_markdown(results)


def test_banksy_failure(sp):
    assert sp.banksy_failure(0, "", "") is None
    assert sp.banksy_failure(None, "timeout: ran past 60 s, killed", "") == "timeout: ran past 60 s, killed"
    log = "Traceback (most recent call last):\n  File x\nMemoryError: Unable to allocate 80 GiB\n"
    assert sp.banksy_failure(1, "", log) == "exception: MemoryError: Unable to allocate 80 GiB"
    assert sp.banksy_failure(137, "", "Command terminated by signal 9\n").startswith("killed by signal 9")
    assert sp.banksy_failure(-9, "", "").startswith("killed by signal 9")
    assert sp.banksy_failure(2, "", "no traceback") == "exit 2"


def test_parse_time_v(sp):
    text = ("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5\n"
            "\tMaximum resident set size (kbytes): 2097152\n")
    assert sp._parse_time_v(text) == {"wall_s": pytest.approx(3723.5), "peak_rss": 2 * 1024**3}


def test_ari_of_domains_labelled_only(sp, tmp_path):
    dom = tmp_path / "g.domains.csv"
    dom.write_text("barcode,slice,domain\nslice0_a,slice0,1\nslice0_b,slice0,1\nc,slice0,2\nd,slice0,2\ne,slice0,3\n")
    truth = {("slice0", "a"): "L1", ("slice0", "b"): "L1", ("slice0", "c"): "L2", ("slice0", "d"): "L2"}
    ari, n = sp.ari_of_domains(dom, truth)  # e is unlabelled: not scored
    assert n == 4 and ari == pytest.approx(1.0)


def test_write_sheet_absolute_paths(sp, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "samplesheet.csv").write_text("sample,group,data,image,platform,truth,n_domains\n"
                                            "slice0,group1,slice0,,xenium,slice0_truth.csv,7\n")
    sheet, rows = sp.write_sheet(inputs, tmp_path / "run" / "samplesheet.csv", "xenium_2000")
    assert rows[0]["group"] == "xenium_2000" and rows[0]["image"] == ""
    assert rows[0]["data"] == str((inputs / "slice0").resolve())
    assert sheet.read_text().splitlines()[1].startswith(f"slice0,xenium_2000,{inputs.resolve()}/slice0,")
