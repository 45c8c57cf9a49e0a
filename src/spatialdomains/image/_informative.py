"""Does a slice's H&E image carry its domains? The label-free test behind ``image_mode="auto"`` (issue 13.1).

STAIG uses the image in two places: edges whose ends look different are dropped more often (spec A4.1; without
the image the drop follows expression distances instead), and on one slice negatives in the same image k-means
cluster are left out of the loss (spec A6 DS). Both pay only when the image's differences follow the domains
at least as well as the expression's; image features that follow something else (staining, tissue edges, or
little at all: BYOL from random weights on a 600 px lowres image) make the edge drop and the negatives follow
noise (DLPFC: median ARI 0.544 gene-only vs 0.489 with the image).

The test compares the spatial structure of the image features with that of the expression **at the scale of
domains**, with a multivariate Moran's I over pairs of spots 4-6 spot spacings apart:
``I(Z) = (N / S0) tr(Z' W Z) / tr(Z' Z)`` for centred features ``Z`` and the 0/1 weights ``W`` of those pairs
(``S0`` = number of pairs), i.e. the variance-weighted mean of the per-component Moran's I. The annulus skips
nearer pairs on purpose: a patch is 3.5 fiducial diameters, about three spot spacings, so neighbouring patches
overlap and every image feature is smooth at short range, informative or not. The expression (PCs of the
prepared ``X``) is first averaged over each spot and its graph neighbours, the footprint of a patch. The
statistic is ``I(image) / max(I(expression), 0.05)``; the image counts as informative when it is >= 1, i.e.
when its domain-scale structure is at least as strong as the expression's (the floor keeps a slice whose
expression has no spatial structure from dividing by ~0). Measured (docs/methods.md): synthetic slices with
domain texture 3.5, with one texture everywhere 0.6; DLPFC lowres with random-init BYOL 0.24-0.42.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import _logging as logg
from .._constants import IMAGE_FEATURES, SLICE_KEY, SPATIAL, SPATIAL_CONN
from .._utils import InputError, record

__all__ = ["IMAGE_MODES", "INFORMATIVE_THRESHOLD", "image_informativeness", "decide_image_mode", "moran_far"]

IMAGE_MODES = ("auto", "on", "off")
#: ``I(image) / I(expression)`` at or above which a slice's image counts as informative.
INFORMATIVE_THRESHOLD = 1.0
#: Floor of the expression's Moran's I in the ratio.
MIN_EXPRESSION_I = 0.05
#: Pairs of spots this many spot spacings apart (beyond the ~3-spacing overlap of two spots' patches).
ANNULUS = (4.0, 6.0)
N_EXPRESSION_PCS = 30


def _slice_adjacency(adata, idx: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 spatial graph of the spots ``idx``: ``obsp['spatial_connectivities']``, else 6 nearest."""
    if SPATIAL_CONN in adata.obsp:
        a = sp.csr_matrix(adata.obsp[SPATIAL_CONN])[idx][:, idx]
    else:
        from sklearn.neighbors import NearestNeighbors

        xy = np.asarray(adata.obsm[SPATIAL], dtype=np.float64)[idx, :2]
        a = NearestNeighbors(n_neighbors=min(6, len(idx) - 1)).fit(xy).kneighbors_graph(mode="connectivity")
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return sp.csr_matrix(a)


def _annulus(xy: np.ndarray, adj: sp.csr_matrix) -> sp.csr_matrix:
    """0/1 weights of the pairs ``ANNULUS`` spot spacings apart (spacing = median graph edge length)."""
    from sklearn.neighbors import NearestNeighbors

    r, c = adj.nonzero()
    spacing = float(np.median(np.linalg.norm(xy[r] - xy[c], axis=1))) if len(r) else 0.0
    if not spacing > 0:
        return sp.csr_matrix((len(xy), len(xy)))
    w = NearestNeighbors(radius=ANNULUS[1] * spacing).fit(xy).radius_neighbors_graph(mode="distance")
    w.data = (w.data >= ANNULUS[0] * spacing).astype(np.float64)
    w.eliminate_zeros()
    return sp.csr_matrix(w)


