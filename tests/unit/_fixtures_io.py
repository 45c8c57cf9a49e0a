"""Writers of small, real-format spatial datasets for the reader tests (and the pipeline tests).

Every ``write_*`` function writes into a directory it is given (``tmp_path``), needs no network, and
returns an :class:`Expected` describing what a correct reader returns: the spots kept, in order, their
counts (dense, spots x genes), gene symbols/ids and (x, y) coordinates.

Layouts follow the real tools: Cell Ranger >= 3 feature-barcode h5 (``matrix/{barcodes, data,
indices, indptr, shape, features/{id, name, feature_type, genome}}``, CSC genes x barcodes, int32
data), Space Ranger positions (``tissue_positions.csv`` with header for >= 2.0,
``tissue_positions_list.csv`` without for 1.x, ``tissue_positions.parquet`` for Visium HD),
``scalefactors_json.json``, PNG images, Xenium ``cells.parquet``/``cells.csv.gz``, CosMx flat CSVs,
10x-style MTX and tar.gz archives.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

SCALEFACTORS = {
    "tissue_hires_scalef": 0.17,
    "tissue_lowres_scalef": 0.051,
    "fiducial_diameter_fullres": 144.5,
    "spot_diameter_fullres": 89.4,
}
HD_SCALEFACTORS = {
    "spot_diameter_fullres": 8.0 / 0.274,
    "bin_size_um": 8.0,
    "microns_per_pixel": 0.274,
    "tissue_lowres_scalef": 0.0078,
    "fiducial_diameter_fullres": 1204.0,
    "tissue_hires_scalef": 0.078,
    "regist_target_img_scalef": 0.25,
}
HIRES_SHAPE = (40, 50)
LOWRES_SHAPE = (12, 15)
LIBRARY_ID = "lib_A"
SPACERANGER = "spaceranger-2.1.0"


@dataclass
class Expected:
    """What a reader should return for a written fixture."""

    path: Path
    counts: np.ndarray  #: dense spots x genes, spots in reader order
    barcodes: list[str]
    genes: list[str]  #: gene symbols (var_names before var_names_make_unique)
    xy: np.ndarray  #: (n_spots, 2) float64 (x, y)
    gene_ids: list[str] | None = None
    library_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- primitives -----------------------------------------------------------------------------------
def make_counts(n_spots: int, n_genes: int, seed: int = 0) -> np.ndarray:
    """Integer counts with zeros, every spot and gene non-empty."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, size=(n_spots, n_genes)) * (rng.random((n_spots, n_genes)) < 0.7)
    counts[np.arange(n_spots), np.arange(n_spots) % n_genes] += 1
    return counts.astype(np.int64)


def barcodes_10x(n: int, seed: int = 0, suffix: str = "-1") -> list[str]:
    rng = np.random.default_rng(seed + 1000)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        bc = "".join(rng.choice(list("ACGT"), 16)) + suffix
        if bc not in seen:
            seen.add(bc)
            out.append(bc)
    return out


def gene_table(n_genes: int, *, duplicate_symbol: bool = False) -> tuple[list[str], list[str]]:
    ids = [f"ENSG{i:011d}" for i in range(1, n_genes + 1)]
    names = [f"Gene{i}" for i in range(1, n_genes + 1)]
    if duplicate_symbol and n_genes > 2:
        names[-1] = names[0]
    return ids, names


