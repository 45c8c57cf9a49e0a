import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner

from spatialdomains.cli import main

SUBCOMMANDS = ["validate-samplesheet", "read", "qc", "prepare", "simulate", "evaluate", "train", "cluster",
               "consensus", "domains", "methods"]


def test_version_is_bare():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == "0.1.0"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub):
    res = CliRunner().invoke(main, [sub, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_help_is_fast_and_lazy():
    # --help must not import torch/scanpy (keeps small tasks and --help fast)
    code = ("import sys; from spatialdomains.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch','scanpy','anndata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_bad_input_is_one_line_exit_1(tmp_path):
    a = ad.AnnData(np.ones((5, 3), dtype=np.float32))
    a.obs["slice"] = "s"
    path = tmp_path / "nospatial.h5ad"
    a.write_h5ad(path)
    res = CliRunner().invoke(main, ["prepare", "-i", str(path), "--method", "staig", "-o", str(tmp_path / "o.h5ad")])
    assert res.exit_code == 1
    assert "nospatial.h5ad" in res.output and "obsm['spatial'] is missing" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o.h5ad").exists()


def test_missing_file_is_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["qc", "-i", str(tmp_path / "nope.h5ad"), "-o", "x.h5ad", "--qc-json", "q.json"])
    assert res.exit_code == 2
    assert "does not exist" in res.output