def moran_far(z: np.ndarray, w: sp.csr_matrix) -> float:
    """Multivariate Moran's I ``(N / S0) tr(Z' W Z) / tr(Z' Z)`` of the columns of ``z`` under weights ``w``."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.mean(0)
    s0, ss = float(w.sum()), float((z * z).sum())
    if s0 <= 0 or ss <= 0:
        return 0.0
    return float(len(z) / s0 * (z * (w @ z)).sum() / ss)


def _expression(adata, idx: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = adata.X[idx]
    x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)
    q = int(min(N_EXPRESSION_PCS, x.shape[0] - 1, x.shape[1]))
    return PCA(q, random_state=seed).fit_transform(x - x.mean(0))


def image_informativeness(adata, *, key: str = IMAGE_FEATURES, random_state: int = 0) -> dict[str, dict]:
    """Per slice (``obs['slice']``, or one), the domain-scale Moran's I of image and expression and their ratio.

    Returns ``{slice: {"statistic": ratio, "moran_image", "moran_expression", "n_pairs", "n_spots"}}`` (see the
    module docstring). Needs ``obsm[key]``, ``obsm['spatial']``, the expression in ``X`` and, when present, the
    spatial graph ``obsp['spatial_connectivities']`` (else 6 nearest neighbours).
    """
    if key not in adata.obsm:
        raise InputError(f"obsm['{key}'] is missing: no image features to test")
    if SPATIAL not in adata.obsm:
        raise InputError(f"obsm['{SPATIAL}'] is missing: the test needs spot coordinates")
    feats = np.asarray(adata.obsm[key], dtype=np.float64)
    coords = np.asarray(adata.obsm[SPATIAL], dtype=np.float64)[:, :2]
    slices = (adata.obs[SLICE_KEY].astype(str).to_numpy() if SLICE_KEY in adata.obs
              else np.full(adata.n_obs, "all", dtype=object))
    out = {}
    for s in dict.fromkeys(slices):
        idx = np.flatnonzero(slices == s)
        img = feats[idx]
        if len(idx) < 20 or not np.isfinite(img).all():
            out[str(s)] = {"statistic": 0.0, "moran_image": 0.0, "moran_expression": None, "n_pairs": 0,
                           "n_spots": int(len(idx))}
            continue
        adj = _slice_adjacency(adata, idx)
        w = _annulus(coords[idx], adj)
        smooth = adj + sp.identity(len(idx), format="csr")
        smooth = sp.diags(1.0 / np.asarray(smooth.sum(1)).ravel()) @ smooth
        i_img = moran_far(img, w)
        i_expr = moran_far(smooth @ _expression(adata, idx, random_state), w)
        out[str(s)] = {"statistic": i_img / max(i_expr, MIN_EXPRESSION_I), "moran_image": i_img,
                       "moran_expression": i_expr, "n_pairs": int(w.nnz // 2), "n_spots": int(len(idx))}
    return out


def decide_image_mode(adata, mode: str = "auto", *, key: str = IMAGE_FEATURES,
                      threshold: float = INFORMATIVE_THRESHOLD, random_state: int = 0) -> dict:
    """Decide whether training uses the image features, record why in ``uns['spatialdomains']['image_mode']``.

    ``mode``: 'off' never uses them, 'on' always (error when ``obsm[key]`` is missing), 'auto' tests every slice
    (:func:`image_informativeness`, informative when the ratio is >= ``threshold``) and uses the image only if
    **every** slice's image is informative: one model
    is trained on the whole group, and STAIG's edge drop mixes the slices' image distances, so an uninformative
    slice would steer its own edges by noise.

    Returns the record: ``{"mode", "use_image", "reason", "threshold", "statistic": name, "slices": {slice:
    {"informative", "statistic", "reason"}}}``.
    """
    if mode not in IMAGE_MODES:
        raise InputError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, not {mode!r}")
    slices_all = (list(dict.fromkeys(adata.obs[SLICE_KEY].astype(str))) if SLICE_KEY in adata.obs else ["all"])
    have = key in adata.obsm
    rec: dict = {"mode": mode, "threshold": threshold, "key": key,
                 "statistic": f"Moran's I of image features / of graph-smoothed expression PCs, spots "
                              f"{ANNULUS[0]:g}-{ANNULUS[1]:g} spacings apart", "slices": {}}
    if mode == "on" and not have:
        raise InputError(f"image_mode='on' but obsm['{key}'] is missing: compute image features first "
                         "(spatialdomains image-features), or use image_mode auto/off")
    if not have:
        rec.update(use_image=False, reason="no image features")
        rec["slices"] = {s: {"informative": False, "reason": "no image features"} for s in slices_all}
    elif mode == "off":
        rec.update(use_image=False, reason="image_mode=off")
        rec["slices"] = {s: {"informative": None, "reason": "image_mode=off"} for s in slices_all}
    else:
        stats = image_informativeness(adata, key=key, random_state=random_state)
        for s, st in stats.items():
            yes = st["statistic"] >= threshold
            i_expr = "-" if st["moran_expression"] is None else f"{st['moran_expression']:.3f}"
            rec["slices"][s] = {
                "informative": bool(yes), "statistic": round(st["statistic"], 4),
                "moran_image": round(st["moran_image"], 4),
                "moran_expression": None if st["moran_expression"] is None else round(st["moran_expression"], 4),
                "reason": (f"the image's domain-scale structure (Moran's I {st['moran_image']:.3f}) is "
                           f"{'at least as strong as' if yes else 'weaker than'} the expression's ({i_expr}; ratio "
                           f"{st['statistic']:.2f} {'>=' if yes else '<'} {threshold:g})")}
        bad = [s for s, r in rec["slices"].items() if not r["informative"]]
        if mode == "on":
            rec.update(use_image=True, reason="image_mode=on" + (
                f" (the test would not have used it: {', '.join(bad)} uninformative)" if bad else ""))
        elif bad:
            rec.update(use_image=False, reason=(
                f"image of {', '.join(bad)} does not carry the domains" if len(rec["slices"]) == 1 else
                f"images of {len(bad)} of {len(rec['slices'])} slices ({', '.join(bad)}) do not carry the domains; "
                "the group is trained on one setting, gene-only"))
        else:
            rec.update(use_image=True, reason="every slice's image carries the domains")
    record(adata, "image_mode", rec)
    per = "; ".join(f"{s}: {r.get('statistic', '-')}" for s, r in rec["slices"].items())
    logg.info(f"image mode {mode}: {'using' if rec['use_image'] else 'not using'} the image ({rec['reason']}"
              + (f"; statistic per slice {per}" if mode != "off" and have else "") + ")")
    return rec
