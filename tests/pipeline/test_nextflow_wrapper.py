"""The offline Nextflow runtime assembled by `make setup` runs a DSL2 pipeline, stubs and resumes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "tools/nextflow/nextflow"
LIB = ROOT / "tools/nextflow/lib"

HELLO = """
process SAY {
    tag "${x}"
    input:  val x
    output: path "${x}.txt"
    script:
    \"\"\"
    echo hello ${x} > ${x}.txt
    \"\"\"
    stub:
    \"\"\"
    touch ${x}.txt
    \"\"\"
}
process JOIN {
    input:  path parts
    output: path "all.txt"
    script:
    \"\"\"
    cat ${parts} | sort > all.txt
    \"\"\"
    stub:
    \"\"\"
    touch all.txt
    \"\"\"
}
workflow {
    JOIN(SAY(channel.of('a', 'b', 'c')).collect())
    JOIN.out.view { f -> "RESULT ${f}" }
}
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NXF_OFFLINE": "true", "NXF_ANSI_LOG": "false", "NXF_HOME": str(cwd / ".nxf_home")}
    return subprocess.run([str(WRAPPER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not LIB.exists(), reason="run `make setup` first (CI always does)")
def test_wrapper_version_and_no_groovy2():
    jars = sorted(p.name for p in LIB.glob("*.jar"))
    assert any(j.startswith("nextflow-24.10") for j in jars)
    assert not [j for j in jars if j.startswith("groovy-all-2") or "codehaus" in j]
    res = subprocess.run([str(WRAPPER), "-version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "version 24.10." in res.stdout


@pytest.mark.skipif(not LIB.exists(), reason="run `make setup` first (CI always does)")
def test_hello_run_stub_and_resume_offline(tmp_path):
    (tmp_path / "main.nf").write_text(HELLO)
    first = _run(["run", "main.nf", "-w", "work"], tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "work").exists()
    assert "RESULT" in first.stdout
    out_file = next((tmp_path / "work").rglob("all.txt"))
    assert out_file.read_text().split() == ["hello", "a", "hello", "b", "hello", "c"]

    again = _run(["run", "main.nf", "-w", "work", "-resume"], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("Cached process > SAY") == 3
    assert again.stdout.count("Cached process > JOIN") == 1
    assert "Submitted process" not in again.stdout  # nothing re-ran

    stub = _run(["run", "main.nf", "-w", "work_stub", "-stub"], tmp_path)
    assert stub.returncode == 0, stub.stdout + stub.stderr
    stub_out = next((tmp_path / "work_stub").rglob("all.txt"))
    assert stub_out.read_text() == ""
