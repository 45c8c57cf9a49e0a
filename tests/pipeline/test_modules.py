"""Module shape (nf-core): a meta.yml that documents exactly each module's inputs and emits, no meta key but `id`
read inside a local module, no container line in versions.yml (tests/lintlib.py `check_modules`, also in
`make lint`); and `bin/spatialdomains`, the shim Nextflow puts on every task's PATH, runs the package's CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from lintlib import check_modules  # noqa: E402


def test_every_module_is_documented_and_reads_only_meta_id():
    assert check_modules(ROOT) == []


def test_module_check_finds_undocumented_inputs_and_custom_meta_keys(tmp_path):
    shutil.copytree(ROOT / "modules", tmp_path / "modules")
    train = tmp_path / "modules/local/spatialdomains/train/main.nf"
    text = train.read_text()
    train.write_text(text.replace("val(method), val(seed)", "val(method), val(seed), val(extra)")
                     .replace("--seed ${seed}", "--seed ${meta.seed}"))
    meta = tmp_path / "modules/local/spatialdomains/cluster/meta.yml"
    meta.write_text(meta.read_text().replace("  domains:\n", "  calls:\n"))
    (tmp_path / "modules/local/spatialdomains/qc/meta.yml").unlink()
    problems = "\n".join(check_modules(tmp_path))
    assert "train/meta.yml: input" in problems and "'extra'" in problems
    assert "train: reads meta.seed" in problems
    assert "cluster/meta.yml: output" in problems
    assert "qc: meta.yml is missing" in problems


def test_bin_shim_runs_the_package_cli():
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    shim = subprocess.run([str(ROOT / "bin/spatialdomains"), "--version"], capture_output=True, text=True, env=env)
    module = subprocess.run([sys.executable, "-m", "spatialdomains", "--version"], capture_output=True, text=True)
    from spatialdomains._utils import package_version

    assert shim.returncode == 0 and module.returncode == 0, shim.stderr + module.stderr
    assert shim.stdout.strip() == module.stdout.strip() == package_version()
    bad = subprocess.run([str(ROOT / "bin/spatialdomains"), "train", "--method", "nope"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2   # click's usage error, passed through by exec