def write_10x_h5(path: Path, counts: np.ndarray | sp.spmatrix, barcodes: Sequence[str], gene_ids: Sequence[str],
                 gene_names: Sequence[str], feature_types: Sequence[str] | None = None, *,
                 library_id: str | None = LIBRARY_ID, software_version: str | None = SPACERANGER,
                 data: np.ndarray | None = None, drop: Sequence[str] = ()) -> Path:
    """A Cell Ranger >= 3 feature-barcode h5 of ``counts`` (spots x genes).

    ``data`` replaces the stored values (to write broken files: strings, negatives); ``drop`` names
    datasets under ``matrix/`` to leave out.
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    csc = sp.csc_matrix(np.asarray(counts.todense() if sp.issparse(counts) else counts).T)  # genes x barcodes
    csc.sort_indices()
    n_genes, n_bc = csc.shape
    feature_types = list(feature_types) if feature_types is not None else ["Gene Expression"] * n_genes
    enc = lambda xs: np.array([str(x).encode() for x in xs])  # noqa: E731
    with h5py.File(path, "w") as f:
        if library_id is not None:
            f.attrs["library_ids"] = np.array([library_id.encode()])
        if software_version is not None:
            f.attrs["software_version"] = software_version.encode()
        f.attrs["chemistry_description"] = b"Visium Spatial Gene Expression"
        f.attrs["filetype"] = b"matrix"
        f.attrs["version"] = 2
        g = f.create_group("matrix")
        values = {
            "barcodes": enc(barcodes),
            "data": csc.data.astype(np.int32) if data is None else data,
            "indices": csc.indices.astype(np.int64),
            "indptr": csc.indptr.astype(np.int64),
            "shape": np.array([n_genes, n_bc], dtype=np.int32),
        }
        for key, value in values.items():
            if key not in drop:
                g.create_dataset(key, data=value)
        feats = g.create_group("features")
        fvalues = {
            "id": enc(gene_ids),
            "name": enc(gene_names),
            "feature_type": enc(feature_types),
            "genome": enc(["GRCh38"] * n_genes),
            "_all_tag_keys": enc(["genome"]),
        }
        for key, value in fvalues.items():
            if f"features/{key}" not in drop:
                feats.create_dataset(key, data=value)
    return path


def write_png(path: Path, shape: tuple[int, int], color: tuple[int, int, int]) -> Path:
    """An RGB PNG of one colour (written with OpenCV, so stored as BGR)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*shape, 3), dtype=np.uint8)
    img[:] = color
    img[0, 0] = (255, 255, 255)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def write_positions(spatial: Path, positions: pd.DataFrame, *, version: str = "csv") -> Path:
    """``positions`` (columns of a Space Ranger positions file) in one of the real layouts.

    ``version``: ``"csv"`` -> ``tissue_positions.csv`` with header (>= 2.0); ``"list_csv"`` /
    ``"list_txt"`` -> ``tissue_positions_list.csv``/``.txt`` without header (1.x); ``"parquet"`` ->
    ``tissue_positions.parquet`` (Visium HD).
    """
    spatial.mkdir(parents=True, exist_ok=True)
    if version == "csv":
        path = spatial / "tissue_positions.csv"
        positions.to_csv(path, index=False)
    elif version in ("list_csv", "list_txt"):
        path = spatial / ("tissue_positions_list.csv" if version == "list_csv" else "tissue_positions_list.txt")
        positions.to_csv(path, index=False, header=False)
    elif version == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = spatial / "tissue_positions.parquet"
        pq.write_table(pa.Table.from_pandas(positions, preserve_index=False), path)
    else:
        raise ValueError(version)
    return path


def write_scalefactors(spatial: Path, scalefactors: dict | None = None) -> Path:
    spatial.mkdir(parents=True, exist_ok=True)
    path = spatial / "scalefactors_json.json"
    path.write_text(json.dumps(scalefactors or SCALEFACTORS))
    return path


# --- Visium -----------------------------------------------------------------------------------------
def _grid_positions(barcodes: Sequence[str], n_cols: int, in_tissue: np.ndarray, *, step_row: float = 50.0,
                    step_col: float = 60.0) -> pd.DataFrame:
    n = len(barcodes)
    r = np.arange(n) // n_cols
    c = np.arange(n) % n_cols
    return pd.DataFrame({
        "barcode": list(barcodes),
        "in_tissue": in_tissue.astype(int),
        "array_row": r,
        "array_col": 2 * c + (r % 2),
        "pxl_row_in_fullres": 1000 + r * step_row,  # y: rows of the image
        "pxl_col_in_fullres": 200 + c * step_col + 0.5,  # x: columns of the image
    })


