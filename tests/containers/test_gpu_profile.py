"""`-profile <engine>,gpu`: every task runs in the one image, and exactly the GPU tasks (label `process_gpu`) get
the engine's GPU option: `--gpus all` (Docker), the CDI device (Podman), `--nv` (Singularity/Apptainer).

Nextflow runs a stub of the test profile with a stand-in for the engine (`fake_engine.sh`) that records how it
is called and runs the task on the host: no engine, image or GPU is needed, so this runs with `make test`.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from nfutil import HAS_NEXTFLOW, ROOT, explain, nextflow_bg

pytestmark = pytest.mark.skipif(not HAS_NEXTFLOW, reason="Nextflow runtime missing: run `make setup`")

REFERENCE = "ghcr.io/spatialdomains/spatialdomains:0.1.0"
SIF = "ghcr.io-spatialdomains-spatialdomains-0.1.0.img"   # the registry image converted into the cache folder
ENGINES = {  # engine: (its GPU option, the image it is given)
    "docker": (["--gpus", "all"], REFERENCE),
    "podman": (["--device", "nvidia.com/gpu=all"], REFERENCE),
    "singularity": (["--nv"], SIF),
    "apptainer": (["--nv"], SIF),
}


def _gpu_processes() -> set[str]:
    found = set()
    for module in (ROOT / "modules").rglob("main.nf"):
        text = module.read_text()
        if re.search(r"^\s*label\s+'process_gpu'", text, re.M):
            found.add(re.search(r"^process\s+(\w+)", text, re.M).group(1))
    return found


def _has(args: list[str], option: list[str]) -> bool:
    return any(args[i:i + len(option)] == option for i in range(len(args)))


@pytest.fixture(scope="module")
def stub_runs(tmp_path_factory):
    """One stub run per engine, all at once (each is mostly Nextflow waiting): engine -> (folder, fake's bin)."""
    runs = {}
    for engine in ENGINES:
        cwd = tmp_path_factory.mktemp(engine)
        bin_dir = cwd / "bin"
        bin_dir.mkdir()
        (bin_dir / engine).symlink_to(ROOT / "tests/containers/fake_engine.sh")
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               f"NXF_{engine.upper()}_CACHEDIR": str(cwd / "cache")}
        proc = nextflow_bg(["run", str(ROOT), "-profile", f"test,{engine},gpu", "-stub", "--methods", "staig",
                            "--skip_report", "--skip_multiqc", "--outdir", "results", "-w", "work"], cwd, env=env)
        runs[engine] = (proc, cwd, bin_dir)
    for engine, (proc, cwd, _) in runs.items():
        proc.wait(timeout=900)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_gpu_tasks_get_the_engines_gpu_option(stub_runs, engine):
    option, image = ENGINES[engine]
    proc, cwd, bin_dir = stub_runs[engine]
    assert proc.returncode == 0, explain(cwd=cwd)

    calls = [shlex.split(line)[1:] for line in (bin_dir / "calls.log").read_text().splitlines()]
    tasks = {}  # process name -> launch arguments
    for args in calls:
        if args[0] not in ("run", "exec"):
            continue
        run_file = Path(re.search(r"(\S+/\.command\.run)", " ".join(args)).group(1))
        name = re.search(r"^### name: '(?:\w+:)*(\w+)", run_file.read_text(), re.M).group(1)
        tasks.setdefault(name, []).append(args)
    gpu = _gpu_processes()
    assert gpu and gpu <= set(tasks) and set(tasks) - gpu, (gpu, sorted(tasks))
    for name, launches in tasks.items():
        for args in launches:
            launched = args[args.index("/bin/bash") - 1]   # the image comes just before the task's command
            assert launched == image or launched.endswith("/" + image), (name, launched)
            assert _has(args, option) == (name in gpu), (name, args)
