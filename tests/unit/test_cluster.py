"""Tests of spatialdomains.cluster: mclust via rpy2, fallback, k-means/GMM/Leiden, refinement, K choice."""

from __future__ import annotations

import inspect
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from spatialdomains import cluster as cl
from spatialdomains._utils import InputError

needs_r = pytest.mark.skipif(not cl.mclust_available(), reason="R with mclust (and rpy2) not installed")


def _blobs(n_per: int, n_blobs: int, d: int, *, sep: float = 8.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=sep, size=(n_blobs, d))
    X = np.vstack([c + rng.normal(size=(n_per, d)) for c in centres])
    return X, np.repeat(np.arange(n_blobs), n_per)


@pytest.fixture(scope="module")
def blobs4() -> tuple[np.ndarray, np.ndarray]:
    return _blobs(100, 4, 6, seed=1)


def _adata(X: np.ndarray) -> ad.AnnData:
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"s{i}" for i in range(X.shape[0])]))
    adata.obsm["X_staig"] = X
    side = int(np.ceil(np.sqrt(X.shape[0])))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2)[: X.shape[0]]
    adata.obsm["spatial"] = grid.astype(float)
    return adata


# --- mclust --------------------------------------------------------------------------------------


@pytest.mark.r
@needs_r
@pytest.mark.parametrize("d", [2, 5, 12])
def test_mclust_recovers_blobs_and_is_reproducible(d):
    X, y = _blobs(120, 3, d, seed=d)
    a = cl.mclust(X, 3, random_state=7)
    assert a.shape == (360,) and a.dtype == np.int64
    assert set(np.unique(a)) == {0, 1, 2}
    assert adjusted_rand_score(y, a) > 0.95
    np.testing.assert_array_equal(a, cl.mclust(X, 3, random_state=7))