def write_visium(root: Path, *, version: str = "csv", n_rows: int = 4, n_cols: int = 5, n_genes: int = 7,
                 n_off_tissue: int = 3, images: Sequence[str] = ("hires", "lowres"), library_id: str | None = LIBRARY_ID,
                 software_version: str | None = SPACERANGER, feature_types: Sequence[str] | None = None,
                 seed: int = 0, outs: bool = True) -> Expected:
    """A Space Ranger ``outs/`` directory under ``root`` (``root/outs`` when ``outs``).

    The positions cover an ``n_rows`` x ``n_cols`` grid whose first ``n_off_tissue`` spots are off
    tissue. The h5 holds every spot but one of the in-tissue ones *and* the off-tissue spots (as a
    raw matrix would), in shuffled order: the reader must keep in-tissue spots, in matrix order.
    """
    outs_dir = root / "outs" if outs else root
    spatial = outs_dir / "spatial"
    n = n_rows * n_cols
    barcodes = barcodes_10x(n, seed)
    in_tissue = np.ones(n, dtype=int)
    in_tissue[:n_off_tissue] = 0
    positions = _grid_positions(barcodes, n_cols, in_tissue)
    rng = np.random.default_rng(seed)
    in_matrix = rng.permutation(np.delete(np.arange(n), n - 1))  # last (in-tissue) spot is not in the matrix
    ids, names = gene_table(n_genes)
    assert feature_types is None or len(feature_types) == n_genes
    counts = make_counts(len(in_matrix), n_genes, seed)
    write_10x_h5(outs_dir / "filtered_feature_bc_matrix.h5", counts, [barcodes[i] for i in in_matrix], ids, names,
                 feature_types, library_id=library_id, software_version=software_version)
    write_positions(spatial, positions, version=version)
    write_scalefactors(spatial)
    colors = {"hires": (200, 30, 10), "lowres": (10, 30, 200)}
    shapes = {"hires": HIRES_SHAPE, "lowres": LOWRES_SHAPE}
    for key in images:
        write_png(spatial / f"tissue_{key}_image.png", shapes[key], colors[key])
    keep = np.array([in_tissue[i] == 1 for i in in_matrix])
    kept = in_matrix[keep]
    xy = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=float)[kept]
    gex = np.array([t == "Gene Expression" for t in (feature_types or ["Gene Expression"] * n_genes)])
    return Expected(
        path=outs_dir,
        counts=counts[keep][:, gex],
        barcodes=[barcodes[i] for i in kept],
        genes=[g for g, k in zip(names, gex) if k],
        gene_ids=[g for g, k in zip(ids, gex) if k],
        xy=xy,
        library_id=library_id,
        extra={"positions": positions, "n_off_tissue_in_matrix": int((~keep).sum()), "colors": colors,
               "all_counts": counts, "matrix_barcodes": [barcodes[i] for i in in_matrix]},
    )


def write_feature_slice(outs: Path, name: str = "feature_slice.h5") -> Path:
    """``outs/feature_slice.h5`` as Space Ranger >= 3 writes it, reduced to its metadata attribute (the layout
    and the image registration matrices; identity here)."""
    import h5py

    identity = np.eye(3).ravel().tolist()
    hd_layout = {"file_format": "1.0", "transform": identity, "num_row": 3350, "num_col": 3350,
                 "slide_name": "H1-TEST", "spot_pitch": 2.0}
    metadata = {"hd_layout_json": json.dumps(hd_layout),
                "transform_matrices": {k: identity for k in ("spot_colrow_to_microscope_colrow",
                                                             "microscope_colrow_to_spot_colrow",
                                                             "spot_colrow_to_cytassist_colrow",
                                                             "cytassist_colrow_to_spot_colrow")}}
    outs.mkdir(parents=True, exist_ok=True)
    with h5py.File(outs / name, "w") as f:
        f.attrs["metadata_json"] = json.dumps(metadata)
        f.create_group("umi")
    return outs / name


