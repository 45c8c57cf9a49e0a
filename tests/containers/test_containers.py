"""`make test-containers`: the test profile with every task in the locally built CPU image (podman), against
the same profile with the tools of the venv.

- every task ran in `localhost/spatialdomains-cpu:<version>` (trace `container` column, pipeline_info/containers.yml);
- the domains (same seeds) and metrics equal those of the bare run within tolerance.

Opt-in (not part of `make test`): SPATIALDOMAINS_TEST_CONTAINERS=1, which `make test-containers` sets after
`scripts/containers.sh cpu-if-stale` has made sure the image holds the current src, lock and Dockerfile.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import yaml

from nfutil import HAS_NEXTFLOW, ROOT, compare_runs, explain, nextflow, read_trace, short

pytestmark = [
    pytest.mark.skipif(os.environ.get("SPATIALDOMAINS_TEST_CONTAINERS") != "1",
                       reason="opt-in: `make test-containers` (SPATIALDOMAINS_TEST_CONTAINERS=1)"),
    pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`"),
]

VERSION = "0.1.0"
IMAGE = f"localhost/spatialdomains-cpu:{VERSION}"
CONFIG = ROOT / "tests/containers/podman_local.config"
# Same image stack as the venv (requirements/lock.txt), but torch from PyPI in the image: allow float noise
ARI_MIN = float(os.environ.get("SPATIALDOMAINS_CONTAINER_ARI_MIN", "1.0"))
METRIC_TOL = float(os.environ.get("SPATIALDOMAINS_CONTAINER_METRIC_TOL", "1e-6"))


def _run(tmp_path_factory, name: str, extra: list[str]):
    cwd = tmp_path_factory.mktemp(name)
    start = time.monotonic()
    res = nextflow(["run", str(ROOT), "-profile", *extra, "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", name], cwd, timeout=3000)
    took = time.monotonic() - start
    assert res.returncode == 0, explain(res)
    trace = read_trace(cwd / f"results/pipeline_info/execution_trace_{name}.txt")
    print(f"{name}: {len(trace)} tasks in {took:.0f} s")
    return cwd, trace


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory):
    return _run(tmp_path_factory, "bare", ["test"])


@pytest.fixture(scope="module")
def podman_run(tmp_path_factory):
    assert subprocess.run(["podman", "image", "exists", IMAGE]).returncode == 0, \
        f"{IMAGE} is missing: `scripts/containers.sh cpu-if-stale` builds it"
    return _run(tmp_path_factory, "podman", ["test,podman", "-c", str(CONFIG)])


def test_every_task_ran_in_the_local_image(podman_run):
    cwd, trace = podman_run
    assert trace and all(row["status"] == "COMPLETED" for row in trace), trace
    assert {row["container"] for row in trace} == {IMAGE}, {row["container"] for row in trace}
    listed = yaml.safe_load((cwd / "results/pipeline_info/containers.yml").read_text())
    assert set(listed) == {short(row["process"]) for row in trace}
    assert set(listed.values()) == {IMAGE}, listed
    versions = yaml.safe_load((cwd / "results/pipeline_info/spatialdomains_software_versions.yml").read_text())
    assert versions["SPATIALDOMAINS_TRAIN"]["python"].startswith("3.11"), versions   # the image's Python
    assert (cwd / "results/demo/report.html").exists() and (cwd / "results/multiqc/multiqc_report.html").exists()


def test_container_results_equal_the_bare_run(bare_run, podman_run):
    summary = compare_runs(bare_run[0] / "results", podman_run[0] / "results", ari_min=ARI_MIN,
                           rel_tol=METRIC_TOL, abs_tol=METRIC_TOL)
    assert len(summary) == 2, summary
    print(f"podman vs bare: {summary}")