@pytest.mark.r
@needs_r
def test_mclust_keeps_matrix_layout():
    # Fortran-ordered / strided / float32 inputs must reach R as the same N x d matrix
    X, y = _blobs(100, 3, 4, seed=11)
    ref = cl.mclust(X, 3)
    np.testing.assert_array_equal(cl.mclust(np.asfortranarray(X), 3), ref)
    wide = np.repeat(X, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(cl.mclust(wide, 3), ref)
    assert adjusted_rand_score(y, cl.mclust(X.astype(np.float32), 3)) > 0.95
    x1 = np.r_[np.zeros(50), np.full(50, 10.0)] + np.random.default_rng(0).normal(size=100)
    one_d = cl.mclust(x1[:, None], 2)  # univariate: EEE becomes E
    assert adjusted_rand_score(np.repeat([0, 1], 50), one_d) == pytest.approx(1.0)


@pytest.mark.r
@needs_r
def test_mclust_subsample_then_predict():
    X, y = _blobs(200, 3, 4, seed=3)
    labels = cl.mclust(X, 3, max_fit=150)
    assert labels.shape == (600,)
    assert adjusted_rand_score(y, labels) > 0.95


@pytest.mark.r
@needs_r
def test_mclust_no_fit_raises_clearly():
    # three distinct points for five components: Mclust returns NULL
    X = np.repeat(np.random.default_rng(0).normal(size=(3, 4)), 100, axis=0)
    with pytest.raises(RuntimeError, match="mclust"):
        cl.mclust(X, 5)


@pytest.mark.r
@needs_r
def test_no_global_numpy2ri_state_left():
    X, _ = _blobs(60, 2, 3)
    cl.mclust(X, 2)
    import rpy2.robjects as ro

    with pytest.raises(NotImplementedError):
        ro.conversion.get_conversion().py2rpy(np.array([1.0, 2.0]))
    code = "\n".join(ln.split("#")[0] for ln in inspect.getsource(cl).splitlines())
    assert not re.search(r"numpy2ri\s*\.\s*activate", code)
    assert "localconverter(" in code


def test_mclust_bad_input():
    with pytest.raises(InputError, match="n_clusters"):
        cl.mclust(np.zeros((5, 2)), 10)
    with pytest.raises(InputError, match="NaN"):
        cl.mclust(np.full((5, 2), np.nan), 2)


# --- Python clusterers ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [cl.gmm_tied, cl.kmeans])
def test_python_clusterers_recover_blobs(fn, blobs4):
    X, y = blobs4
    labels = fn(X, 4, random_state=0)
    assert adjusted_rand_score(y, labels) > 0.95
    np.testing.assert_array_equal(labels, fn(X, 4, random_state=0))


def test_leiden_recovers_blobs(blobs4):
    X, y = blobs4
    labels = cl.leiden(X, 0.3, random_state=0, neighbors_method="gauss")
    assert adjusted_rand_score(y, labels) > 0.95
    np.testing.assert_array_equal(labels, cl.leiden(X, 0.3, random_state=0, neighbors_method="gauss"))


@pytest.mark.slow
def test_leiden_default_umap_graph(blobs4):
    X, y = blobs4  # scanpy's default UMAP weights: numba compiles on first use (~20 s)
    assert adjusted_rand_score(y, cl.leiden(X, 0.3, random_state=0)) > 0.95


# --- refinement ----------------------------------------------------------------------------------


def _grid(side: int) -> np.ndarray:
    ij = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.stack(ij, axis=-1).reshape(-1, 2).astype(float)


def test_refine_fixes_isolated_spots():
    xy = _grid(20)
    labels = np.where(xy[:, 0] < 10, "A", "B").astype(object)
    noisy = labels.copy()
    flipped = [(3, 3), (5, 15), (14, 4), (16, 16)]
    for x, y in flipped:
        i = int(x * 20 + y)
        noisy[i] = "B" if labels[i] == "A" else "A"
    refined = cl.refine_labels(noisy, xy)
    for x, y in flipped:
        assert refined[int(x * 20 + y)] == labels[int(x * 20 + y)]
    interior = (np.abs(xy[:, 0] - 9.5) > 3)
    np.testing.assert_array_equal(refined[interior], labels[interior])
    assert refined.dtype == noisy.dtype


def test_refine_tie_goes_to_nearest_label():
    # spot 0 at the origin; nearest neighbour (d=1) is 'x', then one 'y' (d=2): 1 vote each -> 'x'
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    refined = cl.refine_labels(np.array(["y", "x", "y"]), xy, n_neighbors=2)
    np.testing.assert_array_equal(refined, ["x", "y", "y"])


def test_refine_never_crosses_slices():
    xy = _grid(10)
    coords = np.vstack([xy, xy])  # identical coordinates in both slices
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    slices = np.repeat(["a", "b"], 100)
    np.testing.assert_array_equal(cl.refine_labels(labels, coords, slice_ids=slices), labels)
    mixed = cl.refine_labels(labels, coords)  # one slice: duplicates vote across the two label sets
    assert not np.array_equal(mixed, labels)


# --- K selection and the AnnData entry point -----------------------------------------------------


def test_choose_n_clusters_finds_four(blobs4):
    X, _ = blobs4
    k, table = cl.choose_n_clusters(X, range(2, 8), method="kmeans", random_state=0)
    assert k == 4
    assert list(table["n_clusters"]) == list(range(2, 8))
    assert table.loc[table["silhouette"].idxmax(), "n_clusters"] == 4


def test_cluster_writes_obs_and_uns(blobs4):
    X, y = blobs4
    adata = _adata(X)
    out = cl.cluster(adata, 4, method="kmeans", random_state=0)
    assert out is None
    assert adata.uns["spatialdomains"]["cluster_staig"]["seed"] == 0
    labels = adata.obs["domain_staig"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == ["0", "1", "2", "3"]
    assert adjusted_rand_score(y, labels) > 0.95
    entry = adata.uns["spatialdomains"]["cluster_staig"]
    assert entry["backend"] == "kmeans" and entry["n_clusters"] == 4 and entry["k_selection"] == "argument"
    assert "warning" not in entry

    copy = cl.cluster(adata, method="gmm", k_range=(2, 6), key_added="domain_k", refine=True, copy=True)
    assert "domain_k" in copy.obs and "domain_k" not in adata.obs
    e2 = copy.uns["spatialdomains"]["cluster_k"]
    assert e2["k_selection"] == "silhouette" and e2["n_clusters"] == 4
    assert set(e2["silhouette_scores"]) == {"2", "3", "4", "5", "6"}  # JSON-style keys


def test_cluster_fallback_recorded(monkeypatch, blobs4, caplog):
    X, y = blobs4
    adata = _adata(X)
    monkeypatch.setattr(cl, "mclust_available", lambda: False)
    with caplog.at_level("WARNING", logger="spatialdomains"):
        cl.cluster(adata, 4, method="mclust")
    entry = adata.uns["spatialdomains"]["cluster_staig"]
    assert entry["backend"] == cl.FALLBACK_BACKEND
    assert "mclust" in entry["warning"]
    assert any("unavailable" in r.message for r in caplog.records)
    assert adjusted_rand_score(y, adata.obs["domain_staig"]) > 0.95
    with pytest.raises(RuntimeError, match="R"):
        cl.mclust(X, 4)


@pytest.mark.r
@needs_r
def test_cluster_mclust_backend_recorded(blobs4):
    X, y = blobs4
    adata = _adata(X)
    cl.cluster(adata, 4, method="mclust")
    entry = adata.uns["spatialdomains"]["cluster_staig"]
    assert entry["backend"] == "mclust" and entry["model"] == "EEE"
    assert adjusted_rand_score(y, adata.obs["domain_staig"]) > 0.95


def test_cluster_bad_input(blobs4):
    adata = _adata(blobs4[0])
    with pytest.raises(InputError, match="X_nope"):
        cl.cluster(adata, 4, use_rep="X_nope")
    with pytest.raises(InputError, match="method"):
        cl.cluster(adata, 4, method="hdbscan")
    with pytest.raises(InputError, match="leiden"):
        cl.cluster(adata, 4, method="leiden")


def test_mclust_ignores_constant_dimensions():
    """Non-negative ReLU embeddings have dead units; mclust must still fit (they make EEE singular)."""
    from spatialdomains.cluster import mclust, mclust_available

    if not mclust_available():
        pytest.skip("R/mclust not installed")
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, (3, 6))
    X = np.concatenate([c + rng.normal(0, 0.5, (100, 6)) for c in centers])
    X = np.concatenate([np.maximum(X, 0), np.zeros((300, 4))], axis=1)  # 4 dead units
    truth = np.repeat([0, 1, 2], 100)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, mclust(X, 3, random_state=1)) > 0.9


