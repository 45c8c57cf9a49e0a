"""Does a slice's H&E image carry its domains? The label-free test behind ``image_mode="auto"`` (issue 13.1).

STAIG uses the image in two places: edges whose ends look different are dropped more often (spec A4.1), and
on one slice negatives in the same image k-means cluster are left out of the loss (spec A6 DS). Both help only
when image differences follow domain boundaries; image features that follow something else (staining,
illumination, tissue folds, or nothing -- BYOL from random weights on a 600 px lowres image) make the edge drop
and the negatives follow noise, and cost accuracy (DLPFC: median ARI 0.544 gene-only vs 0.489 with the image).

The test asks whether the image agrees with the expression at the scale of domains, without labels:

1. expression PCs of the slice (PCA of the prepared ``X``), averaged over each spot and its graph neighbours
   (a one-step graph smoothing, as a GCN layer does), clustered with k-means into ``K`` groups;
2. image PCs (``obsm['X_image']``) clustered with k-means into ``K`` groups;
3. the statistic is the adjusted Rand index between the two partitions.

Patches of neighbouring spots overlap (3.5 fiducial diameters is about three spot spacings), so any image
feature is spatially smooth, informative or not: tests of spatial autocorrelation (Moran's I, neighbour vs
random-pair distances) say "yes" for every image. Agreement with the expression is what separates an image
whose texture follows the domains from one whose texture does not. The threshold was set on synthetic
slices (informative vs uninformative texture) and the four DLPFC slices; see ``docs/methods.md``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import _logging as logg
from .._constants import IMAGE_FEATURES, SLICE_KEY, SPATIAL, SPATIAL_CONN
from .._utils import InputError, record

__all__ = ["IMAGE_MODES", "INFORMATIVE_THRESHOLD", "image_informativeness", "decide_image_mode"]

IMAGE_MODES = ("auto", "on", "off")
#: ARI between image and smoothed-expression k-means partitions above which an image counts as informative.
INFORMATIVE_THRESHOLD = 0.10
#: K of both k-means partitions when the number of domains is not given.
DEFAULT_K = 7
N_EXPRESSION_PCS = 30


def _slice_adjacency(adata, idx: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 spatial graph of the spots ``idx``: ``obsp['spatial_connectivities']``, else 6 nearest."""
    if SPATIAL_CONN in adata.obsp:
        a = sp.csr_matrix(adata.obsp[SPATIAL_CONN])[idx][:, idx]
    else:
        from sklearn.neighbors import NearestNeighbors

        xy = np.asarray(adata.obsm[SPATIAL], dtype=np.float64)[idx, :2]
        k = min(6, len(idx) - 1)
        a = NearestNeighbors(n_neighbors=k).fit(xy).kneighbors_graph(mode="connectivity")
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return sp.csr_matrix(a)


def _expression(adata, idx: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = adata.X[idx]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = np.asarray(x, dtype=np.float32)
    q = int(min(N_EXPRESSION_PCS, x.shape[0] - 1, x.shape[1]))
    return PCA(q, random_state=seed).fit_transform(x - x.mean(0))


def image_informativeness(adata, *, key: str = IMAGE_FEATURES, n_clusters: int | None = None,
                          seed: int = 0) -> dict[str, dict]:
    """Per slice (``obs['slice']``, or one), the agreement of image and expression partitions (see module doc).

    Returns ``{slice: {"statistic": ARI, "n_spots", "n_clusters"}}``. Needs ``obsm[key]``, ``obsm['spatial']``
    (or ``obsp['spatial_connectivities']``) and the expression in ``X``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    if key not in adata.obsm:
        raise InputError(f"obsm['{key}'] is missing: no image features to test")
    feats = np.asarray(adata.obsm[key], dtype=np.float64)
    slices = (adata.obs[SLICE_KEY].astype(str).to_numpy() if SLICE_KEY in adata.obs
              else np.full(adata.n_obs, "all", dtype=object))
    out = {}
    for s in dict.fromkeys(slices):
        idx = np.flatnonzero(slices == s)
        k = int(min(n_clusters or DEFAULT_K, max(2, len(idx) // 10)))
        img = feats[idx]
        if len(idx) < 20 or not np.isfinite(img).all() or np.allclose(img.std(0), 0):
            out[str(s)] = {"statistic": 0.0, "n_spots": int(len(idx)), "n_clusters": k}
            continue
        adj = _slice_adjacency(adata, idx)
        smooth = adj + sp.identity(len(idx), format="csr")
        smooth = sp.diags(1.0 / np.asarray(smooth.sum(1)).ravel()) @ smooth
        expr = smooth @ _expression(adata, idx, seed)
        lab_img = KMeans(k, n_init=4, random_state=seed).fit_predict(img)
        lab_expr = KMeans(k, n_init=4, random_state=seed).fit_predict(expr)
        out[str(s)] = {"statistic": float(adjusted_rand_score(lab_expr, lab_img)), "n_spots": int(len(idx)),
                       "n_clusters": k}
    return out


def decide_image_mode(adata, mode: str = "auto", *, key: str = IMAGE_FEATURES, n_clusters: int | None = None,
                      threshold: float = INFORMATIVE_THRESHOLD, seed: int = 0) -> dict:
    """Decide whether training uses the image features, record why in ``uns['spatialdomains']['image_mode']``.

    ``mode``: 'off' never uses them, 'on' always (error when ``obsm[key]`` is missing), 'auto' tests every slice
    (:func:`image_informativeness`) and uses the image only if **every** slice's image is informative: one model
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
                 "statistic": "ARI(k-means of image PCs, k-means of graph-smoothed expression PCs)", "slices": {}}
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
        stats = image_informativeness(adata, key=key, n_clusters=n_clusters, seed=seed)
        for s, st in stats.items():
            yes = st["statistic"] >= threshold
            rec["slices"][s] = {
                "informative": bool(yes), "statistic": round(st["statistic"], 4), "n_clusters": st["n_clusters"],
                "reason": (f"image and expression domains agree (ARI {st['statistic']:.3f} >= {threshold:g})" if yes
                           else f"image and expression domains do not agree (ARI {st['statistic']:.3f} < "
                                f"{threshold:g})")}
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
