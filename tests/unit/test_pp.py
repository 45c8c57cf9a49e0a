import numpy as np
import pytest
import scipy.sparse as sp

from spatialdomains import pp
from spatialdomains._utils import InputError


def test_qc_records_what_it_removes(layered_slice):
    a = layered_slice
    n = a.n_obs
    out = pp.qc(a, min_counts=int(np.median(np.asarray(a.layers["counts"].sum(1)).ravel())), copy=True)
    qc = out.uns["spatialdomains"]["qc"]
    assert qc["n_spots_in"] == n
    assert qc["n_spots_removed"] == n - out.n_obs
    assert 0 < qc["n_spots_removed"] < n
    assert "pct_counts_mt" in out.obs


def test_qc_honours_copy(layered_slice):
    a = layered_slice.copy()
    before = a.copy()
    thresholds = dict(min_counts=int(np.median(np.asarray(a.layers["counts"].sum(1)).ravel())), min_cells=5)
    out = pp.qc(a, copy=True, **thresholds)
    assert out is not a and a.n_obs == before.n_obs  # copy=True: the input is left as it was
    assert "total_counts" not in a.obs
    assert pp.qc(a, **thresholds) is None  # copy=False: filtered in place, scanpy style
    assert a.shape == out.shape
    np.testing.assert_array_equal(a.obs_names, out.obs_names)
    np.testing.assert_array_equal(a.obs["total_counts"], out.obs["total_counts"])
    assert abs(a.layers["counts"] - out.layers["counts"]).max() == 0
    assert a.uns["spatialdomains"]["qc"]["n_spots_removed"] == before.n_obs - a.n_obs


def test_qc_refuses_to_remove_everything(layered_slice):
    with pytest.raises(InputError, match="removed every spot"):
        pp.qc(layered_slice, min_counts=10**9)


@pytest.mark.parametrize("scale", ["none", "sd", "zscore"])
def test_normalize_variants(layered_slice, scale):
    pp.normalize(layered_slice, scale=scale)
    X = layered_slice.X.toarray() if sp.issparse(layered_slice.X) else layered_slice.X
    assert np.isfinite(X).all()
    if scale == "sd":
        assert X.min() >= 0 and X.max() <= 10 + 1e-6
    if scale == "zscore":
        np.testing.assert_allclose(X.mean(0), 0, atol=0.2)


@pytest.mark.parametrize("flavor", ["seurat_v3", "seurat", "cell_ranger", "moran"])
def test_hvg_flavours_find_markers(layered_slice, flavor):
    from spatialdomains.graph import spatial_graph

    spatial_graph(layered_slice, platform="visium")
    pp.highly_variable_genes(layered_slice, 60, flavor=flavor)
    hv = layered_slice.var_names[layered_slice.var["highly_variable"]]
    assert len(hv) == 60
    markers = {g for genes in layered_slice.uns["markers"].values() for g in genes}
    # planted marker programmes dominate the variable genes
    assert len(markers & set(hv)) / len(hv) > 0.5


def test_prepare_group_intersects_and_builds_block_graph(two_slices):
    cfg = pp.PrepConfig(n_top_genes=150, normalize_scope="hvg")
    out = pp.prepare_group(two_slices, cfg, platform="visium")
    assert out.n_obs == sum(a.n_obs for a in two_slices)
    assert list(out.obs["slice"].cat.categories) == [a.obs["slice"].iloc[0] for a in two_slices]
    assert out.X.dtype == np.float32 and sp.issparse(out.X)  # sparse from reader to model input
    assert out.n_vars <= 150
    adj = out.obsp["spatial_connectivities"].tocoo()
    s = out.obs["slice"].to_numpy()
    assert np.all(s[adj.row] == s[adj.col])
    assert "counts" in out.layers


def test_prepare_group_no_shared_genes_is_clear(two_slices):
    b = two_slices[1]
    b.var_names = [f"OTHER{i}" for i in range(b.n_vars)]
    with pytest.raises(InputError, match="share no highly variable genes"):
        pp.prepare_group(two_slices, pp.PrepConfig(n_top_genes=50))


@pytest.mark.parametrize("scope, scale", [("all", "sd"), ("hvg", "none"), ("all", "zscore")])
def test_prepare_group_equals_the_dense_recipe(two_slices, scope, scale):
    """The sparse path gives the features of the dense per-slice recipe (normalise, cut to the shared
    HVGs, densify, scanpy scale), and densifies only for zscore (spots x HVGs)."""
    import scanpy as sc

    cfg = pp.PrepConfig(n_top_genes=120, normalize_scope=scope, scale=scale)
    before = [(a.X.copy(), a.var.copy(), set(a.uns["spatialdomains"])) for a in two_slices]
    out = pp.prepare_group(two_slices, cfg, platform="visium")
    assert sp.issparse(out.X) == (scale != "zscore")
    for a, (X, var, steps) in zip(two_slices, before):  # the inputs are not written
        assert abs(a.X - X).max() == 0 and a.var.equals(var) and set(a.uns["spatialdomains"]) == steps
    parts = []
    for a in two_slices:
        a = a.copy()
        pp.highly_variable_genes(a, 120)
        if scope == "hvg":
            a = a[:, a.var["highly_variable"].to_numpy()].copy()
        pp.normalize(a)
        s = a[:, out.var_names].copy()
        s.X = s.X.toarray()
        if scale != "none":
            sc.pp.scale(s, zero_center=scale == "zscore", max_value=10.0)
        parts.append(s.X)
    X = out.X.toarray() if sp.issparse(out.X) else out.X
    np.testing.assert_allclose(X, np.vstack(parts), rtol=1e-5, atol=1e-5)


def test_per_slice_hvg_intersection_is_scanpys_batched_selection(two_slices):
    """Our per-slice seurat_v3 HVGs intersected = scanpy's batch_key call's genes HVG in every batch."""
    import anndata as ad
    import scanpy as sc

    n_top = 100
    ours = []
    for a in two_slices:
        a = a.copy()
        pp.highly_variable_genes(a, n_top)
        ours.append(set(a.var_names[a.var["highly_variable"].to_numpy()]))
    both = ad.concat([ad.AnnData(a.layers["counts"].copy(), obs=a.obs[["slice"]], var=a.var[[]])
                      for a in two_slices])
    both.obs["slice"] = both.obs["slice"].astype("category")
    sc.pp.highly_variable_genes(both, n_top_genes=n_top, flavor="seurat_v3", batch_key="slice")
    theirs = set(both.var_names[both.var["highly_variable_nbatches"].to_numpy() == 2])
    assert ours[0] & ours[1] == theirs