def test_cluster_falls_back_when_mclust_finds_no_fit(monkeypatch):
    import anndata as ad

    from spatialdomains import cluster as cl

    def no_fit(*args, **kwargs):
        raise RuntimeError("mclust found no fit (model EEE, G=3)")

    monkeypatch.setattr(cl, "mclust", no_fit)
    monkeypatch.setattr(cl, "mclust_available", lambda: True)
    rng = np.random.default_rng(1)
    a = ad.AnnData(np.zeros((150, 2), dtype=np.float32))
    a.obsm["X_toy"] = np.concatenate([rng.normal(m, 0.3, (50, 3)) for m in (0, 4, 8)])
    cl.cluster(a, 3, use_rep="X_toy", method="mclust")
    info = a.uns["spatialdomains"]["cluster_toy"]
    assert info["backend"] == "gmm_tied_fallback"
    assert "no fit" in info["warning"]
    assert a.obs["domain_toy"].nunique() == 3


@pytest.mark.r
@needs_r
def test_mclust_leaves_the_process_environment_as_it_was():
    """rpy2 puts /usr/lib/<arch> on LD_LIBRARY_PATH while R starts; kept, it made every later subprocess
    (Nextflow's tasks) load the system libpython and fail to import ssl. Checked in a fresh interpreter."""
    import subprocess
    import sys

    code = """
import os, subprocess, sys
import numpy as np
before = dict(os.environ)
from spatialdomains.cluster import mclust
mclust(np.random.default_rng(0).normal(size=(60, 3)), 2)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k) and k != "R_HOME")
assert not changed, changed
subprocess.run([sys.executable, "-c", "import ssl"], check=True)
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "LD_LIBRARY_PATH"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


# --- per-method default clustering ("auto") --------------------------------------------------------


def test_auto_resolves_to_each_methods_registered_default(blobs4, monkeypatch):
    from spatialdomains.models import METHODS

    assert cl.resolve_algorithm("kmeans", "X_staig") == "kmeans"  # an explicit choice overrides for every method
    assert cl.resolve_algorithm("auto", "X_other") == cl.AUTO_FALLBACK == "mclust"
    for name, spec in METHODS.items():
        assert spec.cluster_algorithm in cl.ALGORITHMS
        assert cl.resolve_algorithm("auto", f"X_{name}") == spec.cluster_algorithm

    # cluster() defaults to auto and records what it resolved to; a method whose default is k-means runs k-means
    import dataclasses

    monkeypatch.setitem(METHODS, "toy", dataclasses.replace(METHODS["staig"], name="toy", cluster_algorithm="kmeans"))
    X, y = blobs4
    adata = _adata(X)
    adata.obsm["X_toy"] = X
    cl.cluster(adata, 4, use_rep="X_toy", random_state=0)
    entry = adata.uns["spatialdomains"]["cluster_toy"]
    assert entry["requested"] == "auto" and entry["method"] == "kmeans" and entry["backend"] == "kmeans"
    np.testing.assert_array_equal(adata.obs["domain_toy"].astype(int).to_numpy(), cl.kmeans(X, 4, random_state=0))
    cl.cluster(adata, 4, use_rep="X_toy", method="gmm", random_state=0)
    assert adata.uns["spatialdomains"]["cluster_toy"]["backend"] == "gmm"


def test_cosine_variants_cluster_the_unit_rows(blobs4):
    from spatialdomains.cli._methods import CLUSTER_ALGORITHMS

    assert list(CLUSTER_ALGORITHMS) == [cl.AUTO, *cl.ALGORITHMS]  # the CLI offers exactly the library's choices
    X, _ = blobs4
    X = X - X.min(0) + 1.0  # rows with different lengths, so the normalisation matters
    scale = np.random.default_rng(0).uniform(0.5, 5.0, size=(len(X), 1))
    adata = _adata(X * scale)  # same directions, random lengths
    cl.cluster(adata, 4, method="kmeans_cosine", random_state=0)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_array_equal(adata.obs["domain_staig"].astype(int).to_numpy(), cl.kmeans(unit, 4, random_state=0))
    entry = adata.uns["spatialdomains"]["cluster_staig"]
    assert entry["method"] == "kmeans_cosine" and entry["backend"] == "kmeans" and entry["l2_normalised"] is True


def test_seed_keyword_and_cluster_methods_still_work_with_a_warning(blobs4):
    """Renamed in 0.2 (``random_state`` as in scanpy; ``ALGORITHMS`` vs the registry's ``models.METHODS``)."""
    X, _ = blobs4
    with pytest.warns(FutureWarning, match="seed=.*random_state"):
        old = cl.kmeans(X, 4, seed=3)
    np.testing.assert_array_equal(old, cl.kmeans(X, 4, random_state=3))
    with pytest.raises(TypeError, match="both"):
        cl.kmeans(X, 4, seed=3, random_state=3)
    with pytest.warns(FutureWarning, match="ALGORITHMS"):
        assert cl.METHODS == cl.ALGORITHMS and "kmeans" in cl.ALGORITHMS


def test_kmeans_minibatch_and_single_start(blobs4):
    """The paths STAIG's DS pseudo-labels use (one start; mini-batches above 200k spots)."""
    X, y = blobs4
    assert adjusted_rand_score(y, cl.kmeans(X, 4, random_state=0, n_init=1)) > 0.95
    mb = cl.kmeans(X, 4, random_state=0, n_init=3, batch_size=64)
    assert adjusted_rand_score(y, mb) > 0.95 and mb.dtype == np.int64


def test_k_search_runs_on_a_subsample_above_max_fit(monkeypatch, blobs4):
    """Above max_fit every candidate K is fitted on one subsample; the chosen K is then fitted on all."""
    X, y = blobs4
    sizes = []
    real = cl.kmeans

    def counting(emb, k, **kw):
        sizes.append(emb.shape[0])
        return real(emb, k, **kw)

    monkeypatch.setattr(cl, "kmeans", counting)
    monkeypatch.setitem(cl._K_METHODS, "kmeans", counting)
    adata = _adata(X)
    cl.cluster(adata, method="kmeans", k_range=(2, 6), max_fit=150, random_state=0)
    assert sizes == [150] * 5 + [X.shape[0]]  # five candidates on the subsample, then K=4 on every spot
    entry = adata.uns["spatialdomains"]["cluster_staig"]
    assert entry["n_clusters"] == 4 and entry["k_selection_n_spots"] == 150
    assert adjusted_rand_score(y, adata.obs["domain_staig"]) > 0.95
    sizes.clear()
    k, _ = cl.choose_n_clusters(X, range(2, 6), method="kmeans", random_state=0, max_fit=150)
    assert k == 4 and sizes == [150] * 4
