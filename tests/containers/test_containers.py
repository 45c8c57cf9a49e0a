"""`make test-containers`: the test profile with every task in the locally built image (podman), against the
same profile with the tools of the venv, and the image written as the OCI archive a site turns into a SIF file.

- every task ran in `localhost/spatialdomains:<version>` (the trace's `container` column);
- the run published the same files as the bare run, and its domains (same seeds) and metrics equal the bare
  run's within tolerance;
- `scripts/containers.sh oci-archive` writes a valid OCI image layout archive of that image (what
  `singularity build x.sif oci-archive://...` reads): oci-layout, index.json, the manifest, config and layers,
  each blob matching its digest and size.

Opt-in (not part of `make test`): SPATIALDOMAINS_TEST_CONTAINERS=1, which `make test-containers` sets after
`scripts/containers.sh image-if-stale` has made sure the image holds the current src, lock and Dockerfile.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from nfutil import HAS_NEXTFLOW, ROOT, compare_runs, explain, nextflow, read_trace

pytestmark = [
    pytest.mark.skipif(os.environ.get("SPATIALDOMAINS_TEST_CONTAINERS") != "1",
                       reason="opt-in: `make test-containers` (SPATIALDOMAINS_TEST_CONTAINERS=1)"),
    pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`"),
]

VERSION = "0.1.0"
IMAGE = f"localhost/spatialdomains:{VERSION}"
CONFIG = ROOT / "tests/containers/podman_local.config"
# Same Python stack in the image as in the venv (requirements/lock.txt, torch from PyPI): equal results, up to
# float noise from a different CPU feature path
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


def _image_inputs() -> str:
    out = subprocess.run(["podman", "image", "inspect", IMAGE], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["Labels"]["org.spatialdomains.inputs"]


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory):
    return _run(tmp_path_factory, "bare", ["test"])


@pytest.fixture(scope="module")
def podman_run(tmp_path_factory):
    assert subprocess.run(["podman", "image", "exists", IMAGE]).returncode == 0, \
        f"{IMAGE} is missing: `scripts/containers.sh image-if-stale` builds it"
    return _run(tmp_path_factory, "podman", ["test,podman", "-c", str(CONFIG)])


def _published(results: Path) -> set[str]:
    """Files of a results folder, without pipeline_info (its names carry the run's trace suffix)."""
    return {str(p.relative_to(results)) for p in results.rglob("*")
            if p.is_file() and p.relative_to(results).parts[0] != "pipeline_info"}


def test_every_task_ran_in_the_local_image(podman_run):
    cwd, trace = podman_run
    assert trace and all(row["status"] == "COMPLETED" for row in trace), trace
    assert {row["container"] for row in trace} == {IMAGE}, {row["container"] for row in trace}
    versions = yaml.safe_load((cwd / "results/pipeline_info/spatialdomains_software_versions.yml").read_text())
    assert versions["SPATIALDOMAINS_TRAIN"]["python"].startswith("3.11"), versions   # the image's Python
    assert (cwd / "results/demo/report.html").exists() and (cwd / "results/multiqc/multiqc_report.html").exists()


def test_container_results_equal_the_bare_run(bare_run, podman_run):
    bare, podman = bare_run[0] / "results", podman_run[0] / "results"
    assert _published(podman) == _published(bare), sorted(_published(podman) ^ _published(bare))
    summary = compare_runs(bare, podman, ari_min=ARI_MIN, rel_tol=METRIC_TOL, abs_tol=METRIC_TOL)
    assert summary and summary.keys() == {p.name.removesuffix(".domains.csv")
                                          for p in bare.glob("*/*/seed*/*.domains.csv")}, summary
    print(f"podman vs bare: {summary}")


def _sha256(fh) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 24):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def test_oci_archive_for_singularity(tmp_path):
    """The archive `singularity build x.sif oci-archive://FILE` converts (docs/usage.md) is a complete OCI image
    layout of the image: every blob present, matching its digest and size."""
    archive = tmp_path / "spatialdomains.oci.tar"
    start = time.monotonic()
    res = subprocess.run(["bash", str(ROOT / "scripts/containers.sh"), "oci-archive", str(archive)],
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stdout.strip(), f"({time.monotonic() - start:.0f} s)")
    try:
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

            def blob(digest: str, size: int) -> bytes | None:
                name = "blobs/" + digest.replace(":", "/")
                assert name in members, f"{name} missing from the archive"
                assert members[name].size == size, (name, members[name].size, size)
                fh = tar.extractfile(members[name])
                assert _sha256(fh) == digest, f"{name} does not match its digest"
                return None if size > 1 << 20 else tar.extractfile(members[name]).read()

            layout = json.loads(tar.extractfile(members["oci-layout"]).read())
            assert layout["imageLayoutVersion"] == "1.0.0", layout
            index = json.loads(tar.extractfile(members["index.json"]).read())
            assert index["schemaVersion"] == 2 and len(index["manifests"]) == 1, index
            entry = index["manifests"][0]
            assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json", entry
            manifest = json.loads(blob(entry["digest"], entry["size"]))
            assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json", manifest
            config = json.loads(blob(manifest["config"]["digest"], manifest["config"]["size"]))
            assert manifest["layers"] and len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]), manifest
            for layer in manifest["layers"]:
                assert layer["mediaType"].startswith("application/vnd.oci.image.layer.v1.tar"), layer
                blob(layer["digest"], layer["size"])
    finally:
        archive.unlink(missing_ok=True)
    # the image the pipeline runs: its inputs label, the venv on PATH, the CLI as default command
    assert config["config"]["Labels"]["org.spatialdomains.inputs"] == _image_inputs(), config["config"]["Labels"]
    assert any(e.startswith("PATH=/opt/venv/bin:") for e in config["config"]["Env"]), config["config"]["Env"]
    assert config["config"]["Cmd"] == ["spatialdomains", "--help"], config["config"]
