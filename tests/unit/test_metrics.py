"""Tests of spatialdomains.metrics: hand-computed label scores, mixed vs separated batches, evaluate()."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from spatialdomains import metrics
from spatialdomains._utils import InputError


def _blobs(n_per: int, centres: np.ndarray, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    X = np.vstack([c + scale * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    return X, np.repeat(np.arange(len(centres)), n_per)


@pytest.fixture(scope="module")
def mixed_and_separated():
    """Two cell types x three batches: batches overlap ('mixed') or sit 30 units apart ('separated')."""
    rng = np.random.default_rng(1)
    n = 900
    labels = np.repeat(["A", "B"], n // 2)
    batches = np.tile(np.array(["s1", "s2", "s3"]), n // 3)
    base = rng.normal(size=(n, 8))
    base[labels == "B", 0] += 12.0
    separated = base.copy()
    separated[:, 1] += 30.0 * pd.factorize(batches)[0]
    return base, separated, batches, labels


# --- label agreement -----------------------------------------------------------------------------


def test_ari_nmi_identical_and_renamed():
    t = np.array([0, 0, 1, 1, 2, 2, 2])
    renamed = np.array(["z", "z", "x", "x", "y", "y", "y"])
    assert metrics.ari(t, t) == pytest.approx(1.0)
    assert metrics.ari(t, renamed) == pytest.approx(1.0)
    assert metrics.nmi(t, renamed) == pytest.approx(1.0)


def test_ca_permuted_labelling_is_one():
    t = np.array(["L1", "L1", "L2", "L2", "L3", "L3", "WM"])
    pred = np.array([3, 3, 0, 0, 1, 1, 2])
    assert metrics.clustering_accuracy(t, pred) == pytest.approx(1.0)
    f1 = metrics.f1_scores(t, pred)
    assert f1["f1_macro"] == pytest.approx(1.0)
    assert f1["f1_micro"] == pytest.approx(1.0)


def test_ca_and_f1_known_confusion_matrix():
    # contingency (pred x truth): a=(3,0,1), b=(1,3,0), c=(0,0,2) -> a->0, b->1, c->2, 8/10 matched
    t = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    p = np.array(list("aaabbbbcca"))
    np.testing.assert_array_equal(metrics.match_labels(t, p), [0, 0, 0, 1, 1, 1, 1, 2, 2, 0])
    assert metrics.clustering_accuracy(t, p) == pytest.approx(0.8)
    f1 = metrics.f1_scores(t, p)
    # per class F1: 0.75, 6/7, 0.8
    assert f1["f1_macro"] == pytest.approx((0.75 + 6 / 7 + 0.8) / 3)
    assert f1["f1_micro"] == pytest.approx(0.8)


def test_ca_more_clusters_than_classes():
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 2, 2])
    mapped = metrics.match_labels(t, p)
    assert (mapped >= 2).sum() == 1  # one cluster stays unmatched
    assert metrics.clustering_accuracy(t, p) == pytest.approx(0.75)
    assert metrics.f1_scores(t, p)["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_missing_labels_raise():
    with pytest.raises(InputError, match="missing"):
        metrics.ari(np.array([0, 1, np.nan]), np.array([0, 1, 1]))
    with pytest.raises(InputError, match="length"):
        metrics.nmi(np.array([0, 1, 1]), np.array([0, 1]))


# --- cluster separation --------------------------------------------------------------------------


def test_silhouette_and_db_separated_vs_overlapping():
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X, y = _blobs(100, centres)
    X_close, _ = _blobs(100, centres / 10)
    assert metrics.silhouette(X, y) > 0.8
    assert metrics.silhouette(X_close, y) < 0.3
    assert metrics.davies_bouldin(X, y) < 0.3 < metrics.davies_bouldin(X_close, y)
    assert np.isnan(metrics.silhouette(X, np.zeros(len(y))))


def test_silhouette_subsample_reproducible():
    X, y = _blobs(400, np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]))
    idx = metrics.subsample_index(len(y), 300, seed=5)
    assert len(idx) == 300 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, metrics.subsample_index(len(y), 300, seed=5))
    a = metrics.silhouette(X, y, max_n=300, seed=5)
    b = metrics.silhouette(X, y, max_n=300, seed=5)
    c = metrics.silhouette(X, y, max_n=300, seed=6)
    full = metrics.silhouette(X, y, max_n=None)
    assert a == b
    assert a != c
    assert abs(a - full) < 0.05
    np.testing.assert_array_equal(metrics.subsample_index(50, 300), np.arange(50))


# --- batch mixing --------------------------------------------------------------------------------


def test_lisi_matches_harmonypy():
    harmonypy = pytest.importorskip("harmonypy")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    b = rng.integers(0, 3, size=600)
    X[b == 0, 0] += 1.5
    ref = harmonypy.compute_lisi(X, pd.DataFrame({"b": b.astype(str)}), ["b"], perplexity=30)[:, 0]
    np.testing.assert_allclose(metrics.lisi(X, b), ref, rtol=1e-6)


def test_ilisi_mixed_vs_separated(mixed_and_separated):
    mixed, separated, batches, _ = mixed_and_separated
    assert metrics.ilisi(mixed, batches) > 2.5  # 3 batches; sampling noise keeps it below 3
    assert metrics.ilisi(separated, batches) < 1.05


def test_batch_kl_mixed_vs_separated(mixed_and_separated):
    mixed, separated, batches, _ = mixed_and_separated
    low = metrics.batch_kl(mixed, batches, n_replicates=50)
    high = metrics.batch_kl(separated, batches, n_replicates=50)
    assert low < 0.2
    assert high == pytest.approx(np.log2(3), abs=1e-9)  # neighbourhoods of one batch, q = 1/3
    assert metrics.batch_kl(mixed, batches, n_replicates=50, seed=3) == metrics.batch_kl(
        mixed, batches, n_replicates=50, seed=3
    )
    assert np.isnan(metrics.batch_kl(mixed, np.zeros(len(batches))))


def test_kbet_mixed_vs_separated(mixed_and_separated):
    mixed, separated, batches, labels = mixed_and_separated
    assert metrics.kbet(mixed, batches, labels) > 0.8
    assert metrics.kbet(separated, batches, labels) < 0.05
    # a label with one batch only is skipped
    one_batch = np.where(batches == "s1", "C", labels)
    assert np.isfinite(metrics.kbet(mixed, batches, one_batch))


def test_silhouette_batch_mixed_vs_separated(mixed_and_separated):
    mixed, separated, batches, labels = mixed_and_separated
    assert metrics.silhouette_batch(mixed, batches, labels) > 0.9
    assert metrics.silhouette_batch(separated, batches, labels) < 0.2


def test_graph_connectivity_connected_vs_split():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    labels = np.repeat(["A", "B"], 150)
    X[labels == "B", 0] += 20
    assert metrics.graph_connectivity(X, labels) == pytest.approx(1.0)
    # label A split into two far-apart halves of 75 spots each
    split = X.copy()
    split[:75, 1] += 50
    assert metrics.graph_connectivity(split, labels) == pytest.approx((0.5 + 1.0) / 2)


def test_pcr_comparison_rewards_removing_batch_shift():
    rng = np.random.default_rng(3)
    n, g = 600, 60
    batches = np.repeat(["s1", "s2"], n // 2)
    signal = rng.normal(size=(n, g))
    shift = np.zeros((n, g))
    shift[batches == "s2"] = rng.normal(scale=3.0, size=g)
    X = signal + shift
    corrected = X - pd.DataFrame(X).groupby(batches).transform("mean").to_numpy()
    assert metrics.pcr(X, batches) > 0.2
    assert metrics.pcr_comparison(X, corrected[:, :20], batches) > 0.95
    assert metrics.pcr_comparison(X, X, batches) == pytest.approx(0.0, abs=1e-6)
    from scipy import sparse

    assert metrics.pcr(sparse.csr_matrix(X), batches) == pytest.approx(metrics.pcr(X, batches), rel=1e-3)


def test_ltari():
    ref = np.array(["a", "a", "b", "b", "c"])
    query = np.array(["b", "a", "c", np.nan], dtype=object)
    assert metrics.ltari(query[:3], ref, np.array([2, 0, 4])) == pytest.approx(1.0)
    # the unlabelled query spot is excluded
    assert metrics.ltari(query, ref, np.array([3, 1, 4, 0])) == pytest.approx(1.0)
    assert metrics.ltari(query[:3], ref, np.array([0, 2, 2])) < 0.5
    with pytest.raises(InputError, match="matches"):
        metrics.ltari(query[:3], ref, np.array([0, 1, 9]))


# --- evaluate ------------------------------------------------------------------------------------


def _adata(two_slices: bool, truth: bool) -> ad.AnnData:
    rng = np.random.default_rng(4)
    centres = np.array([[0.0] * 6, [8.0] + [0.0] * 5, [0.0, 8.0] + [0.0] * 4])
    emb, y = _blobs(120, centres, seed=4)
    n = len(y)
    adata = ad.AnnData(X=emb @ rng.normal(size=(6, 30)) + rng.normal(size=(n, 30)))
    adata.obsm["X_test"] = emb
    adata.obs["domain_test"] = pd.Categorical(y.astype(str))
    if two_slices:
        adata.obs["slice"] = pd.Categorical(np.tile(["s1", "s2"], n // 2))
    if truth:
        t = pd.Series(np.array(["L1", "L2", "L3"])[y], dtype=object)
        t.iloc[:10] = np.nan
        adata.obs["truth"] = pd.Categorical(t.to_numpy())
    return adata


def test_evaluate_full():
    res = metrics.evaluate(_adata(True, True), embedding_key="X_test", domain_key="domain_test")
    for key in [
        "ari", "nmi", "ca", "f1_macro", "f1_micro", "silhouette", "davies_bouldin", "batch_kl", "ilisi",
        "kbet", "graph_connectivity", "silhouette_batch", "pcr_comparison",
    ]:  # fmt: skip
        assert np.isfinite(res[key]), key
    assert res["n_unlabelled"] == 10 and res["n_labelled"] == 350
    assert res["ari"] == pytest.approx(1.0)
    assert res["ca"] == pytest.approx(1.0)
    assert set(res["per_slice"]) == {"s1", "s2"}
    assert res["per_slice"]["s1"]["ari"] == pytest.approx(1.0)
    assert res["ilisi"] > 1.8  # slices alternate, so they are mixed


def test_evaluate_single_slice_without_truth():
    res = metrics.evaluate(_adata(False, False), embedding_key="X_test", domain_key="domain_test")
    assert set(res) == {"n_spots", "n_domains", "silhouette", "davies_bouldin"}
    res = metrics.evaluate(
        _adata(True, True), embedding_key="X_test", domain_key="domain_test", truth_key=None
    )
    assert "ari" not in res and "kbet" not in res and "ilisi" in res
    with pytest.raises(InputError, match="X_missing"):
        metrics.evaluate(_adata(False, False), embedding_key="X_missing", domain_key="domain_test")


def test_cluster_mapping_leftovers_and_overlap():
    ref = np.array([0, 0, 1, 1, 2, 2])
    other = np.array([2, 2, 0, 0, 1, 3])
    mapping = metrics.cluster_mapping(ref, other)
    assert mapping[2] == 0 and mapping[0] == 1 and mapping[1] == 2 and mapping[3] == 3
    # a cluster assigned to a class it shares no spot with stays unmatched only when asked
    ref, other = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(metrics.cluster_mapping(ref, other, n_ref=3), [0, 1])
    np.testing.assert_array_equal(metrics.cluster_mapping(np.array([0, 0]), np.array([0, 1]), n_ref=2,
                                                          require_overlap=True), [0, 2])


def test_evaluate_subsamples_batch_metrics_above_max_n_batch():
    a = _adata(True, True)
    full = metrics.evaluate(a, embedding_key="X_test", domain_key="domain_test", max_n_batch=None)
    same = metrics.evaluate(a, embedding_key="X_test", domain_key="domain_test", max_n_batch=a.n_obs)
    assert "batch_metrics_n_spots" not in full
    for key in ("ilisi", "kbet", "graph_connectivity", "batch_kl", "pcr_comparison"):
        assert same[key] == pytest.approx(full[key])
    n = a.n_obs // 2
    sub = metrics.evaluate(a, embedding_key="X_test", domain_key="domain_test", max_n_batch=n, max_n=n // 2)
    assert sub["batch_metrics_n_spots"] == n and sub["silhouette_n_spots"] == n // 2
    idx = metrics.subsample_index(a.n_obs, n, 0)
    assert sub["ilisi"] == pytest.approx(metrics.ilisi(a.obsm["X_test"][idx], a.obs["slice"].iloc[idx]))
    assert sub["ari"] == full["ari"]  # label metrics always use every spot
