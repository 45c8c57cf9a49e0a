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


def test_train_accepts_renamed_param_keys_with_a_deprecation_message(tmp_path, caplog):
    """`-p` keys of 0.1 (and the pipeline's --staig_params) keep working for one release."""
    from spatialdomains import synthetic
    from spatialdomains.models.staig import STAIG_PREP
    from spatialdomains.pp import prepare_group

    a = prepare_group([synthetic.make_slice(120, 3, 60, random_state=0)], STAIG_PREP.replace(n_top_genes=30),
                      platform="visium")
    src, out = tmp_path / "prepared.h5ad", tmp_path / "trained.h5ad"
    a.write_h5ad(src)
    with caplog.at_level("WARNING", logger="spatialdomains"):
        res = CliRunner().invoke(main, ["train", "-i", str(src), "-o", str(out), "--method", "staig", "--epochs", "2",
                                        "--device", "cpu", "--no-progress", "-p", "edge_drop=fixed", "-p", "p_e1=0.3",
                                        "-p", "hidden=16"])
    assert res.exit_code == 0, res.output
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "'p_e1' is deprecated" in messages and "use 'edge_drop'" in messages
    assert "'hidden' is deprecated" in messages and "use 'out_channels'" in messages
    assert "'edge_drop' is deprecated" in messages and "use 'edge_drop_source'" in messages
    trained = ad.read_h5ad(out)
    cfg = trained.uns["spatialdomains"]["train_staig"]["config"]
    assert cfg["edge_drop_source"] == "fixed" and list(cfg["edge_drop"]) == [0.3, 0.3]
    assert trained.obsm["X_staig"].shape == (a.n_obs, 64) and int(cfg["out_channels"]) == 16
    bad = CliRunner().invoke(main, ["train", "-i", str(src), "-o", str(out), "--method", "staig", "-p", "nope=1"])
    assert bad.exit_code == 1 and "unknown StaigConfig parameter(s) ['nope']" in bad.output
