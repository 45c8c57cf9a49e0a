"""A Space Ranger ``outs/`` folder written from an AnnData with the Visium layout (counts in ``X`` or
``layers['counts']``, ``obsm['spatial']`` as full-res (x, y), ``obs['array_row'/'array_col']``,
``uns['spatial'][library]`` images and scalefactors), with the real file formats of
``tests/unit/_fixtures_io.py``: ``filtered_feature_bc_matrix.h5``, ``spatial/tissue_positions.csv``,
``spatial/scalefactors_json.json``, ``spatial/tissue_{hires,lowres}_image.png`` (those the AnnData has).

Used by tests/pipeline/test_resources.py (the demo slice) and by hand for the real-layout run:

    .venv/bin/python tests/pipeline/spaceranger.py ../shared/bench/data/dlpfc_151673.h5ad /tmp/dlpfc --truth-key ground_truth
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from _fixtures_io import write_10x_h5, write_positions, write_scalefactors  # noqa: E402


def write_spaceranger(h5ad: Path, root: Path, *, truth_key: str | None = None) -> tuple[Path, Path | None]:
    """Write ``root/outs/`` from ``h5ad``; with ``truth_key``, also ``root/truth.csv`` (barcode,label of the
    labelled spots). Returns the ``outs`` folder and the truth file (or None)."""
    import anndata as ad
    import cv2
    import scipy.sparse as sp

    adata = ad.read_h5ad(h5ad)
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    counts = sp.csr_matrix(counts)
    if counts.nnz and not np.allclose(counts.data, np.round(counts.data)):
        raise ValueError(f"{h5ad}: X holds no integer counts and there is no layers['counts']")
    outs = root / "outs"
    gene_ids = adata.var["gene_ids"] if "gene_ids" in adata.var else adata.var_names
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", counts.astype(np.int64), list(adata.obs_names),
                 list(map(str, gene_ids)), list(map(str, adata.var_names)), library_id=None)
    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    positions = pd.DataFrame({
        "barcode": adata.obs_names,
        "in_tissue": 1,
        "array_row": adata.obs["array_row"].to_numpy(int),
        "array_col": adata.obs["array_col"].to_numpy(int),
        "pxl_row_in_fullres": np.round(xy[:, 1]).astype(int),
        "pxl_col_in_fullres": np.round(xy[:, 0]).astype(int),
    })
    spatial = outs / "spatial"
    write_positions(spatial, positions, version="csv")
    library = next(iter(adata.uns["spatial"]))
    info = adata.uns["spatial"][library]
    write_scalefactors(spatial, {k: float(v) for k, v in info["scalefactors"].items()})
    for key, img in info.get("images", {}).items():
        img = np.asarray(img)
        if img.dtype != np.uint8:
            img = np.clip(np.round(img * 255 if img.max() <= 1 else img), 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(spatial / f"tissue_{key}_image.png"), cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR))
    truth = None
    if truth_key:
        labels = adata.obs[truth_key].dropna().astype(str)
        truth = root / "truth.csv"
        pd.DataFrame({"barcode": labels.index, "label": labels.to_numpy()}).to_csv(truth, index=False)
    (root / "source.json").write_text(json.dumps({"h5ad": str(h5ad), "n_spots": int(adata.n_obs)}) + "\n")
    return outs, truth


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5ad", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("--truth-key")
    args = parser.parse_args()
    outs, truth = write_spaceranger(args.h5ad, args.root, truth_key=args.truth_key)
    print(outs, truth or "")