def write_visium_hd(root: Path, *, bin_sizes: Sequence[int] = (8,), n_rows: int = 3, n_cols: int = 4,
                    n_genes: int = 6, seed: int = 1, images: Sequence[str] = ("hires", "lowres"),
                    feature_slice: bool = True) -> dict[int, Expected]:
    """Visium HD ``root/outs/binned_outputs/square_XXXum/`` for each bin size (parquet positions), and
    ``outs/feature_slice.h5`` (Space Ranger writes it; spatialdata-io needs it) unless ``feature_slice=False``.

    Scale factors are consistent as Space Ranger writes them: a bin's ``spot_diameter_fullres`` is its size
    in microns over ``microns_per_pixel``, and bins are one diameter apart."""
    if feature_slice:
        write_feature_slice(root / "outs")
    out = {}
    for size in bin_sizes:
        diameter = size / HD_SCALEFACTORS["microns_per_pixel"]
        bin_dir = root / "outs" / "binned_outputs" / f"square_{size:03d}um"
        spatial = bin_dir / "spatial"
        n = n_rows * n_cols
        barcodes = [f"s_{size:03d}um_{i // n_cols:05d}_{i % n_cols:05d}-1" for i in range(n)]
        positions = pd.DataFrame({
            "barcode": barcodes,
            "in_tissue": np.ones(n, dtype=np.int32),
            "array_row": np.arange(n) // n_cols,
            "array_col": np.arange(n) % n_cols,
            "pxl_row_in_fullres": 500.0 + (np.arange(n) // n_cols) * diameter,
            "pxl_col_in_fullres": 100.0 + (np.arange(n) % n_cols) * diameter + 0.25,
        })
        ids, names = gene_table(n_genes)
        counts = make_counts(n, n_genes, seed + size)
        write_10x_h5(bin_dir / "filtered_feature_bc_matrix.h5", counts, barcodes, ids, names,
                     software_version="spaceranger-3.0.1", library_id=None)
        write_positions(spatial, positions, version="parquet")
        write_scalefactors(spatial, {**HD_SCALEFACTORS, "bin_size_um": float(size), "spot_diameter_fullres": diameter})
        for key, shape in (("hires", HIRES_SHAPE), ("lowres", LOWRES_SHAPE)):
            if key in images:
                write_png(spatial / f"tissue_{key}_image.png", shape, (90, 90, 90))
        out[size] = Expected(path=bin_dir, counts=counts, barcodes=barcodes, genes=names, gene_ids=ids,
                             xy=positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=float),
                             extra={"positions": positions})
    return out


# --- Xenium -----------------------------------------------------------------------------------------
XENIUM_CONTROLS = (("NegControlProbe_00001", "Negative Control Probe"),
                   ("NegControlProbe_00002", "Negative Control Probe"),
                   ("NegControlCodeword_0500", "Negative Control Codeword"),
                   ("UnassignedCodeword_0001", "Unassigned Codeword"))


def write_xenium(root: Path, *, n_cells: int = 15, n_genes: int = 6, cells_format: str = "parquet",
                 seed: int = 2, experiment: bool = True) -> Expected:
    """Xenium outs: ``cell_feature_matrix.h5`` (genes + control probes/codewords) and the cells table.

    The cells table lists the matrix's cells in reverse order plus one cell absent from the matrix.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cell_ids = [f"{''.join(rng.choice(list('abcdefghijklmnop'), 8))}-1" for _ in range(n_cells)]
    ids, names = gene_table(n_genes)
    ids += [f"{c[0]}" for c in XENIUM_CONTROLS]
    names += [c[0] for c in XENIUM_CONTROLS]
    types = ["Gene Expression"] * n_genes + [c[1] for c in XENIUM_CONTROLS]
    counts = make_counts(n_cells, len(names), seed)
    write_10x_h5(root / "cell_feature_matrix.h5", counts, cell_ids, ids, names, types, library_id=None,
                 software_version="xenium-1.9.0")
    x = 10.0 + 3.5 * np.arange(n_cells)
    y = 800.0 - 2.25 * np.arange(n_cells)
    cells = pd.DataFrame({
        "cell_id": cell_ids + ["zzzzzzzz-1"],
        "x_centroid": np.r_[x, 1.0],
        "y_centroid": np.r_[y, 1.0],
        "transcript_counts": np.r_[counts[:, :n_genes].sum(1), 0],
        "control_probe_counts": np.r_[counts[:, n_genes:n_genes + 2].sum(1), 0],
        "cell_area": np.r_[rng.uniform(20, 80, n_cells), 10.0],
    }).iloc[::-1]
    if cells_format == "parquet":
        cells.to_parquet(root / "cells.parquet", index=False)
    else:
        cells.to_csv(root / "cells.csv.gz", index=False, compression="gzip")
    if experiment:
        (root / "experiment.xenium").write_text(json.dumps({"pixel_size": 0.2125, "run_name": "run1",
                                                            "panel_name": "test panel"}))
    return Expected(path=root, counts=counts[:, :n_genes], barcodes=cell_ids, genes=names[:n_genes],
                    gene_ids=ids[:n_genes], xy=np.column_stack([x, y]),
                    extra={"control_counts": counts[:, n_genes:], "types": types})


# --- CosMx ------------------------------------------------------------------------------------------
def write_cosmx(root: Path, *, n_fovs: int = 2, cells_per_fov: int = 5, n_genes: int = 6, seed: int = 3,
                prefix: str = "Run5629_S1_", gz: bool = False) -> Expected:
    """CosMx flat files: ``<prefix>exprMat_file.csv`` (with a background row ``cell_ID == 0`` per FOV and
    ``NegPrb``/``SystemControl`` columns) and ``<prefix>metadata_file.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    genes = [f"Gene{i}" for i in range(1, n_genes + 1)]
    controls = ["NegPrb1", "NegPrb2", "SystemControl1"]
    rows, meta = [], []
    n = n_fovs * (cells_per_fov + 1)
    counts = make_counts(n, n_genes + len(controls), seed)
    k = 0
    for fov in range(1, n_fovs + 1):
        for cid in range(0, cells_per_fov + 1):
            rows.append([fov, cid, *counts[k]])
            if cid:
                meta.append([fov, cid, 1000.0 * fov + 10.0 * cid, 5000.0 - 20.0 * cid + fov, 50.0 + cid])
            k += 1
    expr = pd.DataFrame(rows, columns=["fov", "cell_ID", *genes, *controls])
    metadata = pd.DataFrame(meta, columns=["fov", "cell_ID", "CenterX_global_px", "CenterY_global_px", "Area"])
    suffix = ".csv.gz" if gz else ".csv"
    expr.to_csv(root / f"{prefix}exprMat_file{suffix}", index=False)
    metadata.iloc[::-1].to_csv(root / f"{prefix}metadata_file{suffix}", index=False)
    cell = expr["cell_ID"].to_numpy() != 0
    names = [f"{c}_{f}" for f, c in zip(expr["fov"][cell], expr["cell_ID"][cell])]
    m = metadata.set_index(pd.Index([f"{c}_{f}" for f, c in zip(metadata["fov"], metadata["cell_ID"])])).loc[names]
    return Expected(path=root, counts=counts[cell][:, :n_genes], barcodes=names, genes=genes,
                    xy=m[["CenterX_global_px", "CenterY_global_px"]].to_numpy(dtype=float),
                    extra={"controls": controls, "control_counts": counts[cell][:, n_genes:],
                           "background_rows": int((~cell).sum()),
                           "background_counts": float(counts[~cell][:, :].sum())})


