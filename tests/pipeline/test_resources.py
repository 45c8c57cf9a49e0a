"""The pipeline runs on the machine it is started on (issue 16, item 0).

With the local executor every request is capped to this machine's CPUs and memory (nextflow.config
`process.resourceLimits`, read at start), so labels that ask for more than a laptop has still run:
(a) a -stub run without a profile, with a label raised to 64 CPUs and 4 TB, runs it with the machine's CPUs and memory;
(b) `process.resourceLimits` in a -c site config caps every task below that;
(c) a real run without a profile and without a config, on a Space Ranger `outs/` folder (written from the demo's
    first slice in the real file formats), passes with the default labels (6 CPUs for PREPARE and TRAIN: more
    than a 2-core machine has) and calls domains for every spot of the folder.
Training is shortened (--staig_epochs), the image step skipped (its CPU cost is issue 16 item 4's) and the group
report left out (the session's -profile test run checks it): what is tested is the run on this machine.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from nfutil import HAS_NEXTFLOW, ROOT, explain, nextflow, parse_size, read_trace, short
from spaceranger import write_spaceranger

pytestmark = pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`")

DEMO = ROOT / "assets/demo"
CPUS = os.cpu_count() or 1
MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")   # what the JVM reads as total physical memory
SHORT = ["--methods", "staig", "--staig_epochs", "30", "--skip_images", "--skip_report"]


def _cpus_and_memory(trace: list[dict[str, str]]) -> dict[str, set[tuple[int, int]]]:
    out: dict[str, set[tuple[int, int]]] = {}
    for row in trace:
        out.setdefault(short(row["process"]), set()).add((int(row["cpus"]), parse_size(row["memory"])))
    return out


def _capped(used: set[tuple[int, int]], cpus: int, memory: str) -> bool:
    """Every task of a process ran with min(request, machine): the trace prints memory rounded (23.5 GB)."""
    want = min(parse_size(memory), MEMORY)
    return all(c == min(cpus, CPUS) and abs(m - want) <= 0.01 * want for c, m in used)


def _stub(tmp_path: Path, *args: str) -> list[dict[str, str]]:
    res = nextflow(["run", str(ROOT), "-stub", "--input", str(DEMO / "samplesheet.csv"), "--methods", "staig",
                    "--skip_report", "--outdir", "results", "-w", "work", "--trace_report_suffix", "stub", *args],
                   tmp_path, timeout=900)
    assert res.returncode == 0, explain(res)
    trace = read_trace(tmp_path / "results/pipeline_info/execution_trace_stub.txt")
    assert trace and all(row["status"] == "COMPLETED" for row in trace), trace
    return trace


def test_labels_above_the_machine_run_with_its_cpus_and_memory(tmp_path):
    big = tmp_path / "big_labels.config"
    big.write_text("process {\n    withLabel: 'process_medium' {\n        cpus = 64\n        memory = 4.TB\n    }\n}\n")
    used = _cpus_and_memory(_stub(tmp_path, "-c", str(big)))
    for process in ("SPATIALDOMAINS_PREPARE", "SPATIALDOMAINS_TRAIN", "SPATIALDOMAINS_IMAGE_FEATURES"):
        assert _capped(used[process], 64, "4 TB"), (process, used[process], CPUS, MEMORY)
    assert _capped(used["SPATIALDOMAINS_QC"], 2, "12 GB"), used["SPATIALDOMAINS_QC"]   # process_low as it was


def test_a_site_config_caps_every_task(tmp_path):
    site = tmp_path / "site.config"
    site.write_text("process.resourceLimits = [cpus: 1, memory: 2.GB, time: 1.h]\n")
    used = _cpus_and_memory(_stub(tmp_path, "-c", str(site)))
    assert {pair for pairs in used.values() for pair in pairs} == {(1, parse_size("2 GB"))}, used


@pytest.fixture(scope="module")
def spaceranger_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spaceranger")
    outs, truth = write_spaceranger(DEMO / "slice0.h5ad", root / "slice0", truth_key="truth")
    sheet = root / "samplesheet.csv"
    with open(sheet, "w", newline="") as fh:
        csv.writer(fh).writerows([["sample", "data", "platform", "truth", "n_domains"],
                                  ["slice0", str(outs), "visium", str(truth), "5"]])
    # no -profile and no -c: the defaults of nextflow.config on whatever machine runs the tests
    res = nextflow(["run", str(ROOT), "--input", str(sheet), "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", "sr", *SHORT], root, timeout=2400)
    return root, outs, res


def test_no_profile_run_on_a_spaceranger_folder_passes(spaceranger_run):
    root, outs, res = spaceranger_run
    assert res.returncode == 0, explain(res)
    trace = read_trace(root / "results/pipeline_info/execution_trace_sr.txt")
    assert trace and all(row["status"] == "COMPLETED" for row in trace), trace
    used = _cpus_and_memory(trace)
    assert max(c for pairs in used.values() for c, _ in pairs) <= CPUS
    assert max(m for pairs in used.values() for _, m in pairs) <= MEMORY
    for process in ("SPATIALDOMAINS_PREPARE", "SPATIALDOMAINS_TRAIN"):   # process_medium: 6 CPUs, 36 GB asked
        assert _capped(used[process], 6, "36 GB"), (process, used[process], CPUS, MEMORY)


def test_no_profile_run_calls_domains_for_every_spot_of_the_folder(spaceranger_run):
    root, outs, res = spaceranger_run
    assert res.returncode == 0, explain(res)
    import pandas as pd

    positions = pd.read_csv(outs / "spatial/tissue_positions.csv")
    run = root / "results/slice0/staig/seed0"
    calls = pd.read_csv(run / "slice0_staig_s0.domains.csv")
    assert sorted(calls["barcode"]) == sorted(positions.loc[positions["in_tissue"] == 1, "barcode"])
    assert calls["domain"].nunique() == 5   # the sheet's n_domains
    metrics = json.loads((run / "slice0_staig_s0.metrics.json").read_text())
    assert 0 < metrics["ari"] <= 1   # the truth file was read
    assert (root / "results/multiqc/multiqc_report.html").exists()
