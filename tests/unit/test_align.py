"""Spot matching, LTARI and diffusion pseudotime (spatialdomains.align)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spatialdomains import align
from spatialdomains._utils import InputError


def _clustered_embedding(n=400, d=16, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    labels = rng.integers(0, k, n)
    return np.abs(centres[labels] + rng.normal(size=(n, d))), labels


def test_match_spots_recovers_noisy_copies():
    emb, _ = _clustered_embedding()
    rng = np.random.default_rng(1)
    noisy = emb + 0.05 * rng.normal(size=emb.shape)
    perm = rng.permutation(emb.shape[0])
    m = align.match_spots(noisy[perm], emb, block=37)
    assert list(m.columns) == ["query", "reference", "score", "rank"]
    assert len(m) == emb.shape[0] and (m["rank"] == 0).all()
    assert (m["reference"].to_numpy() == perm).mean() > 0.9
    assert m["score"].between(-1, 1 + 1e-6).all()


def test_match_spots_blocked_equals_unblocked_and_candidates():
    emb, _ = _clustered_embedding(n=120, seed=2)
    q = emb[:50] + 0.1
    a = align.match_spots(q, emb, block=7)
    b = align.match_spots(q, emb, block=None)
    pd.testing.assert_frame_equal(a, b)
    c = align.match_spots(q, emb, top_n=5, keep_candidates=True)
    assert len(c) == 250 and c.groupby("query")["best"].sum().eq(1).all()
    assert (c.groupby("query")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


def test_match_spots_spatial_smoothing_picks_closest_candidate():
    # two reference spots with identical embeddings; the query lies next to the second in space
    emb_ref = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    emb_q = np.array([[1.0, 0.01]])
    coords_ref = np.array([[0.0, 0.0], [10.0, 10.0], [10.0, 11.0]])
    m = align.match_spots(emb_q, emb_ref, np.array([[9.0, 9.0]]), coords_ref, top_n=2, smooth_range=2)
    assert int(m["reference"].iloc[0]) == 1
    # without coordinates: the top cosine match (either of the identical pair)
    assert int(align.match_spots(emb_q, emb_ref, top_n=2)["reference"].iloc[0]) in (0, 1)


def test_match_spots_rejects_bad_shapes():
    with pytest.raises(InputError):
        align.match_spots(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(InputError):
        align.match_spots(np.zeros((0, 4)), np.zeros((3, 4)))


def _two_slice_adata(seed=0):
    emb, labels = _clustered_embedding(n=300, seed=seed)
    rng = np.random.default_rng(seed + 10)
    emb_b = emb[:250] + 0.05 * rng.normal(size=(250, emb.shape[1]))
    obs = pd.DataFrame({
        "slice": ["a"] * 300 + ["b"] * 250,
        "truth": pd.Categorical([f"D{v}" for v in np.concatenate([labels, labels[:250]])]),
    }, index=[f"s{i}" for i in range(550)])
    obs.loc["s0", "truth"] = np.nan
    adata = ad.AnnData(obs=obs, obsm={"X_spotscape": np.vstack([emb, emb_b]).astype(np.float32),
                                      "spatial": rng.random((550, 2))})
    return adata


def test_align_slices_ltari_and_reorder():
    adata = _two_slice_adata()
    matches, ltari = align.align_slices(adata, "a", "b")
    # reorder: the larger slice (a, 300 spots) becomes the reference
    assert (matches["query_slice"] == "b").all() and len(matches) == 250
    assert matches["query"].str.startswith("s").all()
    assert ltari > 0.9
    matches2, _ = align.align_slices(adata, "a", "b", reorder=False, smooth=True)
    assert (matches2["query_slice"] == "a").all() and len(matches2) == 300
    del adata.obs["truth"]
    _, none = align.align_slices(adata, "a", "b")
    assert none is None


def test_align_slices_errors():
    adata = _two_slice_adata()
    with pytest.raises(InputError, match="not found"):
        align.align_slices(adata, "a", "zzz")
    with pytest.raises(InputError, match="X_other"):
        align.align_slices(adata, "a", "b", use_rep="X_other")


def _gradient_adata(n=300, seed=0):
    """Spots along a 1-D trajectory (layers WM..L1) embedded in 8-D."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.random(n))
    order = align.DLPFC_LAYER_ORDER
    truth = np.array(order)[np.minimum((t * len(order)).astype(int), len(order) - 1)]
    emb = 3 * np.outer(t, rng.normal(size=8)) + 0.1 * rng.normal(size=(n, 8))
    obs = pd.DataFrame({"truth": truth}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(obs=obs, obsm={"X_spotscape": emb.astype(np.float32)}), t


def test_pseudotime_follows_the_trajectory():
    adata, t = _gradient_adata()
    align.pseudotime(adata, root_domain="WM", domain_key="truth")
    pt = adata.obs["pseudotime_spotscape"].to_numpy()
    assert np.isfinite(pt).all() and pt.min() == 0.0
    assert align.layer_order_spearman(pt, adata.obs["truth"]) > 0.9
    assert "connectivities" not in adata.obsp  # the neighbour graph stays private
    assert adata.uns["spatialdomains"]["pseudotime_spotscape"]["root_domain"] == "WM"
    out = align.pseudotime(adata, root_spot=0, key_added="pt0", copy=True)
    assert "pt0" in out.obs and "pt0" not in adata.obs
    align.pseudotime(adata, root_spot="c5", key_added="pt5")
    assert adata.obs["pt5"].iloc[5] == 0.0


def test_pseudotime_neighbours_default_and_cap():
    """50 neighbours by default (15 fragmented real embeddings), capped below the number of spots."""
    adata, _ = _gradient_adata(n=300)
    align.pseudotime(adata, root_domain="WM", domain_key="truth")
    assert adata.uns["spatialdomains"]["pseudotime_spotscape"]["n_neighbors"] == 50
    small, _ = _gradient_adata(n=30)
    align.pseudotime(small, root_domain="WM", domain_key="truth")
    assert small.uns["spatialdomains"]["pseudotime_spotscape"]["n_neighbors"] == 29
    assert np.isfinite(small.obs["pseudotime_spotscape"]).all()


def test_pseudotime_needs_a_root():
    adata, _ = _gradient_adata(n=50)
    with pytest.raises(InputError, match="root"):
        align.pseudotime(adata)
    with pytest.raises(InputError, match="not found"):
        align.pseudotime(adata, root_domain="L9", domain_key="truth")


def test_layer_order_spearman_hand_case():
    truth = ["WM", "L6", "L5", np.nan, "L1", "other"]
    assert align.layer_order_spearman([0, 1, 2, 5, 3, 9], truth) == pytest.approx(1.0)
    assert align.layer_order_spearman([3, 2, 1, 0, 0, 0], truth) == pytest.approx(-1.0)
    with pytest.raises(InputError):
        align.layer_order_spearman([0, 1], ["WM", "L1"])


def test_align_and_pseudotime_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from spatialdomains.cli import main

    src = tmp_path / "group.h5ad"
    _two_slice_adata().write_h5ad(src)
    runner = CliRunner()
    res = runner.invoke(main, ["align", "-i", str(src), "--query", "a", "--reference", "b",
                               "--pairs-csv", str(tmp_path / "pairs.csv"), "--metrics", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert len(pairs) == 250 and {"query", "reference", "score", "query_truth"} <= set(pairs.columns)
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["n_pairs"] == 250 and summary["ltari"] > 0.9

    res = runner.invoke(main, ["align", "-i", str(src), "--query", "a", "--reference", "nope",
                               "--pairs-csv", str(tmp_path / "x.csv")])
    assert res.exit_code == 1 and "'nope' not found" in res.output and not (tmp_path / "x.csv").exists()

    grad, _ = _gradient_adata()
    grad.obs["domain_spotscape"] = grad.obs["truth"]
    grad.write_h5ad(tmp_path / "grad.h5ad")
    res = runner.invoke(main, ["pseudotime", "-i", str(tmp_path / "grad.h5ad"), "-o", str(tmp_path / "pt.h5ad"),
                               "--root-domain", "WM"])
    assert res.exit_code == 0, res.output
    out = ad.read_h5ad(tmp_path / "pt.h5ad")
    assert align.layer_order_spearman(out.obs["pseudotime_spotscape"], out.obs["truth"]) > 0.9
    res = runner.invoke(main, ["pseudotime", "-i", str(tmp_path / "grad.h5ad"), "-o", str(tmp_path / "p2.h5ad")])
    assert res.exit_code != 0 and "exactly one" in res.output