# --- tables -------------------------------------------------------------------------------------------
def write_table(root: Path, *, counts_name: str = "counts.csv", coords_name: str = "coords.csv",
                xy_names: tuple[str, str] = ("x", "y"), barcode_name: str = "barcode", genes_by_spots: bool = False,
                n_spots: int = 12, n_genes: int = 5, seed: int = 4, coords_header: bool = True,
                r_style_header: bool = False, extra_coords: int = 2) -> Expected:
    """A counts table (spots x genes, or genes x spots) and a coordinates table with ``extra_coords`` more
    barcodes than the counts (the reader ignores those). Separators follow the suffix (.tsv -> tab)."""
    root.mkdir(parents=True, exist_ok=True)
    barcodes = [f"bead_{i:04d}" for i in range(n_spots)]
    genes = [f"Gene{i}" for i in range(1, n_genes + 1)]
    counts = make_counts(n_spots, n_genes, seed)
    sep = "\t" if ".tsv" in counts_name else ","
    df = pd.DataFrame(counts, index=pd.Index(barcodes, name="barcode"), columns=genes)
    if genes_by_spots:
        df = df.T
        df.index.name = "gene"
    text = df.to_csv(sep=sep)
    if r_style_header:
        lines = text.split("\n")
        lines[0] = sep.join(lines[0].split(sep)[1:])
        text = "\n".join(lines)
    _write_text(root / counts_name, text)
    all_bc = barcodes + [f"bead_{n_spots + i:04d}" for i in range(extra_coords)]
    x = 5.0 + 1.5 * np.arange(len(all_bc))
    y = 300.0 - 0.75 * np.arange(len(all_bc))
    coords = pd.DataFrame({barcode_name: all_bc, xy_names[0]: x, xy_names[1]: y, "z": 0.0}).iloc[::-1]
    if not coords_header:
        coords = coords.drop(columns="z")
    csep = "\t" if ".tsv" in coords_name else ","
    _write_text(root / coords_name, coords.to_csv(sep=csep, index=False, header=coords_header))
    return Expected(path=root, counts=counts, barcodes=barcodes, genes=genes,
                    xy=np.column_stack([x[:n_spots], y[:n_spots]]),
                    extra={"counts_file": root / counts_name, "coords_file": root / coords_name})


