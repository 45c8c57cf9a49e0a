"""Seed consensus as a result of its own: labels written and scored like a seed (library, CLI, tables)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spatialdomains import metrics as M
from spatialdomains._utils import InputError, write_csv_atomic, write_h5ad_atomic, write_json_atomic
from spatialdomains.cli import main
from spatialdomains.consensus import CONSENSUS_SEED, consensus_labels, seed_consensus

N_DOMAINS = 4


def _seed_files(out: Path, seeds=(0, 1, 2), n=400, noise=0.2, method="staig") -> tuple[list[Path], np.ndarray]:
    """Clustered files of one method: truth relabelled per seed, each seed with its own 20 % of spots moved."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(N_DOMAINS), n // N_DOMAINS)
    xy = np.column_stack([np.arange(n) % 20, np.arange(n) // 20]).astype(float)
    paths = []
    for seed in seeds:
        r = np.random.default_rng(100 + seed)
        labels = r.permutation(N_DOMAINS)[truth]
        moved = r.random(n) < noise
        labels[moved] = r.integers(0, N_DOMAINS, moved.sum())
        a = ad.AnnData(obs=pd.DataFrame(index=[f"spot{i}" for i in range(n)]))
        a.obs["slice"] = pd.Categorical(["s1"] * n)
        t = np.array([f"L{v}" for v in truth], dtype=object)
        t[:10] = None  # unlabelled spots are left out of the scores
        a.obs["truth"] = pd.Categorical(t)
        a.obs[f"domain_{method}"] = pd.Categorical(labels.astype(str))
        a.obsm["spatial"] = xy + rng.normal(0, 0.01, xy.shape)
        a.uns["spatialdomains"] = {f"train_{method}": {"seed": seed}, f"cluster_{method}": {"seed": seed}}
        paths.append(write_h5ad_atomic(a, out / f"g1_{method}_s{seed}.h5ad"))
    return paths, truth


def test_consensus_beats_each_noisy_seed_and_is_scored_like_one(tmp_path):
    paths, truth = _seed_files(tmp_path)
    table, met = seed_consensus(paths, "staig", group="g1")
    assert list(table.columns) == ["slice", "domain"] and table.index.name == "barcode" and len(table) == 400
    assert met["seed"] == CONSENSUS_SEED and met["seeds"] == [0, 1, 2] and met["group"] == "g1"
    assert met["n_labelled"] == 390 and met["n_unlabelled"] == 10
    lab = np.arange(400) >= 10
    # the ARI is that of the written labels on the labelled spots, as `evaluate` scores a seed
    assert met["ari"] == pytest.approx(M.ari(truth[lab], table["domain"].to_numpy()[lab]))
    seeds_ari = []
    for p in paths:
        a = ad.read_h5ad(p)
        seeds_ari.append(M.ari(truth[lab], a.obs["domain_staig"].to_numpy()[lab]))
    # three independent 20 % errors: a majority of seeds is right far more often than one seed
    assert met["ari"] > max(seeds_ari) + 0.1
    assert {"nmi", "ca", "f1_macro", "seed_ari_mean", "reference_seed", "n_domains"} <= set(met)


def test_consensus_cli_writes_domains_and_metrics(tmp_path):
    paths, _ = _seed_files(tmp_path)
    args = ["consensus", "--method", "staig", "--group", "g1", "--domains-csv", str(tmp_path / "c.domains.csv"),
            "--metrics", str(tmp_path / "c.metrics.json")]
    res = CliRunner().invoke(main, args + [x for p in paths for x in ("-i", str(p))])
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(tmp_path / "c.domains.csv", dtype=str)
    assert list(csv.columns) == ["barcode", "slice", "domain"] and len(csv) == 400
    met = json.loads((tmp_path / "c.metrics.json").read_text())
    assert met["method"] == "staig" and met["seed"] == "consensus" and 0 < met["ari"] <= 1

    one = CliRunner().invoke(main, args + ["-i", str(paths[0])])
    assert one.exit_code != 0 and "at least two seeds" in one.output


def test_consensus_row_in_group_table_and_multiqc(tmp_path):
    """The consensus joins the group metrics table and MultiQC's per-run table, not the mean over seeds."""
    from spatialdomains.report._data import collect_metrics
    from spatialdomains.report._multiqc import metrics_table, summary_table

    paths, truth = _seed_files(tmp_path)
    metrics, domains = [], []
    for seed, p in enumerate(paths):
        a = ad.read_h5ad(p)
        lab = a.obs["truth"].notna().to_numpy()
        met = {"method": "staig", "seed": seed, "group": "g1",
               "ari": M.ari(a.obs["truth"][lab], a.obs["domain_staig"][lab])}
        metrics.append(write_json_atomic(tmp_path / f"g1_staig_s{seed}.metrics.json", met))
        tab = pd.DataFrame({"slice": "s1", "domain": a.obs["domain_staig"].astype(str)}, index=a.obs_names)
        domains.append(write_csv_atomic(tab, tmp_path / f"g1_staig_s{seed}.domains.csv", index_label="barcode"))
    table, met = seed_consensus(paths, "staig", group="g1")
    metrics.append(write_json_atomic(tmp_path / "g1_staig_consensus.metrics.json", met))
    domains.append(write_csv_atomic(table, tmp_path / "g1_staig_consensus.domains.csv"))

    group = collect_metrics(metrics, domains)
    assert group["seed"].astype(str).tolist() == ["0", "1", "2", "consensus"]
    cons = group.set_index("id").loc["g1_staig_consensus"]
    assert cons["ari"] == pytest.approx(met["ari"])
    # a seed's stability is measured against the other seeds only, not against the consensus
    s0 = pd.read_csv(domains[0], dtype=str).set_index("barcode")["domain"]
    peers = [pd.read_csv(d, dtype=str).set_index("barcode")["domain"] for d in domains[1:3]]
    expected = np.mean([M.ari(*s0.align(p, join="inner")) for p in peers])
    assert group.set_index("id").loc["g1_staig_s0", "seed_ari_mean"] == pytest.approx(expected)

    runs = metrics_table(metrics)
    assert runs["Sample"].tolist()[-1] == "g1_staig_consensus"
    summary = summary_table(runs)
    assert summary.loc[0, "n_seeds"] == 3
    assert summary.loc[0, "ari_mean"] == pytest.approx(np.mean(runs["ari"].iloc[:3]))


def test_consensus_labels_rejects_unequal_lengths():
    with pytest.raises(InputError, match="length"):
        consensus_labels([np.zeros(5), np.zeros(6)])
    out = consensus_labels([np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]), np.array([0, 0, 1, 0])])
    assert M.ari(out["labels"], [0, 0, 1, 1]) == 1.0
