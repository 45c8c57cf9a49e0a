"""Readers on small real-format files written into ``tmp_path`` (see ``_fixtures_io.py``).

Successful reads check shapes, barcodes and their order, counts (exactly), (x, y) order and
``uns`` content; broken inputs check that an ``InputError`` names the file and the problem.
"""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

try:  # tests/ may become a package
    from . import _fixtures_io as fx
except ImportError:  # pragma: no cover - rootdir-relative import (pytest's default "prepend" mode)
    import _fixtures_io as fx

import spatialdomains.io as sio
from spatialdomains._utils import InputError, write_h5ad_atomic


# --- helpers ----------------------------------------------------------------------------------------
@pytest.fixture
def warnings_log():
    """Messages logged at WARNING by the ``spatialdomains`` logger (which may not propagate)."""
    logger = logging.getLogger("spatialdomains")
    messages: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _Handler(level=logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def assert_contract(adata, e: fx.Expected, library_id: str, *, tmp_path=None):
    """The AnnData contract every reader returns, checked against the fixture's expectations."""
    assert sp.issparse(adata.X) and adata.X.format == "csr" and adata.X.dtype == np.float32
    counts = adata.layers["counts"]
    assert sp.issparse(counts) and counts.format == "csr" and counts.dtype == np.float32
    assert counts is not adata.X
    assert list(adata.obs_names) == e.barcodes
    np.testing.assert_array_equal(counts.toarray(), e.counts)
    np.testing.assert_array_equal(adata.X.toarray(), e.counts)
    assert list(adata.var["gene_symbols"]) == e.genes
    assert adata.var_names.is_unique
    if e.gene_ids is not None:
        assert list(adata.var["gene_ids"]) == e.gene_ids
    xy = adata.obsm["spatial"]
    assert isinstance(xy, np.ndarray) and xy.dtype == np.float64 and xy.shape == (adata.n_obs, 2)
    np.testing.assert_allclose(xy, e.xy, rtol=0, atol=1e-9)
    assert isinstance(adata.obs["slice"].dtype, pd.CategoricalDtype)
    assert list(adata.obs["slice"].cat.categories) == [library_id]
    assert (adata.obs["slice"] == library_id).all()
    assert adata.uns["spatialdomains"]["read"]["library_id"] == library_id
    if tmp_path is not None:  # the pipeline writes what the reader returns
        import anndata as ad

        out = write_h5ad_atomic(adata, tmp_path / "roundtrip.h5ad")
        back = ad.read_h5ad(out)
        np.testing.assert_array_equal(back.layers["counts"].toarray(), e.counts)
        np.testing.assert_allclose(back.obsm["spatial"], e.xy)


def raises(match_all: list[str]):
    """Context manager: an InputError whose message contains every fragment of ``match_all``."""

    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(InputError)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._cm.__exit__(*exc)
            msg = str(self.info.value)
            for fragment in match_all:
                assert fragment in msg, f"{fragment!r} not in message: {msg}"
            return handled

    return _Ctx()


def rewrite_positions(e: fx.Expected, df: pd.DataFrame, version: str = "csv"):
    spatial = e.path / "spatial"
    for name in ("tissue_positions.csv", "tissue_positions_list.csv", "tissue_positions_list.txt",
                 "tissue_positions.parquet"):
        (spatial / name).unlink(missing_ok=True)
    return fx.write_positions(spatial, df, version=version)


def rewrite_h5(path, e_counts, barcodes, **kwargs):
    ids, names = fx.gene_table(e_counts.shape[1])
    fx.write_10x_h5(path, e_counts, barcodes, ids, names, **kwargs)


# --- Visium -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["csv", "list_csv", "list_txt"])
def test_read_visium_positions_versions(tmp_path, version):
    e = fx.write_visium(tmp_path / "s1", version=version)
    adata = sio.read_visium(e.path)
    assert_contract(adata, e, fx.LIBRARY_ID, tmp_path=tmp_path)
    pos = e.extra["positions"].set_index("barcode").loc[e.barcodes]
    assert (adata.obs["in_tissue"] == 1).all()
    np.testing.assert_array_equal(adata.obs["array_row"], pos["array_row"])
    np.testing.assert_array_equal(adata.obs["array_col"], pos["array_col"])
    # (x, y) = (pxl_col, pxl_row)
    np.testing.assert_allclose(adata.obsm["spatial"][:, 0], pos["pxl_col_in_fullres"])
    np.testing.assert_allclose(adata.obsm["spatial"][:, 1], pos["pxl_row_in_fullres"])
    lib = adata.uns["spatial"][fx.LIBRARY_ID]
    assert lib["scalefactors"] == fx.SCALEFACTORS
    assert lib["metadata"]["software_version"] == fx.SPACERANGER
    assert lib["images"]["hires"].shape == (*fx.HIRES_SHAPE, 3) and lib["images"]["hires"].dtype == np.uint8
    assert lib["images"]["lowres"].shape == (*fx.LOWRES_SHAPE, 3)
    assert tuple(lib["images"]["hires"][5, 5]) == e.extra["colors"]["hires"]  # RGB, not BGR
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["format"] == "visium" and rec["coordinate_unit"] == "pixel"
    assert rec["dropped_spots"]["off_tissue"] == e.extra["n_off_tissue_in_matrix"] > 0
    assert rec["positions_file"] == {"csv": "tissue_positions.csv", "list_csv": "tissue_positions_list.csv",
                                     "list_txt": "tissue_positions_list.txt"}[version]


def test_read_visium_parent_dir_and_library_id(tmp_path):
    e = fx.write_visium(tmp_path / "sampleB")
    adata = sio.read_visium(tmp_path / "sampleB", library_id="S9")
    assert_contract(adata, e, "S9")
    assert list(adata.uns["spatial"]) == ["S9"]


def test_read_visium_default_library_id_without_h5_attribute(tmp_path):
    e = fx.write_visium(tmp_path / "sampleC", library_id=None)
    adata = sio.read_visium(e.path)
    assert_contract(adata, e, "sampleC")  # the sample directory above outs/


def test_read_visium_missing_images_warn(tmp_path, warnings_log):
    e = fx.write_visium(tmp_path / "s", images=())
    adata = sio.read_visium(e.path)
    assert adata.uns["spatial"][fx.LIBRARY_ID]["images"] == {}
    assert any("tissue_hires_image.png" in m and "not found" in m for m in warnings_log)
    assert any("tissue_lowres_image.png" in m for m in warnings_log)


def test_read_visium_load_images_false(tmp_path, warnings_log):
    e = fx.write_visium(tmp_path / "s", images=())
    adata = sio.read_visium(e.path, load_images=False)
    assert adata.uns["spatial"][fx.LIBRARY_ID]["images"] == {}
    assert warnings_log == []


def test_read_visium_keeps_gene_expression_only_and_records_the_rest(tmp_path):
    types = ["Gene Expression"] * 5 + ["Antibody Capture"] * 2
    e = fx.write_visium(tmp_path / "s", feature_types=types)
    adata = sio.read_visium(e.path)
    assert_contract(adata, e, fx.LIBRARY_ID)
    in_matrix = e.extra["matrix_barcodes"]
    rows = [in_matrix.index(b) for b in e.barcodes]
    ab = e.extra["all_counts"][rows][:, 5:].sum(1)
    np.testing.assert_array_equal(adata.obs["dropped_antibody_capture_counts"], ab)
    dropped = adata.uns["spatialdomains"]["read"]["dropped_features"]["antibody_capture"]
    assert dropped["n_features"] == 2 and dropped["names"] == ["Gene6", "Gene7"]


def test_read_visium_tar_gz(tmp_path):
    e = fx.write_visium(tmp_path / "src" / "sampleT")
    archive = fx.make_tar_gz(tmp_path / "src" / "sampleT", tmp_path / "sampleT.tar.gz")
    shutil.rmtree(tmp_path / "src")
    adata = sio.read_visium(archive)
    assert_contract(adata, e, fx.LIBRARY_ID)
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["source"] == str(archive)
    assert rec["files"][0] == f"{archive}:sampleT/outs/filtered_feature_bc_matrix.h5"
    assert adata.uns["spatial"][fx.LIBRARY_ID]["images"]["hires"].shape == (*fx.HIRES_SHAPE, 3)


def test_read_visium_tar_gz_default_id_is_archive_name(tmp_path):
    e = fx.write_visium(tmp_path / "src", library_id=None, outs=False)
    archive = fx.make_tar_gz(tmp_path / "src", tmp_path / "P1_slice3.tgz", arcname="outs")
    assert_contract(sio.read_visium(archive), e, "P1_slice3")


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink"])
def test_archive_path_traversal_refused(tmp_path, kind):
    archive = fx.make_evil_tar_gz(tmp_path / "evil.tar.gz", kind)
    with raises([str(archive), "refusing to extract"]):
        sio.read_visium(archive)
    assert not (tmp_path / "escape.txt").exists()


def test_archive_without_matrix(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("hi")
    archive = fx.make_tar_gz(tmp_path / "d", tmp_path / "x.tar.gz")
    with raises([str(archive), "no filtered_feature_bc_matrix.h5", "Space Ranger"]):
        sio.read_visium(archive)


def test_archive_error_names_archive_not_temp_dir(tmp_path):
    e = fx.write_visium(tmp_path / "src" / "S")
    (e.path / "spatial" / "scalefactors_json.json").unlink()
    archive = fx.make_tar_gz(tmp_path / "src" / "S", tmp_path / "S.tar.gz")
    with raises([f"{archive}:S/outs/spatial/scalefactors_json.json", "not found"]) as info:
        sio.read_visium(archive)
    assert "spatialdomains-" not in str(info.value)


def test_visium_missing_matrix(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    (e.path / "filtered_feature_bc_matrix.h5").unlink()
    with raises([str(e.path / "filtered_feature_bc_matrix.h5"), "not found", "Space Ranger 1.x-3.x",
                 "tissue_positions.csv", "tissue_positions_list.csv"]):
        sio.read_visium(e.path)


def test_visium_missing_positions_names_files_and_version(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    (e.path / "spatial" / "tissue_positions.csv").unlink()
    with raises([str(e.path / "spatial"), "tissue_positions.csv (Space Ranger >= 2.0)",
                 "tissue_positions_list.csv (Space Ranger 1.x)", f"written by {fx.SPACERANGER}"]):
        sio.read_visium(e.path)


def test_visium_missing_positions_without_version_attribute(tmp_path):
    e = fx.write_visium(tmp_path / "s", software_version=None, version="list_csv")
    (e.path / "spatial" / "tissue_positions_list.csv").unlink()
    with raises(["no tissue positions file", "assuming Space Ranger 1.x-3.x"]):
        sio.read_visium(e.path)


def test_visium_missing_scalefactors(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    (e.path / "spatial" / "scalefactors_json.json").unlink()
    with raises([str(e.path / "spatial" / "scalefactors_json.json"), "not found"]):
        sio.read_visium(e.path)


def test_visium_missing_spatial_dir(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    shutil.rmtree(e.path / "spatial")
    with raises([str(e.path / "spatial"), "spatial/ directory not found", "filtered_feature_bc_matrix.h5"]):
        sio.read_visium(e.path)


def test_visium_mismatched_barcodes(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    pos = e.extra["positions"].copy()
    pos["barcode"] = fx.barcodes_10x(len(pos), seed=99)
    path = rewrite_positions(e, pos)
    n = len(e.extra["matrix_barcodes"])
    with raises([str(e.path / "filtered_feature_bc_matrix.h5"), str(path), f"only 0 of the matrix's {n} barcodes"]):
        sio.read_visium(e.path)


def test_visium_partly_matched_barcodes_warn_and_record(tmp_path, warnings_log):
    e = fx.write_visium(tmp_path / "s")
    pos = e.extra["positions"]
    drop = e.barcodes[0]
    rewrite_positions(e, pos[pos["barcode"] != drop])
    adata = sio.read_visium(e.path)
    assert drop not in adata.obs_names and adata.n_obs == len(e.barcodes) - 1
    assert adata.uns["spatialdomains"]["read"]["dropped_spots"]["not_in_positions"] == 1
    assert any("1 of" in m and "have no coordinates" in m for m in warnings_log)


def test_visium_non_numeric_counts(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "a") as f:
        n = f["matrix/data"].shape[0]
        del f["matrix/data"]
        f["matrix/data"] = np.array([b"one"] * n)
    with raises([str(h5), "non-numeric counts", "matrix/data"]):
        sio.read_visium(e.path)


def test_visium_negative_counts(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "a") as f:
        f["matrix/data"][0] = -3
        first = f["matrix/barcodes"][0].decode()
    with raises([str(h5), "negative count -3", repr(first)]):
        sio.read_visium(e.path)


@pytest.mark.parametrize("value, problem", [(np.nan, "missing coordinate"), ("abc", "non-numeric coordinate 'abc'")])
def test_visium_bad_coordinates(tmp_path, value, problem):
    e = fx.write_visium(tmp_path / "s")
    pos = e.extra["positions"].astype({"pxl_col_in_fullres": object})
    bad = e.barcodes[2]
    pos.loc[pos["barcode"] == bad, "pxl_col_in_fullres"] = value
    path = rewrite_positions(e, pos)
    with raises([str(path), problem, "'pxl_col_in_fullres'", repr(bad)]):
        sio.read_visium(e.path)


def test_visium_positions_missing_column(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    path = rewrite_positions(e, e.extra["positions"].drop(columns="pxl_row_in_fullres"))
    with raises([str(path), "missing column(s) ['pxl_row_in_fullres']"]):
        sio.read_visium(e.path)


def test_visium_headerless_positions_wrong_width(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    path = rewrite_positions(e, e.extra["positions"].drop(columns="array_col"), version="list_csv")
    with raises([str(path), "expected 6 columns", "found 5"]):
        sio.read_visium(e.path)


def test_visium_corrupt_image(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    (e.path / "spatial" / "tissue_hires_image.png").write_bytes(b"not a png")
    with raises([str(e.path / "spatial" / "tissue_hires_image.png"), "cannot be decoded"]):
        sio.read_visium(e.path)


def test_visium_h5_missing_dataset(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "a") as f:
        del f["matrix/indptr"]
    with raises([str(h5), "matrix/indptr"]):
        sio.read_visium(e.path)


def test_visium_h5_not_hdf5(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    h5.write_text("barcode,gene\n")
    with raises([str(h5), "not a readable HDF5 file"]):
        sio.read_visium(e.path)


def test_visium_missing_directory(tmp_path):
    with raises([str(tmp_path / "nope"), "not found"]):
        sio.read_visium(tmp_path / "nope")


# --- Visium HD -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "outs", "binned_outputs", "square"])
def test_read_visium_hd_layouts(tmp_path, where):
    es = fx.write_visium_hd(tmp_path / "hdsample", bin_sizes=(8, 16))
    e = es[8]
    path = {"root": tmp_path / "hdsample", "outs": tmp_path / "hdsample" / "outs",
            "binned_outputs": e.path.parent, "square": e.path}[where]
    adata = sio.read_visium_hd(path)
    lib = "hdsample"  # the sample directory above outs/binned_outputs/square_008um
    assert_contract(adata, e, lib, tmp_path=tmp_path)
    slot = adata.uns["spatial"][lib]
    assert slot["metadata"]["bin_size_um"] == 8
    assert slot["scalefactors"]["microns_per_pixel"] == fx.HD_SCALEFACTORS["microns_per_pixel"]
    assert adata.uns["spatialdomains"]["read"]["positions_file"] == "tissue_positions.parquet"
    assert adata.uns["spatialdomains"]["read"]["format"] == "visium_hd"
    assert adata.uns["spatialdomains"]["read"]["reader"].startswith("spatialdata-io ")
    assert slot["images"]["hires"].shape == (*fx.HIRES_SHAPE, 3) and slot["images"]["lowres"].dtype == np.uint8


def test_read_visium_hd_without_feature_slice_uses_our_reader(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd", feature_slice=False)
    adata = sio.read_visium_hd(tmp_path / "hd")
    assert_contract(adata, es[8], "hd")
    assert "reader" not in adata.uns["spatialdomains"]["read"]
    assert adata.uns["spatial"]["hd"]["metadata"]["bin_size_um"] == 8


def test_read_visium_hd_bin_size(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd", bin_sizes=(8, 16))
    adata = sio.read_visium_hd(tmp_path / "hd", bin_size=16, library_id="HD1")
    assert_contract(adata, es[16], "HD1")
    assert adata.uns["spatial"]["HD1"]["metadata"]["bin_size_um"] == 16


def test_visium_hd_bin_size_contradicts_directory(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd", bin_sizes=(8,))
    with raises([str(es[8].path), "8 um bins but bin_size=16"]):
        sio.read_visium_hd(es[8].path, bin_size=16)


def test_visium_hd_2um_refused_unless_allowed(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd", bin_sizes=(2, 8))
    with raises(["square_002um", "2 um bins", "too large", "allow_2um=True"]):
        sio.read_visium_hd(tmp_path / "hd", bin_size=2)
    with raises(["2 um bins"]):
        sio.read_visium_hd(es[2].path)
    assert_contract(sio.read_visium_hd(tmp_path / "hd", bin_size=2, allow_2um=True), es[2], "hd")


def test_visium_hd_missing_binned_outputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with raises([str(tmp_path / "empty"), "no binned_outputs/", "Space Ranger >= 3.0", "square_008um"]):
        sio.read_visium_hd(tmp_path / "empty")


def test_visium_hd_missing_bin_dir_lists_present(tmp_path):
    fx.write_visium_hd(tmp_path / "hd", bin_sizes=(16,))
    with raises(["square_008um", "no 8 um bin directory", "square_016um"]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_missing_parquet(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd")
    (es[8].path / "spatial" / "tissue_positions.parquet").unlink()
    with raises([str(es[8].path / "spatial"), "tissue_positions.parquet (Space Ranger >= 3.0 (Visium HD))",
                 "spaceranger-3.0.1"]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_missing_matrix(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd")
    (es[8].path / "filtered_feature_bc_matrix.h5").unlink()
    with raises([str(es[8].path / "filtered_feature_bc_matrix.h5"), "not found", "Space Ranger >= 3.0"]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_mismatched_barcodes(tmp_path):
    es = fx.write_visium_hd(tmp_path / "hd")
    e = es[8]
    pos = e.extra["positions"].copy()
    pos["barcode"] = pos["barcode"].str.replace("-1", "-2")
    path = rewrite_positions(e, pos, version="parquet")
    with raises([str(path), f"only 0 of the matrix's {len(e.barcodes)} barcodes", "'s_008um_00000_00000-1'"]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_negative_counts(tmp_path):
    e = fx.write_visium_hd(tmp_path / "hd")[8]
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    data = sp.csc_matrix(e.counts.T).data.astype(np.int32)
    data[-1] = -1
    rewrite_h5(h5, e.counts, e.barcodes, data=data, library_id=None)
    with raises([str(h5), "negative count -1", repr(e.barcodes[-1])]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_non_numeric_counts(tmp_path):
    e = fx.write_visium_hd(tmp_path / "hd")[8]
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    n = sp.csc_matrix(e.counts.T).nnz
    rewrite_h5(h5, e.counts, e.barcodes, data=np.array([b"x"] * n))
    with raises([str(h5), "non-numeric counts"]):
        sio.read_visium_hd(tmp_path / "hd")


def test_visium_hd_missing_coordinates(tmp_path):
    e = fx.write_visium_hd(tmp_path / "hd")[8]
    pos = e.extra["positions"].copy()
    pos.loc[3, "pxl_row_in_fullres"] = np.nan
    path = rewrite_positions(e, pos, version="parquet")
    with raises([str(path), "missing coordinate", "'pxl_row_in_fullres'", repr(e.barcodes[3])]):
        sio.read_visium_hd(tmp_path / "hd")


# --- 10x h5 + spatial/ ------------------------------------------------------------------------------
def test_read_10x_h5_with_spatial_beside(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    adata = sio.read_10x_h5(e.path / "filtered_feature_bc_matrix.h5")
    assert_contract(adata, e, fx.LIBRARY_ID)
    assert adata.uns["spatialdomains"]["read"]["format"] == "10x_h5"
    assert adata.uns["spatial"][fx.LIBRARY_ID]["scalefactors"] == fx.SCALEFACTORS


def test_read_10x_h5_spatial_dir_elsewhere_and_default_id(tmp_path):
    e = fx.write_visium(tmp_path / "s", library_id=None)
    h5 = tmp_path / "elsewhere" / "sample7.h5"
    h5.parent.mkdir()
    shutil.move(e.path / "filtered_feature_bc_matrix.h5", h5)
    adata = sio.read_10x_h5(h5, spatial_dir=e.path / "spatial")
    assert_contract(adata, e, "sample7")


def test_10x_h5_duplicate_symbols_made_unique(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    ids, names = fx.gene_table(7, duplicate_symbol=True)
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    fx.write_10x_h5(h5, e.extra["all_counts"], e.extra["matrix_barcodes"], ids, names)
    adata = sio.read_10x_h5(h5)
    assert adata.var_names.is_unique
    assert list(adata.var["gene_symbols"]) == names and list(adata.var["gene_ids"]) == ids


def test_10x_h5_missing_file(tmp_path):
    with raises([str(tmp_path / "m.h5"), "10x count matrix (.h5) not found"]):
        sio.read_10x_h5(tmp_path / "m.h5")


def test_10x_h5_missing_spatial_dir(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = tmp_path / "alone.h5"
    shutil.copy(e.path / "filtered_feature_bc_matrix.h5", h5)
    with raises([str(tmp_path / "spatial"), "spatial/ directory not found", "alone.h5", fx.SPACERANGER]):
        sio.read_10x_h5(h5)


def test_10x_h5_mismatched_barcodes(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    pos = e.extra["positions"].copy()
    keep = set(e.barcodes[:3])  # 3 of 19 matrix barcodes keep a position: below the 50 % floor
    pos.loc[~pos["barcode"].isin(keep), "barcode"] = fx.barcodes_10x(len(pos), seed=77)[: (~pos["barcode"].isin(keep)).sum()]
    rewrite_positions(e, pos)
    n = len(e.extra["matrix_barcodes"])
    with raises([f"only 3 of the matrix's {n} barcodes have coordinates", "at least 50%"]):
        sio.read_10x_h5(e.path / "filtered_feature_bc_matrix.h5")


def test_10x_h5_negative_counts(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "a") as f:
        f["matrix/data"][2] = -7
    with raises([str(h5), "negative count -7"]):
        sio.read_10x_h5(h5)


def test_10x_h5_non_numeric_counts(tmp_path):
    e = fx.write_visium(tmp_path / "s")
    h5 = e.path / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "a") as f:
        n = f["matrix/data"].shape[0]
        del f["matrix/data"]
        f["matrix/data"] = np.array(["7"] * n, dtype="S")
    with raises([str(h5), "non-numeric counts"]):
        sio.read_10x_h5(h5)


def test_10x_h5_missing_coordinates(tmp_path):
    e = fx.write_visium(tmp_path / "s", version="list_csv")
    pos = e.extra["positions"].copy()
    pos.loc[pos["barcode"] == e.barcodes[0], "pxl_row_in_fullres"] = np.nan
    path = rewrite_positions(e, pos, version="list_csv")
    with raises([str(path), "missing coordinate", repr(e.barcodes[0])]):
        sio.read_10x_h5(e.path / "filtered_feature_bc_matrix.h5")


# --- h5ad ----------------------------------------------------------------------------------------------
def test_read_h5ad_counts_layer_and_uns_rename(tmp_path):
    e = fx.write_h5ad(tmp_path / "slice1.h5ad")
    adata = sio.read_h5ad(e.path)
    assert_contract(adata, e, "slice1")
    assert list(adata.uns["spatial"]) == ["slice1"]
    assert adata.uns["spatialdomains"]["read"]["counts_from"] == "layers['counts']"
    assert adata.uns["spatialdomains"]["read"]["renamed_uns_spatial"] == "old_id"
    assert list(adata.obs["layer"].astype(str)) == e.extra["layer"]


def test_read_h5ad_x_as_counts_and_extra_columns(tmp_path, warnings_log):
    e = fx.write_h5ad(tmp_path / "a.h5ad", counts_layer=False, spatial_columns=3)
    adata = sio.read_h5ad(e.path, library_id="L")
    assert_contract(adata, e, "L")
    assert adata.uns["spatialdomains"]["read"]["counts_from"] == "X"
    assert any("3 columns" in m for m in warnings_log)
    assert not any("non-integer" in m for m in warnings_log)


def test_read_h5ad_non_integer_x_warns(tmp_path, warnings_log):
    import anndata as ad

    a = ad.AnnData(X=np.full((3, 2), 0.5, dtype=np.float32))
    a.obsm["spatial"] = np.zeros((3, 2))
    a.write_h5ad(tmp_path / "n.h5ad")
    sio.read_h5ad(tmp_path / "n.h5ad")
    assert any("non-integer" in m for m in warnings_log)


def test_h5ad_missing_file(tmp_path):
    with raises([str(tmp_path / "x.h5ad"), "h5ad file not found"]):
        sio.read_h5ad(tmp_path / "x.h5ad")


def test_h5ad_without_spatial_names_file(tmp_path):
    e = fx.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    a = ad.read_h5ad(e.path)
    del a.obsm["spatial"]
    a.obsm["X_umap"] = np.zeros((a.n_obs, 2))
    a.write_h5ad(e.path)
    with raises([str(e.path), "no obsm['spatial']", "X_umap"]):
        sio.read_h5ad(e.path)


def test_h5ad_missing_coordinates(tmp_path):
    e = fx.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    a = ad.read_h5ad(e.path)
    a.obsm["spatial"][4, 1] = np.nan
    a.write_h5ad(e.path)
    with raises([str(e.path), "missing coordinates", "'cell4'"]):
        sio.read_h5ad(e.path)


def test_h5ad_non_numeric_coordinates(tmp_path):
    e = fx.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    a = ad.read_h5ad(e.path)
    a.obsm["spatial"] = np.array([["a", "b"]] * a.n_obs)
    a.write_h5ad(e.path)
    with raises([str(e.path), "non-numeric coordinates"]):
        sio.read_h5ad(e.path)


def test_h5ad_negative_counts(tmp_path):
    e = fx.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    a = ad.read_h5ad(e.path)
    c = a.layers["counts"].toarray()
    c[1, 2] = -2
    a.layers["counts"] = sp.csr_matrix(c)
    a.write_h5ad(e.path)
    with raises([str(e.path), "negative count -2 in layers['counts']", "'cell1'", "'Gene3'"]):
        sio.read_h5ad(e.path)


def test_h5ad_several_slices_refused(tmp_path):
    e = fx.write_h5ad(tmp_path / "a.h5ad")
    import anndata as ad

    a = ad.read_h5ad(e.path)
    a.obs["slice"] = ["s1", "s2", "s3"] * 3
    a.write_h5ad(e.path)
    with raises([str(e.path), "holds 3 slices"]):
        sio.read_h5ad(e.path)


def test_h5ad_corrupt(tmp_path):
    (tmp_path / "bad.h5ad").write_text("nope")
    with raises([str(tmp_path / "bad.h5ad"), "cannot be read as h5ad"]):
        sio.read_h5ad(tmp_path / "bad.h5ad")


# --- Xenium ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cells_format", ["parquet", "csv.gz"])
def test_read_xenium(tmp_path, cells_format):
    e = fx.write_xenium(tmp_path / "xen_out", cells_format=cells_format)
    adata = sio.read_xenium(e.path)
    assert_contract(adata, e, "xen_out", tmp_path=tmp_path)
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["coordinate_unit"] == "micron" and rec["pixel_size"] == 0.2125
    assert rec["dropped_features"]["negative_control_probe"]["n_features"] == 2
    assert rec["dropped_features"]["negative_control_codeword"]["n_features"] == 1
    assert rec["dropped_features"]["unassigned_codeword"]["names"] == ["UnassignedCodeword_0001"]
    assert rec["dropped_cells"]["not_in_cells_table"] == 0
    np.testing.assert_array_equal(adata.obs["dropped_negative_control_probe_counts"],
                                  e.extra["control_counts"][:, :2].sum(1))
    assert (adata.var["feature_types"] == "Gene Expression").all()
    np.testing.assert_allclose(adata.obs["cell_area"].to_numpy(dtype=float) > 0, True)
    assert "spatial" not in adata.uns


def test_read_xenium_from_h5_path(tmp_path):
    e = fx.write_xenium(tmp_path / "x", experiment=False)
    adata = sio.read_xenium(e.path / "cell_feature_matrix.h5", library_id="X1")
    assert_contract(adata, e, "X1")
    assert "pixel_size" not in adata.uns["spatialdomains"]["read"]


def test_xenium_missing_matrix(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    (e.path / "cell_feature_matrix.h5").unlink()
    with raises([str(e.path / "cell_feature_matrix.h5"), "not found", "cells.parquet"]):
        sio.read_xenium(e.path)


def test_xenium_missing_cells(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    (e.path / "cells.parquet").unlink()
    with raises([str(e.path / "cells.parquet"), "cells table not found", "cells.csv.gz"]):
        sio.read_xenium(e.path)


def test_xenium_mismatched_cells(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    cells = pd.read_parquet(e.path / "cells.parquet")
    cells["cell_id"] = [f"other{i}-1" for i in range(len(cells))]
    cells.to_parquet(e.path / "cells.parquet")
    with raises([str(e.path / "cell_feature_matrix.h5"), str(e.path / "cells.parquet"),
                 f"only 0 of the matrix's {len(e.barcodes)} barcodes"]):
        sio.read_xenium(e.path)


def test_xenium_negative_counts(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    with h5py.File(e.path / "cell_feature_matrix.h5", "a") as f:
        f["matrix/data"][0] = -5
    with raises([str(e.path / "cell_feature_matrix.h5"), "negative count -5"]):
        sio.read_xenium(e.path)


def test_xenium_non_numeric_counts(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    with h5py.File(e.path / "cell_feature_matrix.h5", "a") as f:
        n = f["matrix/data"].shape[0]
        del f["matrix/data"]
        f["matrix/data"] = np.array([b"a"] * n)
    with raises([str(e.path / "cell_feature_matrix.h5"), "non-numeric counts"]):
        sio.read_xenium(e.path)


def test_xenium_missing_centroid_column(tmp_path):
    e = fx.write_xenium(tmp_path / "x", cells_format="csv.gz")
    cells = pd.read_csv(e.path / "cells.csv.gz").drop(columns="y_centroid")
    cells.to_csv(e.path / "cells.csv.gz", index=False)
    with raises([str(e.path / "cells.csv.gz"), "missing column(s) ['y_centroid']"]):
        sio.read_xenium(e.path)


def test_xenium_missing_centroid_value(tmp_path):
    e = fx.write_xenium(tmp_path / "x")
    cells = pd.read_parquet(e.path / "cells.parquet")
    cells.loc[cells["cell_id"] == e.barcodes[4], "x_centroid"] = np.nan
    cells.to_parquet(e.path / "cells.parquet")
    with raises([str(e.path / "cells.parquet"), "missing coordinate", "'x_centroid'", repr(e.barcodes[4])]):
        sio.read_xenium(e.path)


# --- CosMx ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_read_cosmx(tmp_path, gz):
    e = fx.write_cosmx(tmp_path / "cosmx_run", gz=gz)
    adata = sio.read_cosmx(e.path)
    assert_contract(adata, e, "cosmx_run", tmp_path=tmp_path)
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["dropped_cells"]["background"] == e.extra["background_rows"] == 2
    assert rec["dropped_cells"]["background_counts"] == e.extra["background_counts"]
    assert rec["dropped_features"]["negprb"]["names"] == ["NegPrb1", "NegPrb2"]
    assert rec["dropped_features"]["systemcontrol"]["n_features"] == 1
    np.testing.assert_array_equal(adata.obs["dropped_negprb_counts"], e.extra["control_counts"][:, :2].sum(1))
    np.testing.assert_array_equal(adata.obs["dropped_systemcontrol_counts"], e.extra["control_counts"][:, 2])
    assert "Area" in adata.obs and not any(v.startswith(("NegPrb", "SystemControl")) for v in adata.var_names)


def test_read_cosmx_from_expression_file(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    assert_contract(sio.read_cosmx(e.path / "Run5629_S1_exprMat_file.csv", library_id="C"), e, "C")


def test_cosmx_missing_expression(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    (e.path / "Run5629_S1_exprMat_file.csv").unlink()
    with raises([str(e.path), "no *exprMat_file.csv expression matrix file", "CenterX_global_px"]):
        sio.read_cosmx(e.path)


def test_cosmx_missing_metadata(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    (e.path / "Run5629_S1_metadata_file.csv").unlink()
    with raises([str(e.path), "no *metadata_file.csv cell metadata file"]):
        sio.read_cosmx(e.path)


def test_cosmx_two_slides_in_one_dir(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    shutil.copy(e.path / "Run5629_S1_exprMat_file.csv", e.path / "Run5629_S2_exprMat_file.csv")
    with raises([str(e.path), "2 *exprMat_file.csv files"]):
        sio.read_cosmx(e.path)


def test_cosmx_mismatched_cells(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    meta_path = e.path / "Run5629_S1_metadata_file.csv"
    meta = pd.read_csv(meta_path)
    meta["fov"] += 10
    meta.to_csv(meta_path, index=False)
    with raises([str(e.path / "Run5629_S1_exprMat_file.csv"), str(meta_path),
                 f"only 0 of the matrix's {len(e.barcodes)} barcodes"]):
        sio.read_cosmx(e.path)


@pytest.mark.parametrize("value, problem", [("lots", "non-numeric count 'lots'"), ("-4", "negative count -4"),
                                            ("", "missing count")])
def test_cosmx_bad_counts(tmp_path, value, problem):
    e = fx.write_cosmx(tmp_path / "c")
    path = e.path / "Run5629_S1_exprMat_file.csv"
    expr = pd.read_csv(path, dtype=str)
    expr.loc[3, "Gene4"] = value  # fov 1, cell_ID 3 -> line 5
    expr.to_csv(path, index=False)
    with raises([str(path), problem, "'Gene4'", "'3_1'", "line 5"]):
        sio.read_cosmx(e.path)


def test_cosmx_missing_coordinate_column(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    meta_path = e.path / "Run5629_S1_metadata_file.csv"
    pd.read_csv(meta_path).drop(columns="CenterY_global_px").to_csv(meta_path, index=False)
    with raises([str(meta_path), "missing column(s) ['CenterY_global_px']"]):
        sio.read_cosmx(e.path)


def test_cosmx_missing_coordinate_value(tmp_path):
    e = fx.write_cosmx(tmp_path / "c")
    meta_path = e.path / "Run5629_S1_metadata_file.csv"
    meta = pd.read_csv(meta_path)
    meta.loc[(meta["fov"] == 2) & (meta["cell_ID"] == 4), "CenterX_global_px"] = np.nan
    meta.to_csv(meta_path, index=False)
    with raises([str(meta_path), "missing coordinate", "'CenterX_global_px'", "'4_2'"]):
        sio.read_cosmx(e.path)


# --- tables -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("xy_names", [("x", "y"), ("X", "Y"), ("xcoord", "ycoord"), ("x_centroid", "y_centroid"),
                                      ("imagecol", "imagerow"), ("center_x", "center_y")])
def test_read_table_coordinate_names(tmp_path, xy_names):
    e = fx.write_table(tmp_path / "t", xy_names=xy_names)
    adata = sio.read_table(e.extra["counts_file"], e.extra["coords_file"])
    assert_contract(adata, e, "counts")
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["coordinate_columns"] == list(xy_names) and rec["orientation"] == "spots x genes"
    assert rec["coordinate_unit"] == "as in file"


def test_read_table_genes_by_spots_tsv_autodetected(tmp_path):
    e = fx.write_table(tmp_path / "t", counts_name="dge.tsv.gz", coords_name="bead_locations.csv",
                       genes_by_spots=True, xy_names=("xcoord", "ycoord"))
    adata = sio.read_table(e.extra["counts_file"], e.extra["coords_file"], library_id="puck1")
    assert_contract(adata, e, "puck1", tmp_path=tmp_path)
    assert adata.uns["spatialdomains"]["read"]["orientation"] == "genes x spots"


def test_read_table_transpose_forced(tmp_path):
    e = fx.write_table(tmp_path / "t", genes_by_spots=True)
    adata = sio.read_table(e.extra["counts_file"], e.extra["coords_file"], transpose=True)
    assert_contract(adata, e, "counts")
    with raises([str(e.extra["counts_file"]), "only 0 of the matrix's 5 barcodes"]):
        sio.read_table(e.extra["counts_file"], e.extra["coords_file"], transpose=False)


def test_read_table_r_style_header(tmp_path):
    e = fx.write_table(tmp_path / "t", r_style_header=True)
    assert_contract(sio.read_table(e.extra["counts_file"], e.extra["coords_file"]), e, "counts")


def test_read_table_headerless_coordinates(tmp_path):
    e = fx.write_table(tmp_path / "t", coords_header=False)
    assert_contract(sio.read_table(e.extra["counts_file"], e.extra["coords_file"]), e, "counts")


@pytest.mark.parametrize("gz, prefix", [(True, ""), (False, "GSM1_")])
def test_read_table_mtx(tmp_path, gz, prefix):
    e = fx.write_mtx(tmp_path / "mtxdir", gz=gz, prefix=prefix)
    adata = sio.read_table(e.path, e.path / "spatial.csv")
    assert_contract(adata, e, "mtxdir", tmp_path=tmp_path)
    assert adata.uns["spatialdomains"]["read"]["coordinate_columns"] == ["imagecol", "imagerow"]
    assert_contract(sio.read_table(e.extra["matrix"], e.path / "spatial.csv"), e, "mtxdir")


def test_read_table_pairs_by_sample_prefix(tmp_path):
    e1 = fx.write_table(tmp_path / "d", counts_name="s1_counts.csv", coords_name="s1_coords.csv", seed=1)
    fx.write_table(tmp_path / "d", counts_name="s2_counts.csv", coords_name="s2_coords.csv", seed=2,
                   xy_names=("X", "Y"))
    adata = sio.read_table(tmp_path / "d" / "s1_counts.csv")
    assert_contract(adata, e1, "s1_counts")
    assert adata.uns["spatialdomains"]["read"]["files"][1].endswith("s1_coords.csv")


def test_read_table_directory_pair(tmp_path):
    e = fx.write_table(tmp_path / "d", counts_name="expression.csv", coords_name="spatial.csv")
    (tmp_path / "d" / "labels.csv").write_text("barcode,label\n")
    assert_contract(sio.read_table(tmp_path / "d"), e, "expression")


def test_table_missing_counts(tmp_path):
    e = fx.write_table(tmp_path / "t")
    with raises([str(tmp_path / "t" / "nope.csv"), "not found"]):
        sio.read_table(tmp_path / "t" / "nope.csv", e.extra["coords_file"])


def test_table_missing_coordinates_file(tmp_path):
    e = fx.write_table(tmp_path / "t")
    e.extra["coords_file"].unlink()
    with raises([str(e.extra["counts_file"]), "cannot tell which coordinates file", "coords.csv"]):
        sio.read_table(e.extra["counts_file"])
    with raises([str(tmp_path / "t" / "coords.csv"), "coordinates table not found"]):
        sio.read_table(e.extra["counts_file"], tmp_path / "t" / "coords.csv")


def test_table_directory_with_two_counts_files(tmp_path):
    fx.write_table(tmp_path / "d", counts_name="a_counts.csv")
    fx.write_table(tmp_path / "d", counts_name="b_counts.csv", coords_name="coords.csv")
    with raises([str(tmp_path / "d"), "expected exactly one counts file and one coordinates file",
                 "a_counts.csv", "b_counts.csv"]):
        sio.read_table(tmp_path / "d")


def test_table_mismatched_barcodes(tmp_path):
    e = fx.write_table(tmp_path / "t")
    coords = pd.read_csv(e.extra["coords_file"])
    coords["barcode"] = "x_" + coords["barcode"]
    coords.to_csv(e.extra["coords_file"], index=False)
    with raises([str(e.extra["counts_file"]), str(e.extra["coords_file"]), "only 0 of the matrix's 12 barcodes",
                 "'bead_0000'", "'x_bead_"]):
        sio.read_table(e.extra["counts_file"], e.extra["coords_file"])


@pytest.mark.parametrize("value, problem", [("n/a!", "non-numeric count 'n/a!'"), ("-1", "negative count -1"),
                                            ("", "missing count")])
@pytest.mark.parametrize("genes_by_spots", [False, True])
def test_table_bad_counts_name_column_and_row(tmp_path, value, problem, genes_by_spots):
    e = fx.write_table(tmp_path / "t", genes_by_spots=genes_by_spots)
    path = e.extra["counts_file"]
    df = pd.read_csv(path, index_col=0, dtype=str)
    row, col = (("Gene3", "bead_0007") if genes_by_spots else ("bead_0007", "Gene3"))
    df.loc[row, col] = value
    df.to_csv(path)
    line = (2 + 2) if genes_by_spots else (2 + 7)
    with raises([str(path), problem, f"column {col!r}", f"row {row!r}", f"line {line}"]):
        sio.read_table(path, e.extra["coords_file"])


@pytest.mark.parametrize("value, problem", [("", "missing coordinate"), ("left", "non-numeric coordinate 'left'")])
def test_table_bad_coordinates(tmp_path, value, problem):
    e = fx.write_table(tmp_path / "t")
    coords = pd.read_csv(e.extra["coords_file"], dtype=str)
    coords.loc[coords["barcode"] == "bead_0005", "y"] = value
    coords.to_csv(e.extra["coords_file"], index=False)
    with raises([str(e.extra["coords_file"]), problem, "column 'y'", "'bead_0005'"]):
        sio.read_table(e.extra["counts_file"], e.extra["coords_file"])


def test_table_unrecognised_coordinate_columns(tmp_path):
    e = fx.write_table(tmp_path / "t", xy_names=("east", "north"))
    with raises([str(e.extra["coords_file"]), "no coordinate columns", "'east'", "x_centroid/y_centroid",
                 "imagecol/imagerow"]):
        sio.read_table(e.extra["counts_file"], e.extra["coords_file"])


def test_table_duplicate_barcodes(tmp_path):
    e = fx.write_table(tmp_path / "t")
    text = e.extra["counts_file"].read_text().splitlines()
    text.append(text[1])
    e.extra["counts_file"].write_text("\n".join(text) + "\n")
    with raises([str(e.extra["counts_file"]), "duplicated barcode", "'bead_0000'"]):
        sio.read_table(e.extra["counts_file"], e.extra["coords_file"])


def test_mtx_missing_barcodes(tmp_path):
    e = fx.write_mtx(tmp_path / "m")
    (e.path / "barcodes.tsv.gz").unlink()
    with raises([str(e.path / "barcodes.tsv"), "not found", "matrix.mtx"]):
        sio.read_table(e.path, e.path / "spatial.csv")


def test_mtx_negative_counts(tmp_path):
    e = fx.write_mtx(tmp_path / "m", gz=False)
    lines = (e.path / "matrix.mtx").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if not ln.startswith("%")) + 1  # first entry after the size line
    r, c, _ = lines[i].split()
    lines[i] = f"{r} {c} -9"
    (e.path / "matrix.mtx").write_text("\n".join(lines) + "\n")
    with raises([str(e.path / "matrix.mtx"), "negative count -9", f"'spot{int(c) - 1}'", f"'Gene{r}'"]):
        sio.read_table(e.path, e.path / "spatial.csv")


def test_mtx_non_numeric(tmp_path):
    e = fx.write_mtx(tmp_path / "m", gz=False)
    text = (e.path / "matrix.mtx").read_text().splitlines()
    text[-1] = " ".join(text[-1].split()[:2] + ["abc"])
    (e.path / "matrix.mtx").write_text("\n".join(text) + "\n")
    with raises([str(e.path / "matrix.mtx"), "cannot be read as a Matrix Market file"]):
        sio.read_table(e.path, e.path / "spatial.csv")


# --- dispatcher ----------------------------------------------------------------------------------------------
def _fixture(kind: str, tmp_path):
    """(path to give read(), Expected, detected format, default library id)."""
    if kind == "visium":
        e = fx.write_visium(tmp_path / "V1")
        return tmp_path / "V1", e, "visium"
    if kind == "visium_hd":
        e = fx.write_visium_hd(tmp_path / "HD1")[8]
        return tmp_path / "HD1", e, "visium_hd"
    if kind == "10x_h5":
        e = fx.write_visium(tmp_path / "H1")
        return e.path / "filtered_feature_bc_matrix.h5", e, "10x_h5"
    if kind == "h5ad":
        e = fx.write_h5ad(tmp_path / "a.h5ad")
        return e.path, e, "h5ad"
    if kind == "xenium":
        e = fx.write_xenium(tmp_path / "X1")
        return e.path, e, "xenium"
    if kind == "cosmx":
        e = fx.write_cosmx(tmp_path / "C1")
        return e.path, e, "cosmx"
    if kind == "table":
        e = fx.write_table(tmp_path / "T1")
        return e.path, e, "table"
    if kind == "table_file":
        e = fx.write_table(tmp_path / "T2", counts_name="sampleA_counts.tsv", coords_name="sampleA_spatial.csv")
        return e.extra["counts_file"], e, "table"
    if kind == "mtx":
        e = fx.write_mtx(tmp_path / "M1")
        return e.path, e, "table"
    raise ValueError(kind)


KINDS = ["visium", "visium_hd", "10x_h5", "h5ad", "xenium", "cosmx", "table", "table_file", "mtx"]


@pytest.mark.parametrize("kind", KINDS)
def test_detect_format(tmp_path, kind):
    path, _e, fmt = _fixture(kind, tmp_path)
    assert sio.detect_format(path) == fmt


@pytest.mark.parametrize("kind", KINDS)
def test_read_dispatch_contract(tmp_path, kind):
    path, e, fmt = _fixture(kind, tmp_path)
    adata = sio.read(path, library_id="sampleX")
    assert_contract(adata, e, "sampleX")
    assert adata.uns["spatialdomains"]["read"]["format"] == fmt
    if fmt in ("visium", "visium_hd", "10x_h5", "h5ad"):
        assert list(adata.uns["spatial"]) == ["sampleX"]


@pytest.mark.parametrize("kind, platform", [("visium", "visium"), ("visium_hd", "visium_hd"), ("xenium", "xenium"),
                                            ("cosmx", "cosmx"), ("table", "stereoseq"), ("mtx", "slideseq"),
                                            ("h5ad", "merfish"), ("h5ad", "visium"), ("10x_h5", "visium"),
                                            ("table_file", "starmap")])
def test_read_with_platform(tmp_path, kind, platform):
    path, e, _fmt = _fixture(kind, tmp_path)
    adata = sio.read(path, platform=platform, library_id="s")
    assert_contract(adata, e, "s")
    assert adata.uns["spatialdomains"]["read"]["platform"] == platform


def test_read_platform_mismatch(tmp_path):
    path, _e, _ = _fixture("xenium", tmp_path)
    with raises([str(path), "platform 'visium'", "Xenium output"]):
        sio.read(path, platform="visium")


def test_read_unknown_platform(tmp_path):
    path, _e, _ = _fixture("h5ad", tmp_path)
    with raises(["unknown platform 'seqfish'", "visium_hd"]):
        sio.read(path, platform="seqfish")
    assert "platform" not in sio.read(path, platform="").uns["spatialdomains"]["read"]  # empty cell = not given


def test_read_platform_names_expected_files_for_empty_dir(tmp_path):
    (tmp_path / "outs").mkdir()
    with raises(["filtered_feature_bc_matrix.h5", "not found", "Space Ranger"]):
        sio.read(tmp_path / "outs", platform="visium")
    with raises(["no binned_outputs/"]):
        sio.read(tmp_path / "outs", platform="visium_hd")
    with raises(["cell_feature_matrix.h5"]):
        sio.read(tmp_path / "outs", platform="xenium")
    with raises(["exprMat_file.csv"]):
        sio.read(tmp_path / "outs", platform="cosmx")


def test_read_unrecognised(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.md").write_text("x")
    with raises([str(tmp_path / "d"), "cannot tell the data format", "notes.md"]):
        sio.read(tmp_path / "d")
    with raises([str(tmp_path / "missing"), "not found"]):
        sio.read(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["visium_hd", "table", "xenium"])
def test_read_tar_gz_dispatch(tmp_path, kind):
    path, e, fmt = _fixture(kind, tmp_path)
    src = path if path.is_dir() else path.parent
    archive = fx.make_tar_gz(src, tmp_path / "packed.tar.gz")
    adata = sio.read(archive, library_id="P")
    assert_contract(adata, e, "P")
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["format"] == fmt and rec["source"] == str(archive)
    assert all(f.startswith(f"{archive}:") for f in rec["files"])
    assert_contract(sio.read(archive), e, "packed")  # default slice id: the archive's name


def test_read_image_path_recorded(tmp_path):
    path, e, _ = _fixture("table", tmp_path)
    img = fx.write_png(tmp_path / "he.png", (10, 10), (1, 2, 3))
    adata = sio.read(path, library_id="s", image=img)
    assert adata.uns["spatial"]["s"]["metadata"]["source_image_path"] == str(img.resolve())
    vpath, _e, _ = _fixture("visium", tmp_path)
    adata = sio.read(vpath, library_id="v", image=img)
    slot = adata.uns["spatial"]["v"]
    assert slot["metadata"]["source_image_path"] == str(img.resolve()) and "hires" in slot["images"]
    with raises([str(tmp_path / "none.tif"), "H&E image not found"]):
        sio.read(path, image=tmp_path / "none.tif")


# --- truth -------------------------------------------------------------------------------------------------
def test_truth_from_obs_column(tmp_path):
    path, e, _ = _fixture("h5ad", tmp_path)
    import anndata as ad

    a = ad.read_h5ad(path)
    a.obs["layer_num"] = [1.0, 2.0, np.nan] * 3
    a.obs["layer_cat"] = pd.Categorical([3.0, np.nan, 4.0] * 3)
    a.write_h5ad(path)
    adata = sio.read(path, truth="layer_num")
    truth = adata.obs["truth"]
    assert isinstance(truth.dtype, pd.CategoricalDtype) and list(truth.cat.categories) == ["1", "2"]
    assert truth.isna().sum() == 3 and truth.iloc[0] == "1"
    assert adata.uns["spatialdomains"]["read"]["truth"]["n_unlabelled"] == 3
    truth = sio.read(path, truth="layer_cat").obs["truth"]
    assert list(truth.cat.categories) == ["3", "4"] and truth.isna().sum() == 3


def test_truth_from_csv_with_header(tmp_path, warnings_log):
    path, e, _ = _fixture("visium", tmp_path)
    labels = pd.DataFrame({"barcode": e.barcodes[:10] + ["AAAA-1", "CCCC-1"],
                           "layer": [f"L{i % 3}" for i in range(10)] + ["L9", "L9"]})
    labels.to_csv(tmp_path / "truth.csv", index=False)
    adata = sio.read(path, truth=tmp_path / "truth.csv")
    truth = adata.obs["truth"]
    assert list(truth.iloc[:10]) == [f"L{i % 3}" for i in range(10)]
    assert truth.iloc[10:].isna().all()
    assert list(truth.cat.categories) == ["L0", "L1", "L2"]
    assert any("2 barcodes of the truth file are not in the data" in m for m in warnings_log)
    summary = adata.uns["spatialdomains"]["read"]["truth"]
    assert summary["n_truth_barcodes_not_in_data"] == 2 and summary["n_labelled"] == 10


def test_truth_from_tsv_without_header(tmp_path):
    path, e, _ = _fixture("table", tmp_path)
    (tmp_path / "truth.tsv").write_text("".join(f"{b}\tdomain {i % 2}\n" for i, b in enumerate(e.barcodes)))
    adata = sio.read(path, truth=str(tmp_path / "truth.tsv"))
    assert list(adata.obs["truth"]) == [f"domain {i % 2}" for i in range(len(e.barcodes))]


def test_truth_conflicting_labels(tmp_path):
    path, e, _ = _fixture("table", tmp_path)
    (tmp_path / "t.csv").write_text(f"{e.barcodes[0]},A\n{e.barcodes[0]},B\n")
    with raises([str(tmp_path / "t.csv"), repr(e.barcodes[0]), "conflicting labels"]):
        sio.read(path, truth=tmp_path / "t.csv")


def test_truth_neither_column_nor_file(tmp_path):
    path, e, _ = _fixture("table", tmp_path)
    with raises(["truth 'Region'", "neither a column", "'z'"]):
        sio.read(path, truth="Region")


def test_truth_file_wrong_width_and_no_overlap(tmp_path):
    path, e, _ = _fixture("table", tmp_path)
    (tmp_path / "t3.csv").write_text("barcode,label,score\nbead_0000,A,1\n")
    with raises([str(tmp_path / "t3.csv"), "expected 2 columns", "found 3"]):
        sio.read(path, truth=tmp_path / "t3.csv")
    (tmp_path / "t0.csv").write_text("barcode,label\nzzz,A\n")
    with raises(["no spot of the data has a label"]):
        sio.read(path, truth=tmp_path / "t0.csv")


# --- SpatialData in ---------------------------------------------------------------------------------------
def test_read_spatialdata_visium_like_store(tmp_path):
    e = fx.write_spatialdata(tmp_path / "V1.zarr")
    assert sio.detect_format(e.path) == "spatialdata"
    adata = sio.read(e.path, library_id="S1")
    assert_contract(adata, e, "S1", tmp_path=tmp_path)  # rows in table order, centroids matched by instance id
    assert list(adata.obs["layer"]) == e.extra["layer"]
    assert "region" not in adata.obs and "spot_id" not in adata.obs
    slot = adata.uns["spatial"]["S1"]
    # the hires image is a downscaled copy: coordinates stay in the store's (full-res) pixels
    assert slot["scalefactors"]["tissue_hires_scalef"] == pytest.approx(fx.SCALEFACTORS["tissue_hires_scalef"])
    assert slot["scalefactors"]["spot_diameter_fullres"] == pytest.approx(2 * e.extra["radius"])
    assert slot["images"]["hires"].shape == (300, 250, 3) and slot["images"]["hires"].dtype == np.uint8
    assert tuple(slot["images"]["hires"][5, 5]) == e.extra["colour"]
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["format"] == "spatialdata" and rec["coordinate_system"] == "global" and rec["image"] == "V1_hires_image"
    assert rec["counts_from"] == "layers['counts']" and rec["coordinate_unit"] == "pixel"


def test_read_spatialdata_image_feeds_the_image_step(tmp_path):
    from spatialdomains.image import resolve_image

    e = fx.write_spatialdata(tmp_path / "V1.zarr")
    adata = sio.read(e.path, library_id="S1")
    resolved = resolve_image(adata)
    assert resolved.scale == "hires" and resolved.factor == pytest.approx(fx.SCALEFACTORS["tissue_hires_scalef"])
    assert resolved.diameter_fullres == pytest.approx(1.5 * 2 * e.extra["radius"])  # from the circles' radius
    resolved.source.close()


@pytest.mark.parametrize("element", ["points", "polygons"])
def test_read_spatialdata_points_and_polygons_without_image(tmp_path, element):
    e = fx.write_spatialdata(tmp_path / "p.zarr", element=element, image=None, counts_in="X")
    adata = sio.read_spatialdata(e.path)
    assert_contract(adata, e, "p")  # default id: the store's name
    assert "spatial" not in adata.uns  # no image, no circle diameter
    rec = adata.uns["spatialdomains"]["read"]
    assert rec["counts_from"] == "X" and rec["coordinate_unit"] == "global"


def test_read_spatialdata_fullres_image_and_affine(tmp_path):
    e = fx.write_spatialdata(tmp_path / "f.zarr", image="fullres", image_name="he_full")
    adata = sio.read(e.path, library_id="F")
    assert_contract(adata, e, "F")
    slot = adata.uns["spatial"]["F"]
    assert slot["images"]["fullres"].shape == (1300, 500, 3)  # the finest level within the size budget
    small = sio.read_spatialdata(e.path, library_id="F", max_image_side=1000)
    assert small.uns["spatial"]["F"]["images"]["hires"].shape == (650, 250, 3)
    assert small.uns["spatial"]["F"]["scalefactors"]["tissue_hires_scalef"] == pytest.approx(0.5)
    # a shifted image is the finer grid: coordinates move into its pixels
    e = fx.write_spatialdata(tmp_path / "a.zarr", image="fullres", image_transform="affine")
    adata = sio.read(e.path, library_id="A")
    assert_contract(adata, e, "A")
    assert "fullres" in adata.uns["spatial"]["A"]["images"]


def test_read_spatialdata_with_platform_and_truth(tmp_path):
    e = fx.write_spatialdata(tmp_path / "V1.zarr")
    adata = sio.read(e.path, platform="visium", library_id="S1", truth="layer")
    assert list(adata.obs["truth"]) == e.extra["layer"]
    assert adata.uns["spatialdomains"]["read"]["platform"] == "visium"


def test_spatialdata_errors_name_the_store(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with raises([str(tmp_path / "empty.zarr"), "not a SpatialData store"]):
        sio.read_spatialdata(tmp_path / "empty.zarr")
    with raises([str(tmp_path / "none.zarr"), "not found"]):
        sio.read_spatialdata(tmp_path / "none.zarr")
    import spatialdata as sd

    e = fx.write_spatialdata(tmp_path / "V1.zarr")
    sdata = sd.read_zarr(e.path)
    del sdata.tables["table"]
    sdata.write(tmp_path / "notable.zarr")
    with raises([str(tmp_path / "notable.zarr"), "has no table", "V1_spots"]):
        sio.read(tmp_path / "notable.zarr")
    sdata = sd.read_zarr(e.path)
    sdata.tables["table"].obs["spot_id"] = np.arange(len(e.barcodes))  # ids the circles do not have
    sdata.write(tmp_path / "badids.zarr")
    with raises([str(tmp_path / "badids.zarr"), f"{len(e.barcodes)} rows of table 'table'", "'V1_spots'",
                 "'spot_id'"]):
        sio.read(tmp_path / "badids.zarr")
    sdata = sd.read_zarr(e.path)
    sdata.tables["other"] = sdata.tables.pop("table")
    sdata.tables["more"] = sdata.tables["other"].copy()
    sdata.write(tmp_path / "two.zarr")
    with raises([str(tmp_path / "two.zarr"), "2 tables", "'other'", "'more'"]):
        sio.read(tmp_path / "two.zarr")
    sdata = sd.read_zarr(e.path)
    c = sdata.tables["table"].layers["counts"].toarray()
    c[3, 1] = -1
    sdata.tables["table"].layers["counts"] = sp.csr_matrix(c)
    sdata.write(tmp_path / "neg.zarr")
    with raises([str(tmp_path / "neg.zarr"), "negative count -1", repr(e.barcodes[3])]):
        sio.read(tmp_path / "neg.zarr")


# --- SpatialData out ---------------------------------------------------------------------------------------
METHODS_SEEDS = [("staig", 0), ("staig", 1), ("spotscape", 0)]


def _clustered_group(tmp_path, image: bool = True):
    """Two Visium slices as one group, clustered by every (method, seed) of METHODS_SEEDS: one h5ad per run."""
    import anndata as ad

    from spatialdomains.pp._prepare import concat_slices

    es = [fx.write_visium(tmp_path / f"src{i}", seed=i, images=("hires",) if image else ()) for i in (1, 2)]
    group = concat_slices([sio.read(e.path, library_id=f"slice{i}") for i, e in zip((1, 2), es)])
    rng = np.random.default_rng(0)
    paths, labels = [], {}
    for method, seed in METHODS_SEEDS:
        a = group.copy()
        genes = list(a.var_names[:5] if method == "staig" else a.var_names[2:])  # methods keep their own genes
        a = a[:, genes].copy()
        labels[(method, seed)] = rng.integers(0, 3, a.n_obs).astype(str)
        a.obs[f"domain_{method}"] = pd.Categorical(labels[(method, seed)])
        a.obsm[f"X_{method}"] = rng.normal(size=(a.n_obs, 4)).astype(np.float32)
        a.uns["spatialdomains"][f"train_{method}"] = {"seed": seed}
        path = tmp_path / f"g_{method}_s{seed}.h5ad"
        a.write_h5ad(path)
        paths.append(path)
    return paths, group, labels, es


def test_write_group_spatialdata_holds_every_run(tmp_path):
    import spatialdata as sd
    from spatialdata.transformations import get_transformation

    paths, group, labels, es = _clustered_group(tmp_path)
    out = sio.write_group_spatialdata(paths, tmp_path / "results" / "g.zarr")
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["g.zarr"]  # no temporary store left
    sdata = sd.read_zarr(out)
    table = sdata.tables["table"]
    assert list(table.obs_names) == list(group.obs_names)
    for method, seed in METHODS_SEEDS:
        assert list(table.obs[f"domain_{method}_s{seed}"].astype(str)) == list(labels[(method, seed)])
        assert table.obsm[f"X_{method}_s{seed}"].shape == (group.n_obs, 4)
    runs = table.uns["spatialdomains"]["runs"]
    assert sorted(runs) == ["domain_spotscape_s0", "domain_staig_s0", "domain_staig_s1"]
    assert runs["domain_staig_s1"]["seed"] == 1 and runs["domain_staig_s1"]["embedding_key"] == "X_staig_s1"
    assert sorted(table.var_names) == sorted(group.var_names)  # the union of the methods' genes, raw counts
    np.testing.assert_array_equal(table.layers["counts"].toarray(),
                                  group[:, list(table.var_names)].layers["counts"].toarray())
    attrs = table.uns["spatialdata_attrs"]
    assert sorted(attrs["region"]) == ["slice1_spots", "slice2_spots"]
    for i, e in zip((1, 2), es):
        s = f"slice{i}"
        spots = sdata.shapes[f"{s}_spots"]
        assert set(spots["radius"]) == {fx.SCALEFACTORS["spot_diameter_fullres"] / 2}
        rows = table.obs["region"] == f"{s}_spots"
        ids = table.obs.loc[rows, "instance_id"].to_numpy()
        centroids = sd.get_centroids(spots, coordinate_system=s).compute().loc[ids]
        np.testing.assert_allclose(centroids[["x", "y"]].to_numpy(), group.obsm["spatial"][rows.to_numpy()])
        image = sdata.images[f"{s}_image"]
        assert image.sizes["c"] == 3 and (image.sizes["y"], image.sizes["x"]) == fx.HIRES_SHAPE
        m = get_transformation(image, s).to_affine_matrix(("x", "y"), ("x", "y"))
        np.testing.assert_allclose(np.diag(m)[:2], 1 / fx.SCALEFACTORS["tissue_hires_scalef"])


def test_spatialdata_output_reads_back_per_slice(tmp_path):
    paths, group, labels, es = _clustered_group(tmp_path)
    out = sio.write_group_spatialdata(paths, tmp_path / "g.zarr")
    back = sio.read(out, library_id="slice2")
    rows = (group.obs["slice"] == "slice2").to_numpy()
    assert list(back.obs_names) == list(group.obs_names[rows])
    np.testing.assert_allclose(back.obsm["spatial"], group.obsm["spatial"][rows])
    np.testing.assert_array_equal(back.layers["counts"].toarray(),
                                  group[rows][:, list(back.var_names)].layers["counts"].toarray())
    assert list(back.obs["domain_staig_s1"].astype(str)) == list(labels[("staig", 1)][rows])
    rec = back.uns["spatialdomains"]["read"]
    assert rec["coordinate_system"] == "slice2" and rec["dropped_spots"]["other_coordinate_systems"] == rows.size - rows.sum()
    slot = back.uns["spatial"]["slice2"]
    assert slot["scalefactors"]["fiducial_diameter_fullres"] == fx.SCALEFACTORS["fiducial_diameter_fullres"]
    assert "hires" in slot["images"]
    with raises([str(out), "several coordinate systems", "slice1", "slice2"]):
        sio.read(out, library_id="other")


def test_spatialdata_output_with_sheet_image_and_without_image(tmp_path):
    import spatialdata as sd
    import tifffile

    paths, group, labels, es = _clustered_group(tmp_path, image=False)
    rgb = np.zeros((1200, 900, 3), dtype=np.uint8)
    rgb[..., 1] = 77
    tifffile.imwrite(tmp_path / "he1.tif", rgb)
    out = sio.write_group_spatialdata(paths, tmp_path / "g.zarr", images={"slice1": tmp_path / "he1.tif"})
    sdata = sd.read_zarr(out)
    assert sorted(sdata.images) == ["slice1_image"]  # slice2 had no image: none written
    img = sdata.images["slice1_image"]
    assert (img.sizes["y"], img.sizes["x"]) == (1200, 900) and int(img.sel(c="g")[10, 10]) == 77
    with raises(["slice(s) ['slice9']", "not in the group"]):
        sio.write_group_spatialdata(paths, tmp_path / "h.zarr", images={"slice9": tmp_path / "he1.tif"})


def test_spatialdata_output_refuses_runs_with_other_spots(tmp_path):
    import anndata as ad

    paths, *_ = _clustered_group(tmp_path)
    a = ad.read_h5ad(paths[1])
    a[1:].copy().write_h5ad(paths[1])
    with raises([str(paths[1]), "spots differ"]):
        sio.write_group_spatialdata(paths, tmp_path / "g.zarr")
    assert not (tmp_path / "g.zarr").exists()


def test_cli_to_spatialdata(tmp_path):
    import spatialdata as sd
    from click.testing import CliRunner

    from spatialdomains.cli import main

    paths, group, labels, es = _clustered_group(tmp_path)
    args = ["to-spatialdata", *[a for p in paths for a in ("--clustered", str(p))], "-o", str(tmp_path / "g.zarr")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert {f"domain_{m}_s{s}" for m, s in METHODS_SEEDS} <= set(sd.read_zarr(tmp_path / "g.zarr").tables["table"].obs)
    res = CliRunner().invoke(main, [*args[:-2], "--image", "slice1", "-o", str(tmp_path / "h.zarr")])
    assert res.exit_code == 2 and "expected SLICE=PATH" in res.output


def test_samplesheet_accepts_spatialdata_stores(tmp_path):
    from spatialdomains.samplesheet import validate_samplesheet

    fx.write_spatialdata(tmp_path / "with_he.zarr")
    fx.write_spatialdata(tmp_path / "no_he.zarr", image=None)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("sample,data,platform\nA,with_he.zarr,\nB,no_he.zarr,visium\n")
    rows = validate_samplesheet(sheet)
    assert [r["data"] for r in rows] == [str(tmp_path / "with_he.zarr"), str(tmp_path / "no_he.zarr")]
    assert [r["has_image"] for r in rows] == [True, False]  # the store's own RGB image, not the platform
    assert sio.spatialdata_rgb_images(tmp_path / "with_he.zarr") == ["V1_hires_image"]


@pytest.mark.parametrize("dtype, value, expected", [(np.uint16, 65535, 255), (np.float32, 0.5, 128),
                                                    (np.float32, 200.0, 200)])
def test_read_spatialdata_image_of_other_dtypes_becomes_uint8(tmp_path, dtype, value, expected):
    import spatialdata as sd
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity

    e = fx.write_spatialdata(tmp_path / "V1.zarr", image=None)
    sdata = sd.read_zarr(e.path)
    sdata.images["he"] = Image2DModel.parse(np.full((3, 20, 30), value, dtype=dtype), dims=("c", "y", "x"),
                                            c_coords=["r", "g", "b"], transformations={"global": Identity()})
    sdata.write(tmp_path / "typed.zarr")
    img = sio.read(tmp_path / "typed.zarr", library_id="T").uns["spatial"]["T"]["images"]["fullres"]
    assert img.dtype == np.uint8 and int(img[0, 0, 0]) == expected
