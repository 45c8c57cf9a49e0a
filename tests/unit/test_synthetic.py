"""The synthetic tissue: slots, planted structure, difficulty, batch, image, files, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spatialdomains import graph
from spatialdomains import synthetic as syn
from spatialdomains._utils import InputError


@pytest.fixture(scope="module")
def default_slice():
    """The default slice (3000 Visium spots, 5 layers, 1000 genes): built once for this module."""
    return syn.make_slice()


def _lognorm(adata) -> np.ndarray:
    X = adata.layers["counts"].astype(np.float64)
    lib = np.asarray(X.sum(1)).ravel()
    return np.log1p(sp.diags(1e4 / lib) @ X).toarray()


def _kmeans_ari(Z: np.ndarray, truth, k: int) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(truth, KMeans(k, n_init=4, random_state=0).fit_predict(Z))


# --- slots and shapes -----------------------------------------------------------------------------


def test_slots_shapes_and_dtypes(default_slice):
    a = default_slice
    assert a.shape == (3000, 1000)
    assert sp.isspmatrix_csr(a.X) or isinstance(a.X, sp.csr_array)
    assert a.X.dtype == np.float32 and a.layers["counts"].dtype == np.float32
    assert a.X.has_canonical_format
    assert (a.X != a.layers["counts"]).nnz == 0 and a.X is not a.layers["counts"]
    np.testing.assert_array_equal(a.X.data, np.round(a.X.data))  # counts are integers
    assert 0.3 < 1 - a.X.nnz / np.prod(a.shape) < 0.8  # many zeros
    lib = np.asarray(a.X.sum(1)).ravel()
    assert 800 < np.median(lib) < 3000 and lib.std() / lib.mean() > 0.3  # varying library sizes
    # obs
    assert list(a.obs["truth"].cat.categories) == ["D0", "D1", "D2", "D3", "D4"]
    assert (a.obs["truth"].astype(str) == a.obs["ground_truth"].astype(str)).all()
    assert list(a.obs["slice"].cat.categories) == ["slice0"]
    assert a.obs_names.is_unique
    assert {"array_row", "array_col", "in_tissue"} <= set(a.obs)
    assert ((a.obs["array_row"] + a.obs["array_col"]) % 2 == 0).all()  # Visium even/odd offset rows
    # space: float64 full-res (x, y); the hex pitch is 137 px at the natural scale
    xy = a.obsm["spatial"]
    assert xy.dtype == np.float64 and xy.shape == (3000, 2)
    assert graph.grid_spacing(xy) == pytest.approx(syn.VISIUM_PITCH_PX, rel=1e-6)
    np.testing.assert_allclose(xy[:, 0], (a.obs["array_col"] * 0.5 + syn.MARGIN_PITCHES) * 137.0)
    deg = graph.degree(graph.hex_edges(xy), a.n_obs)
    assert np.bincount(deg).argmax() == 6
    m = a.obsm[syn.MEMBERSHIP_KEY]
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(m.argmax(1), a.obs["truth"].cat.codes)
    # var, markers, params
    assert a.var_names[0] == "GENE0001" and any(g.startswith("MT-") for g in a.var_names)
    assert set(a.uns["markers"]) == {"D0", "D1", "D2", "D3", "D4"}
    for dom, genes in a.uns["markers"].items():
        assert len(genes) == 20
        assert (a.var.loc[genes, "marker_of"] == dom).all()
        assert (a.var.loc[genes, "programme"] == f"PROGRAMME_{dom}").all()
    assert (a.var["marker_of"] != "").sum() == 100
    params = a.uns["spatialdomains"]["synthetic"]
    assert params["n_spots"] == 3000 and params["pattern"] == "layers" and params["seed"] == 0
    sf = a.uns["spatial"]["slice0"]["scalefactors"]
    assert sf["spot_diameter_fullres"] == pytest.approx(89.4)
    assert sf["fiducial_diameter_fullres"] == pytest.approx(144.4)
    assert 0 < sf["tissue_lowres_scalef"] < sf["tissue_hires_scalef"] < 1
    assert "images" not in a.uns["spatial"]["slice0"]


def test_mitochondrial_genes_give_qc_something_to_compute(default_slice):
    a = default_slice
    mt = a.var_names.str.startswith("MT-")
    assert mt.sum() == 13 and list(a.var_names[mt]) == list(a.var_names[-13:])
    X = a.layers["counts"]
    pct = 100 * np.asarray(X[:, mt].sum(1)).ravel() / np.asarray(X.sum(1)).ravel()
    assert 3 < np.median(pct) < 15 and pct.std() > 0.5


@pytest.mark.parametrize("pattern", ["layers", "blobs"])
@pytest.mark.parametrize("layout", ["visium", "scatter"])
def test_truth_has_k_contiguous_domains(pattern, layout):
    K = 5
    a = syn.make_slice(n_spots=1500, n_genes=200, n_domains=K, pattern=pattern, layout=layout, random_state=3)
    assert a.n_obs == 1500
    share = np.bincount(a.obs["truth"].cat.codes, minlength=K) / a.n_obs
    assert share.min() > 0.4 / K, share
    # domains are spatially coherent: most spots share their neighbours' domain
    ei = graph.knn_edges(a.obsm["spatial"], 6)
    codes = a.obs["truth"].cat.codes.to_numpy()
    assert (codes[ei[0]] == codes[ei[1]]).mean() > 0.8
    if layout == "scatter":
        assert "array_row" not in a.obs
        assert graph.grid_spacing(a.obsm["spatial"]) < syn.SCATTER_PITCH_PX


def test_dlpfc_like_seven_layers_have_unequal_widths():
    a = syn.make_slice(n_spots=2000, n_genes=300, n_domains=7)
    share = np.bincount(a.obs["truth"].cat.codes, minlength=7) / a.n_obs
    assert share.min() > 0.04 and share.max() > 2.5 * share.min()


def test_single_domain_and_small_gene_sets_work():
    a = syn.make_slice(n_spots=300, n_domains=1, n_genes=60)
    assert a.obs["truth"].nunique() == 1 and a.n_vars == 60
    b = syn.make_slice(n_spots=300, n_domains=4, n_genes=100)  # markers shrink to fit
    assert 1 <= len(b.uns["markers"]["D0"]) < 20


# --- planted signal and difficulty ----------------------------------------------------------------


def test_planted_markers_are_higher_in_their_domain(default_slice):
    a = default_slice
    X = _lognorm(a)
    truth = a.obs["truth"].astype(str).to_numpy()
    background = (a.var["programme"] == "BACKGROUND").to_numpy()
    folds = {}
    for dom, genes in a.uns["markers"].items():
        idx = a.var_names.get_indexer(genes)
        inside, outside = X[truth == dom][:, idx].mean(0), X[truth != dom][:, idx].mean(0)
        folds[dom] = inside.mean() / outside.mean()
        assert (inside > outside).mean() >= 0.9, dom
        # well above the background genes' (null) folds between the same spots
        bg = X[truth == dom][:, background].mean(0) / X[truth != dom][:, background].mean(0)
        assert folds[dom] > np.quantile(bg, 0.9) + 0.05, dom
    # domains differ in distinctness (a white-matter-like domain stands out, some layers are subtle)
    assert np.mean(list(folds.values())) > 1.5, folds
    assert min(folds.values()) > 1.1 and max(folds.values()) > 2.0, folds


def test_nonspatial_baseline_sits_well_below_a_simple_spatial_one(default_slice):
    """normalise 1e4 + log1p + HVG + PCA 30 + k-means vs the same PCA averaged over hex neighbours."""
    import scanpy as sc

    a = default_slice.copy()
    sc.pp.highly_variable_genes(a, n_top_genes=500, flavor="seurat_v3", layer="counts")
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.pca(a, n_comps=30, random_state=0)
    Z = a.obsm["X_pca"]
    ei = graph.hex_edges(a.obsm["spatial"], self_loops=True)
    adj = graph.to_csr(ei, a.n_obs)
    Z_smooth = sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj @ Z
    truth = a.obs["truth"].cat.codes
    nonspatial = _kmeans_ari(Z, truth, 5)
    spatial = _kmeans_ari(Z_smooth, truth, 5)
    assert 0.15 < nonspatial < 0.55, nonspatial
    assert spatial > 0.75, spatial
    assert spatial - nonspatial > 0.3


def test_batch_effect_separates_slices_and_zero_does_not():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    accuracy = {}
    for be in (0.0, 0.3):
        slices = syn.make_slices(2, n_spots=600, n_genes=200, n_domains=4, batch_effect=be, random_state=4)
        X = np.vstack([_lognorm(a) for a in slices])
        X -= X.mean(0)
        Z = np.linalg.svd(X, full_matrices=False)[0][:, :15]
        y = np.repeat([0, 1], [a.n_obs for a in slices])
        accuracy[be] = cross_val_score(KNeighborsClassifier(15), Z, y, cv=3).mean()
    assert accuracy[0.3] > 0.9, accuracy
    assert accuracy[0.0] < 0.65, accuracy


def test_make_slices_share_the_programme_not_the_tissue():
    s0, s1 = syn.make_slices(2, n_spots=[500, 550], n_genes=150, n_domains=3, batch_effect=0.2, random_state=7)
    assert (s0.n_obs, s1.n_obs) == (500, 550)
    assert [str(a.obs["slice"].iloc[0]) for a in (s0, s1)] == ["slice0", "slice1"]
    assert list(s0.uns["spatial"]) == ["slice0"] and list(s1.uns["spatial"]) == ["slice1"]
    assert s0.uns["markers"] == s1.uns["markers"]
    pd.testing.assert_frame_equal(s0.var, s1.var)
    assert set(s0.obs_names).isdisjoint(s1.obs_names)
    assert s0.uns["spatialdomains"]["synthetic"]["batch_seed"] != s1.uns["spatialdomains"]["synthetic"]["batch_seed"]
    with pytest.raises(InputError, match="n_spots lists"):
        syn.make_slices(3, n_spots=[500, 500])


# --- counts sampler -------------------------------------------------------------------------------


def test_nb_sampler_matches_the_negative_binomial():
    rng = np.random.default_rng(0)
    n = 20000
    mean = np.array([0.05, 0.5, 2.0, 5.0, 11.0, 30.0], dtype=np.float32)  # 30: numpy's sampler
    size = np.array([3.0, 2.0, 1.0, 0.5, 2.0, 1.0], dtype=np.float32)
    idx, vals = syn._nb_counts(rng, np.tile(mean, (n, 1)), size)
    assert np.all(np.diff(idx) > 0) and np.all(vals > 0)
    X = np.zeros(n * mean.size)
    X[idx] = vals
    X = X.reshape(n, mean.size)
    np.testing.assert_allclose(X.mean(0), mean, rtol=0.06)
    np.testing.assert_allclose(X.var(0), mean + mean**2 / size, rtol=0.15)
    np.testing.assert_allclose((X == 0).mean(0), (size / (size + mean)) ** size, atol=0.01)


def test_counts_are_built_per_chunk_into_valid_csr(monkeypatch):
    monkeypatch.setattr(syn, "_CHUNK_ENTRIES", 20_000)  # 200 spots per chunk: 10 chunks
    a = syn.make_slice(n_spots=2000, n_genes=100, n_domains=3, random_state=2)
    X = a.layers["counts"]
    assert X.has_canonical_format and X.shape == (2000, 100)
    assert np.asarray(X.sum(1)).min() > 0
    assert a.X.indptr[-1] == X.nnz == X.data.size
    b = syn.make_slice(n_spots=2000, n_genes=100, n_domains=3, random_state=2, n_jobs=3)  # threads: same result
    assert (a.X != b.X).nnz == 0


# --- image ----------------------------------------------------------------------------------------


def _patch_darkness(img: np.ndarray, xy: np.ndarray, half: int) -> np.ndarray:
    gray = img.astype(np.float32).mean(2)
    return np.array([(gray[y - half:y + half + 1, x - half:x + half + 1] < 140).mean()
                     for x, y in np.round(xy).astype(int)])


@pytest.mark.parametrize("mode", ["informative", "uninformative"])
def test_image_texture_differs_by_domain_only_when_informative(mode):
    from scipy.stats import f_oneway

    a = syn.make_slice(n_spots=800, n_genes=100, n_domains=4, image=True, image_mode=mode, image_size=700)
    lib = a.uns["spatial"]["slice0"]
    sf = lib["scalefactors"]
    full = syn.fullres_image(a)
    assert full.dtype == np.uint8 and full.ndim == 3 and full.shape[2] == 3
    assert max(full.shape[:2]) == 700
    assert full.shape[:2] == (lib["metadata"]["fullres_height"], lib["metadata"]["fullres_width"])
    hires = lib["images"]["hires"]
    assert hires.shape[:2] == tuple(int(round(s * sf["tissue_hires_scalef"])) for s in full.shape[:2])
    np.testing.assert_array_equal(hires, syn._downscale(full, sf["tissue_hires_scalef"]))
    assert lib["images"]["lowres"].shape[0] < hires.shape[0]
    # spots sit on pink tissue: red > green
    x, y = np.round(a.obsm["spatial"]).astype(int).T
    assert (full[y, x, 0].astype(int) > full[y, x, 1].astype(int)).mean() > 0.95
    pitch = a.uns["spatialdomains"]["synthetic"]["pitch_px"]
    dark = _patch_darkness(full, a.obsm["spatial"], max(2, int(pitch / 2)))
    codes = a.obs["truth"].cat.codes.to_numpy()
    groups = [dark[codes == k] for k in range(4)]
    stat = f_oneway(*groups).statistic
    spread = np.ptp([g.mean() for g in groups]) / dark.mean()
    if mode == "informative":
        assert stat > 100 and spread > 0.3, (stat, spread)
    else:
        assert stat < 10 and spread < 0.1, (stat, spread)


def test_fullres_image_needs_an_image(default_slice):
    with pytest.raises(InputError, match="image=False"):
        syn.fullres_image(default_slice)


# --- files ----------------------------------------------------------------------------------------


def test_simulate_to_dir_writes_a_ready_experiment(tmp_path):
    import anndata as ad
    import tifffile

    from spatialdomains.samplesheet import validate_samplesheet

    sheet = syn.simulate_to_dir(tmp_path / "demo", n_spots=300, n_slices=2, n_domains=3, n_genes=120, image=True,
                                image_size=300, random_state=5)
    assert sheet == tmp_path / "demo" / "samplesheet.csv"
    df = pd.read_csv(sheet, keep_default_na=False)
    assert list(df.columns) == ["sample", "group", "data", "image", "platform", "truth", "n_domains"]
    assert list(df["sample"]) == ["slice0", "slice1"] and set(df["group"]) == {"group1"}
    assert list(df["data"]) == ["slice0.h5ad", "slice1.h5ad"]  # relative to the sheet's folder
    assert (df["truth"] == "truth").all() and (df["n_domains"] == 3).all() and (df["platform"] == "visium").all()
    for _, row in df.iterrows():
        a = ad.read_h5ad(sheet.parent / row["data"])
        img = tifffile.imread(sheet.parent / row["image"])
        assert img.shape[:2] == (a.uns["spatial"][row["sample"]]["metadata"]["fullres_height"],
                                 a.uns["spatial"][row["sample"]]["metadata"]["fullres_width"])
        np.testing.assert_array_equal(img, syn.fullres_image(a))  # params survive the h5ad round trip
        assert a.obsm["spatial"].max(0)[0] < img.shape[1] and a.obsm["spatial"].max(0)[1] < img.shape[0]
        assert "truth" in a.obs and "counts" in a.layers
    rows = validate_samplesheet(sheet)
    assert [r["sample"] for r in rows] == ["slice0", "slice1"]
    gmt = (sheet.parent / "genesets.gmt").read_text().splitlines()
    sets = {line.split("\t")[0]: line.split("\t")[2:] for line in gmt}
    assert {"PROGRAMME_D0", "PROGRAMME_D1", "PROGRAMME_D2"} <= set(sets)
    assert sum(name.startswith("DECOY_") for name in sets) >= 3
    assert sorted(sets["PROGRAMME_D1"]) == sorted(a.uns["markers"]["D1"])
    assert not list(sheet.parent.glob(".*"))  # no temporary files left behind


def test_simulate_to_dir_without_image_or_gmt(tmp_path):
    sheet = syn.simulate_to_dir(tmp_path, n_spots=200, n_slices=1, n_domains=2, n_genes=80, gmt=False,
                                counts_layer=False, layout="scatter", platform="xenium")
    df = pd.read_csv(sheet, keep_default_na=False)
    assert df.loc[0, "image"] == "" and df.loc[0, "platform"] == "xenium"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samplesheet.csv", "slice0.h5ad"]


# --- reproducibility and errors -------------------------------------------------------------------


def test_same_seed_same_slice_other_seed_other_slice():
    kw = dict(n_spots=400, n_genes=150, n_domains=3, batch_effect=0.2, pattern="blobs")
    a, b, c = syn.make_slice(**kw), syn.make_slice(**kw), syn.make_slice(random_state=1, **kw)
    for key in ("X",):
        np.testing.assert_array_equal(a.X.indices, b.X.indices)
        np.testing.assert_array_equal(a.X.data, b.X.data)
    np.testing.assert_array_equal(a.obs_names, b.obs_names)
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert a.uns["markers"] == b.uns["markers"]
    assert a.X.nnz != c.X.nnz or not np.array_equal(a.X.data, c.X.data)
    assert a.uns["markers"] != c.uns["markers"]


def test_same_seed_same_files(tmp_path):
    import hashlib

    def digest(d):
        syn.simulate_to_dir(d, n_spots=200, n_slices=2, n_domains=2, n_genes=60, image=True, image_size=200)
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir() if p.suffix != ".h5ad"}

    assert digest(tmp_path / "a") == digest(tmp_path / "b")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pattern="stripes"), "pattern"),
        (dict(layout="hex"), "layout"),
        (dict(n_spots=10), "n_spots"),
        (dict(image_mode="noisy"), "image_mode"),
        (dict(batch_effect=-1.0), "batch_effect"),
        (dict(n_genes=8), "n_genes"),
        (dict(marker_lfc=(1.0, 0.5)), "marker_lfc"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        syn.make_slice(**kwargs)


def test_seed_keyword_is_deprecated_but_still_works():
    kw = dict(n_spots=300, n_genes=80, n_domains=3)
    with pytest.warns(DeprecationWarning, match="random_state"):
        a = syn.make_slice(seed=4, **kw)
    b = syn.make_slice(random_state=4, **kw)
    np.testing.assert_array_equal(a.X.data, b.X.data)


# --- instrument formats: Visium HD bins and Xenium cells ------------------------------------------


def _same_counts(a, b) -> None:
    assert a.shape == b.shape
    assert abs(sp.csr_matrix(a) - sp.csr_matrix(b)).max() == 0


@pytest.fixture
def many_chunks(monkeypatch):
    """Small count chunks, so that a test slice is written in several appended pieces."""
    monkeypatch.setattr(syn, "_CHUNK_ENTRIES", 20_000)


def test_visium_hd_folder_round_trips_through_the_reader(tmp_path, many_chunks):
    import json

    from spatialdomains import io

    kw = dict(n_domains=4, random_state=3, nuisance_strength=0.6)
    folder, truth = syn.write_visium_hd(tmp_path / "hd", 1500, 120, **kw)
    ref = syn.make_slice(1500, n_genes=120, layout="square", **kw)  # the same slice, in memory
    assert truth == tmp_path / "hd_truth.csv"
    bins = folder / "outs" / "binned_outputs" / "square_008um"
    positions = pd.read_parquet(bins / "spatial" / "tissue_positions.parquet")
    assert list(positions.columns) == ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres",
                                       "pxl_col_in_fullres"]
    assert positions["in_tissue"].sum() == 1500 and (positions["in_tissue"] == 0).any()  # capture area > tissue
    sf = json.loads((bins / "spatial" / "scalefactors_json.json").read_text())
    assert sf["bin_size_um"] == 8 and sf["bin_size_um"] / sf["spot_diameter_fullres"] == pytest.approx(
        sf["microns_per_pixel"])

    a = io.read(folder, platform="visium_hd", truth=str(truth))
    np.testing.assert_array_equal(a.obs_names, ref.obs_names)
    assert a.obs_names[0].startswith("s_008um_") and a.obs_names.is_monotonic_increasing
    _same_counts(a.layers["counts"], ref.X)
    np.testing.assert_allclose(a.obsm["spatial"], ref.obsm["spatial"])
    np.testing.assert_array_equal(a.obs["array_row"], ref.obs["array_row"])
    np.testing.assert_array_equal(a.obs["truth"].astype(str), ref.obs["truth"].astype(str))
    assert list(a.var["gene_ids"]) == list(ref.var["gene_ids"])
    assert a.uns["spatial"]["slice0"]["metadata"]["bin_size_um"] == 8


def test_xenium_folder_round_trips_through_the_reader(tmp_path, many_chunks):
    import json

    from spatialdomains import io

    kw = dict(n_domains=4, random_state=5, nuisance_strength=0.6)
    folder, truth = syn.write_xenium(tmp_path / "xen", 1200, 90, **kw)
    ref = syn.make_slice(1200, n_genes=90, layout="cells", **kw)
    assert sorted(p.name for p in folder.iterdir()) == ["cell_feature_matrix.h5", "cells.parquet",
                                                        "experiment.xenium"]
    cells = pd.read_parquet(folder / "cells.parquet")
    assert list(cells.columns[:3]) == ["cell_id", "x_centroid", "y_centroid"]
    assert json.loads((folder / "experiment.xenium").read_text())["pixel_size"] == syn.XENIUM_PIXEL_UM

    a = io.read(folder, platform="xenium", truth=str(truth))
    np.testing.assert_array_equal(a.obs_names, ref.obs_names)
    _same_counts(a.layers["counts"], ref.X)  # control probes and codewords are dropped by the reader
    np.testing.assert_allclose(a.obsm["spatial"], ref.obsm["spatial"] * syn.XENIUM_PIXEL_UM)  # microns
    np.testing.assert_array_equal(a.obs["truth"].astype(str), ref.obs["truth"].astype(str))
    np.testing.assert_array_equal(a.obs["transcript_counts"], np.asarray(ref.X.sum(1)).ravel())
    assert a.obs["dropped_negative_control_probe_counts"].sum() > 0


def test_format_writers_do_not_depend_on_threads(tmp_path, many_chunks):
    import h5py

    def matrix(n_jobs):
        folder, _ = syn.write_xenium(tmp_path / f"x{n_jobs}", 800, 60, 3, n_jobs=n_jobs)
        with h5py.File(folder / "cell_feature_matrix.h5") as f:
            return {k: f["matrix"][k][()] for k in ("data", "indices", "indptr", "barcodes")}

    one, two = matrix(1), matrix(2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])


def test_cells_are_irregular_and_mix_at_boundaries():
    from scipy.spatial import cKDTree

    a = syn.make_slice(3000, n_domains=4, n_genes=100, layout="cells", random_state=2)
    xy = a.obsm["spatial"] / syn.SCATTER_PITCH_PX
    d = cKDTree(xy).query(xy, k=2)[0][:, 1]
    assert d.min() > 0.3 and d.std() / d.mean() > 0.1  # no overlapping cells, no lattice
    # each cell expresses one domain's programme; the truth is the region holding it, so the two
    # differ only near boundaries, where cells of both domains intermix
    expressed, truth = a.obs[syn.EXPRESSED_KEY].astype(str), a.obs["truth"].astype(str)
    assert 0.75 < np.mean(expressed == truth) < 1.0
    X = a.layers["counts"]
    for dom, genes in a.uns["markers"].items():
        score = np.asarray(X[:, a.var_names.get_indexer(genes)].sum(1)).ravel()
        assert score[(expressed == dom).to_numpy()].mean() > 1.2 * score[(expressed != dom).to_numpy()].mean()


def test_simulate_cli_writes_instrument_folders_and_a_valid_sheet(tmp_path):
    from click.testing import CliRunner

    from spatialdomains.cli import main
    from spatialdomains.samplesheet import validate_samplesheet

    res = CliRunner().invoke(main, ["simulate", "--format", "visium_hd", "--n-spots", "400", "--n-genes", "60",
                                    "--n-slices", "2", "--n-domains", "3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = validate_samplesheet(tmp_path / "samplesheet.csv")
    assert [r["platform"] for r in rows] == ["visium_hd", "visium_hd"]
    assert all(r["has_truth"] for r in rows)
    assert (tmp_path / "genesets.gmt").is_file()
    res = CliRunner().invoke(main, ["simulate", "--format", "xenium", "--image", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--image" in res.output
