from __future__ import annotations

import time
from typing import Any, Sequence

from .. import _logging as logg
from .._compat import renamed_kwarg
from .._constants import TRUTH_KEY, domain_key, embedding_key


@renamed_kwarg("seed", "random_state")
def domains(
    slices: Sequence,
    method: str = "staig",
    *,
    n_domains: int | None = None,
    random_state: int = 0,
    device: str | None = "auto",
    platform: str = "other",
    cluster_method: str = "auto",
    refine: bool | None = None,
    truth_key: str = TRUTH_KEY,
    prep: dict[str, Any] | None = None,
    progress: bool = True,
    **config,
):
    """Prepare -> train -> cluster -> evaluate in one call (several slices = joint integration).

    ``random_state`` seeds training and clustering; ``**config`` goes to :func:`~spatialdomains.tl.fit_method`
    (method hyperparameters, ``deterministic``, checkpoint options).

    Returns ``(adata, metrics)``: the prepared group with ``obsm['X_<method>']`` and
    ``obs['domain_<method>']``, and a dict of metrics plus the wall time of each stage.
    """
    from ..cluster import cluster
    from ..metrics import evaluate
    from ..models import get_method
    from ..pp import prepare_group
    from ._train import fit_method

    spec = get_method(method)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    recipe = spec.prep_for(len(slices))
    if prep:
        recipe = recipe.replace(**prep)
    adata = prepare_group(list(slices), recipe, platform=platform)
    timings["prepare_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    fit_method(adata, method, random_state=random_state, device=device, n_domains=n_domains, progress=progress,
               **config)
    timings["train_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    if refine is None:
        refine = len(slices) == 1
    cluster(adata, n_domains, use_rep=embedding_key(method), method=cluster_method, refine=refine,
            key_added=domain_key(method), random_state=random_state)
    timings["cluster_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = evaluate(adata, embedding_key=embedding_key(method), domain_key=domain_key(method),
                       truth_key=truth_key if truth_key in adata.obs else None)
    timings["evaluate_seconds"] = time.perf_counter() - t
    metrics.update(timings)
    metrics.update(method=method, seed=random_state, n_spots=int(adata.n_obs), n_slices=len(slices))
    logg.info(f"{method}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()
                                        if k in ("ari", "nmi", "silhouette") and v is not None))
    return adata, metrics
