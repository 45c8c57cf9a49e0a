"""Seed ensembles: one consensus labelling of a group from the domains of several seeds, scored like a seed.

A method trained with several seeds gives several labellings of the same spots; their consensus is a
result of its own (``results/<group>/<method>/consensus/``). :func:`consensus_labels` is the label
arithmetic (see its docstring); :func:`seed_consensus` reads the seeds' clustered ``.h5ad`` files (only
``obs``, ``obsm['spatial']`` and ``uns``; never ``X``), and returns the consensus domains table and
its metrics JSON, with the same label metrics ``spatialdomains evaluate`` gives a seed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import _logging as logg
from ._constants import SLICE_KEY
from ._utils import InputError

__all__ = ["CONSENSUS_SEED", "consensus_labels", "seed_consensus"]

#: the ``seed`` value of a consensus run in metrics JSONs, metrics tables and MultiQC
CONSENSUS_SEED = "consensus"


def consensus_labels(label_sets: Sequence[Any]) -> dict[str, Any]:
    """Consensus of several labellings of the same spots.

    The labelling with the highest mean ARI to the others (the medoid) is the reference; the clusters of
    every other labelling are mapped onto the reference's by the overlap-maximising assignment, and each
    spot takes the label most labellings give it (ties go to the reference). O(N x seeds) time and memory.

    Returns
    -------
    ``{"labels": (N,) str array, "reference": index of the reference labelling,
    "ari_to_each": ARI(consensus, labelling) per labelling, "pairwise": (S, S) ARI matrix}``.
    """
    from .report._data import consensus_labels as _majority

    sets = [np.asarray(lab).astype(str).reshape(-1) for lab in label_sets]
    if len({len(s) for s in sets}) > 1:
        raise InputError(f"consensus: labellings differ in length ({sorted({len(s) for s in sets})})")
    return _majority(sets)


def seed_consensus(
    clustered: Sequence[str | os.PathLike], method: str, *, group: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Consensus domains of ``method`` over the seeds held by ``clustered`` (one .h5ad per seed).

    Spots are those every file holds. Returns the domains table (index ``barcode``, columns ``slice``,
    ``domain``; the layout of ``spatialdomains cluster --domains-csv``) and the metrics: ``method``,
    ``seed`` = ``"consensus"``, ``seeds``, ``group``, ``n_spots``, ``n_domains``, ``reference_seed``,
    ``seed_ari_mean`` (mean ARI of the consensus to each seed's labels), and with truth the label
    metrics of :func:`spatialdomains.metrics.evaluate` (``ari``, ``nmi``, ``ca``, ``f1_macro``,
    ``f1_micro``, per slice with several slices).
    """
    from . import metrics as M
    from .report._data import common_spots, load_runs

    runs = [r for p in clustered for r in load_runs(p, [method])]
    if len(runs) < 2:
        raise InputError(f"consensus of {method} needs at least two seeds, got {len(runs)} clustered file(s)")
    seeds = [r.seed for r in runs]
    if len(set(seeds)) < len(seeds):
        raise InputError(f"consensus of {method}: seeds repeat across the files ({sorted(seeds)})")
    order = np.argsort(seeds, kind="stable")
    runs = common_spots([runs[i] for i in order])
    start = logg.info(f"consensus of {method} over seeds {sorted(seeds)} ({len(runs[0].obs_names)} spots)")
    res = consensus_labels([r.domains for r in runs])
    first = runs[0]
    table = pd.DataFrame({SLICE_KEY: first.slices, "domain": res["labels"]},
                         index=pd.Index(first.obs_names, name="barcode"))
    slices = sorted(dict.fromkeys(first.slices.tolist()))
    out: dict[str, Any] = {
        "method": method, "seed": CONSENSUS_SEED, "seeds": sorted(seeds), "group": group or "+".join(slices),
        "slices": slices, "n_spots": int(len(table)), "n_domains": int(table["domain"].nunique()),
        "reference_seed": int(runs[res["reference"]].seed),
        "seed_ari_mean": float(np.mean(res["ari_to_each"])),
    }
    truth = first.truth
    if truth is not None and any(t is not None for t in truth):
        lab = np.array([t is not None for t in truth])
        t, d = truth[lab].astype(str), res["labels"][lab]
        out.update(n_labelled=int(lab.sum()), n_unlabelled=int((~lab).sum()), ari=M.ari(t, d), nmi=M.nmi(t, d),
                   ca=M.clustering_accuracy(t, d), **M.f1_scores(t, d))
        if len(slices) > 1:
            sl = first.slices[lab]
            out["per_slice"] = {s: {"ari": M.ari(t[sl == s], d[sl == s]), "nmi": M.nmi(t[sl == s], d[sl == s]),
                                    "n_labelled": int((sl == s).sum())} for s in slices if (sl == s).any()}
    logg.info("    finished", time=start, deep=f"ARI to the seeds {out['seed_ari_mean']:.3f}")
    return table, out