def write_mtx(root: Path, *, n_spots: int = 10, n_genes: int = 5, seed: int = 5, gz: bool = True,
              coords_name: str = "spatial.csv", prefix: str = "") -> Expected:
    """A 10x-style MTX directory (genes x barcodes; ``features.tsv`` with id, name, type) + coordinates."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    barcodes = [f"spot{i}" for i in range(n_spots)]
    ids, names = gene_table(n_genes)
    counts = make_counts(n_spots, n_genes, seed)
    ext = ".gz" if gz else ""
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(counts.T))
    _write_bytes(root / f"{prefix}matrix.mtx{ext}", buf.getvalue())
    _write_text(root / f"{prefix}barcodes.tsv{ext}", "\n".join(barcodes) + "\n")
    _write_text(root / f"{prefix}features.tsv{ext}",
                "\n".join(f"{i}\t{n}\tGene Expression" for i, n in zip(ids, names)) + "\n")
    x = np.linspace(0, 90, n_spots)
    y = np.linspace(500, 400, n_spots)
    pd.DataFrame({"barcode": barcodes, "imagerow": y, "imagecol": x}).to_csv(root / coords_name, index=False)
    return Expected(path=root, counts=counts, barcodes=barcodes, genes=names, gene_ids=ids,
                    xy=np.column_stack([x, y]), extra={"matrix": root / f"{prefix}matrix.mtx{ext}"})


def write_h5ad(path: Path, *, n_spots: int = 9, n_genes: int = 4, seed: int = 6, counts_layer: bool = True,
               spatial_columns: int = 2, library_id: str = "old_id") -> Expected:
    """An ``.h5ad`` with ``layers['counts']`` (X normalised) and ``obsm['spatial']``."""
    import anndata as ad

    counts = make_counts(n_spots, n_genes, seed)
    obs = pd.DataFrame({"layer": pd.Categorical(["L1", "L2", "L3"] * (n_spots // 3) + ["L1"] * (n_spots % 3))},
                       index=[f"cell{i}" for i in range(n_spots)])
    X = counts / counts.sum(1, keepdims=True) * 100 if counts_layer else counts
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=[f"Gene{i}" for i in range(1, n_genes + 1)]))
    if counts_layer:
        adata.layers["counts"] = sp.csr_matrix(counts.astype(np.float32))
    xy = np.column_stack([np.arange(n_spots) * 2.0, np.arange(n_spots) * -1.0 + 50])
    adata.obsm["spatial"] = np.column_stack([xy] + [np.ones(n_spots)] * (spatial_columns - 2)) \
        if spatial_columns > 2 else xy
    adata.uns["spatial"] = {library_id: {"images": {}, "scalefactors": {"spot_diameter_fullres": 10.0},
                                         "metadata": {}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return Expected(path=path, counts=counts, barcodes=list(obs.index), genes=list(adata.var_names), xy=xy,
                    extra={"layer": obs["layer"].astype(str).tolist()})


# --- archives -------------------------------------------------------------------------------------------
def make_tar_gz(src: Path, archive: Path, arcname: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=arcname or src.name)
    return archive


def make_evil_tar_gz(archive: Path, kind: str = "traversal") -> Path:
    """A tar.gz with a ``../escape.txt`` member (``traversal``), an absolute path (``absolute``) or a
    symlink pointing outside (``symlink``)."""
    with tarfile.open(archive, "w:gz") as tar:
        data = b"gotcha"
        if kind == "symlink":
            info = tarfile.TarInfo("outs/link")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
            return archive
        info = tarfile.TarInfo({"traversal": "../escape.txt", "absolute": "/tmp/escape.txt"}[kind])
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode())


def _write_bytes(path: Path, data: bytes) -> None:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


# --- SpatialData ------------------------------------------------------------------------------------
def write_spatialdata(path: Path, *, n_spots: int = 12, n_genes: int = 5, seed: int = 7, image: str | None = "hires",
                      element: str = "circles", counts_in: str = "layer", cs: str = "global",
                      image_transform: str = "scale", image_name: str = "V1_hires_image") -> Expected:
    """A SpatialData store laid out as spatialdata-io writes a Visium slice.

    ``element``: ``circles`` (radius = spot diameter / 2), ``points`` or ``polygons`` (squares) annotated by
    the table; its index is a shuffled instance id, the table rows come in another order. Coordinates
    of the element are full-resolution pixels in coordinate system ``cs``. ``image``: ``hires`` (a
    downscaled copy, Scale(1 / tissue_hires_scalef) to ``cs``), ``fullres`` (identity) or None; with
    ``image_transform='affine'`` the full-resolution image is shifted by (+100, +50) in ``cs`` instead.
    ``counts_in``: ``layer`` (``layers['counts']``, X normalised) or ``X``.
    """
    import anndata as ad
    import geopandas as gpd
    import spatialdata as sd
    from shapely.geometry import Polygon
    from spatialdata.models import Image2DModel, PointsModel, ShapesModel, TableModel
    from spatialdata.transformations import Affine, Identity, Scale

    rng = np.random.default_rng(seed)
    counts = make_counts(n_spots, n_genes, seed)
    barcodes = barcodes_10x(n_spots, seed)
    xy = np.column_stack([200.0 + 60 * (np.arange(n_spots) % 4) + 0.5, 1000.0 + 50 * (np.arange(n_spots) // 4)])
    instance = rng.permutation(np.arange(100, 100 + n_spots))  # ids of the element, not positions
    order = rng.permutation(n_spots)  # element rows in another order than the table
    tx = {cs: Identity()}
    radius = SCALEFACTORS["spot_diameter_fullres"] / 2
    if element == "circles":
        el = ShapesModel.parse(xy[order], geometry=0, radius=np.full(n_spots, radius), index=instance[order],
                               transformations=tx)
    elif element == "polygons":
        polys = [Polygon([(x - 10, y - 10), (x + 10, y - 10), (x + 10, y + 10), (x - 10, y + 10)]) for x, y in xy]
        el = ShapesModel.parse(gpd.GeoDataFrame(geometry=[polys[i] for i in order], index=instance[order]),
                               transformations=tx)
    elif element == "points":
        df = pd.DataFrame({"x": xy[order, 0], "y": xy[order, 1]}, index=instance[order])
        el = PointsModel.parse(df, transformations=tx)
    else:
        raise ValueError(element)
    genes = [f"Gene{i}" for i in range(1, n_genes + 1)]
    obs = pd.DataFrame({"region": pd.Categorical(["V1_spots"] * n_spots), "spot_id": instance,
                        "layer": [f"L{i % 3}" for i in range(n_spots)]}, index=barcodes)
    X = counts / counts.sum(1, keepdims=True) * 100 if counts_in == "layer" else counts
    table = ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))
    if counts_in == "layer":
        table.layers["counts"] = sp.csr_matrix(counts.astype(np.float32))
    table = TableModel.parse(table, region="V1_spots", region_key="region", instance_key="spot_id")
    images = {}
    colour = (200, 30, 10)
    if image == "hires":
        s = SCALEFACTORS["tissue_hires_scalef"]
        arr = np.zeros((3, 300, 250), dtype=np.uint8)
        arr[:] = np.array(colour, dtype=np.uint8)[:, None, None]
        images[image_name] = Image2DModel.parse(arr, dims=("c", "y", "x"), c_coords=["r", "g", "b"],
                                                transformations={cs: Scale([1 / s, 1 / s], axes=("x", "y"))})
    elif image == "fullres":
        arr = np.zeros((3, 1300, 500), dtype=np.uint8)
        arr[:] = np.array(colour, dtype=np.uint8)[:, None, None]
        t = (Identity() if image_transform == "scale" else
             Affine(np.array([[1.0, 0, 100.0], [0, 1.0, 50.0], [0, 0, 1]]), input_axes=("x", "y"),
                    output_axes=("x", "y")))
        images[image_name] = Image2DModel.parse(arr, dims=("c", "y", "x"), c_coords=["r", "g", "b"],
                                                transformations={cs: t}, scale_factors=[2])
    kind = {"circles": "shapes", "polygons": "shapes", "points": "points"}[element]
    sdata = sd.SpatialData(images=images, tables={"table": table}, **{kind: {"V1_spots": el}})
    sdata.write(path)
    if image == "fullres" and image_transform == "affine":
        xy = xy - np.array([100.0, 50.0])  # in the image's pixels
    return Expected(path=path, counts=counts, barcodes=barcodes, genes=genes, xy=xy,
                    extra={"colour": colour, "layer": list(obs["layer"]), "radius": radius})
