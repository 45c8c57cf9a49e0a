"""Loading what the report needs (without reading X) and the label arithmetic it shows.

A :class:`Run` is one method x seed of a group: its domains, embedding, coordinates, loss history and
metrics. Only the slots the report uses are read from the h5ad (``obs``, two ``obsm`` arrays and
``uns['spatialdomains']``); the dense ``X`` is never loaded, and counts are read only for dot plots.

Consensus across seeds (:func:`consensus_labels`) is the *majority label after Hungarian alignment to a
reference seed*: the reference is the seed with the highest mean ARI to the other seeds (the medoid);
every other seed's clusters are mapped onto the reference's by the assignment that maximises the
overlap (clusters left over keep distinct new labels), and each spot takes the label most seeds give
it, ties going to the reference. Time and memory are O(N x seeds): no N x N co-association matrix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _logging as logg
from .._constants import COUNTS_LAYER, SLICE_KEY, SPATIAL, TRUTH_KEY, UNS_KEY, domain_key, embedding_key
from .._utils import InputError
from ..metrics import ari, cluster_mapping

QC_COLUMNS = ("total_counts", "n_genes_by_counts", "pct_counts_mt")


@dataclass
class Run:
    """One clustered result (method x seed) of a group."""

    method: str
    seed: int
    path: Path
    obs_names: np.ndarray
    slices: np.ndarray
    domains: np.ndarray
    spatial: np.ndarray
    truth: np.ndarray | None = None  # object array, None where unlabelled
    embedding_key: str | None = None  # obsm key of the embedding in the file (read on first use)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    qc: pd.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    n_genes: int = 0
    row_index: np.ndarray | None = None  # positions of these spots in the file (None: all, in order)

    @property
    def label(self) -> str:
        return f"{self.method} s{self.seed}"

    @property
    def embedding(self) -> np.ndarray | None:
        """``obsm['X_<method>']`` of these spots, read from the file on first use (only the runs shown need it)."""
        if self.embedding_key is None:
            return None
        if not hasattr(self, "_embedding"):
            import h5py

            with h5py.File(self.path, "r") as f:
                emb = np.asarray(_read_elem(f["obsm"][self.embedding_key]), dtype=np.float32)
            self._embedding = emb if self.row_index is None else emb[self.row_index]
        return self._embedding

    def subset(self, idx: np.ndarray) -> "Run":
        """The same run restricted to the spots ``idx`` (used to align runs on common spots)."""
        def take(a):
            return None if a is None else a[idx]

        return Run(self.method, self.seed, self.path, self.obs_names[idx], self.slices[idx], self.domains[idx],
                   self.spatial[idx], take(self.truth), self.embedding_key, self.history,
                   None if self.qc is None else self.qc.iloc[idx], self.info, self.metrics, self.n_genes,
                   idx if self.row_index is None else self.row_index[idx])


def _read_elem(group):
    try:
        from anndata.io import read_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import read_elem
    return read_elem(group)


def _seed_from_name(path: str | os.PathLike) -> int | None:
    m = re.search(r"(?:^|[_.\-/])(?:s|seed)(\d+)(?=$|[_.\-/])", Path(path).stem)
    return int(m.group(1)) if m else None


def _as_int(v) -> int | None:
    try:
        return int(np.asarray(v).item())
    except (TypeError, ValueError):
        return None


def load_runs(path: str | os.PathLike, methods: Sequence[str] | None = None) -> list[Run]:
    """Every method x seed held by one clustered h5ad (a method needs ``obs['domain_<m>']``).

    The seed comes from ``uns['spatialdomains']['train_<m>']['seed']`` (else the cluster step's seed,
    else ``s<k>``/``seed<k>`` in the file name, else 0).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable .h5ad ({err})") from None
    with f:
        obs = _read_elem(f["obs"])
        obsm_keys = set(f["obsm"].keys()) if "obsm" in f else set()
        uns = _read_elem(f["uns"][UNS_KEY]) if "uns" in f and UNS_KEY in f["uns"] else {}
        found = [c[len("domain_"):] for c in obs.columns if c.startswith("domain_")]
        if methods:
            found = [m for m in found if m in methods]
        if not found:
            raise InputError(f"{path}: no obs['domain_<method>'] column"
                             f"{' for ' + ', '.join(methods) if methods else ''}; run `spatialdomains cluster` first")
        if SPATIAL not in obsm_keys:
            raise InputError(f"{path}: obsm['spatial'] is missing (spot coordinates are needed for domain maps)")
        spatial = np.asarray(_read_elem(f["obsm"][SPATIAL]), dtype=np.float64)[:, :2]
        n_genes = int(f["var"][f["var"].attrs.get("_index", "_index")].shape[0]) if "var" in f else 0
        runs = []
        for m in found:
            emb = embedding_key(m) if embedding_key(m) in obsm_keys else None
            train = dict(uns.get(f"train_{m}", {}) or {})
            clus = dict(uns.get(f"cluster_{m}", {}) or {})
            seed = _as_int(train.get("seed"))
            if seed is None:
                seed = _as_int(clus.get("seed"))
            if seed is None:
                seed = _seed_from_name(path) or 0
            history = {str(k): np.asarray(v, dtype=float).ravel() for k, v in dict(train.pop("history", {}) or {}).items()}
            truth = None
            if TRUTH_KEY in obs and obs[TRUTH_KEY].notna().any():
                t = obs[TRUTH_KEY]
                truth = np.where(t.notna().to_numpy(), t.astype(str).to_numpy(), None).astype(object)
            qc = obs[[c for c in QC_COLUMNS if c in obs]] if any(c in obs for c in QC_COLUMNS) else None
            slices = obs[SLICE_KEY].astype(str).to_numpy() if SLICE_KEY in obs else np.full(len(obs), path.stem)
            info = {
                "backend": clus.get("backend"),
                "warning": clus.get("warning"),
                "n_domains": _as_int(clus.get("n_domains")),
                "k_selection": clus.get("k_selection"),
                "refine": clus.get("refine"),
                "train_seconds": train.get("train_seconds"),
                "device": train.get("device"),
                "image_mode": uns.get("image_mode"),  # whether training used the image, per slice and why
            }
            runs.append(Run(method=m, seed=int(seed), path=path, obs_names=obs.index.astype(str).to_numpy(),
                            slices=slices, domains=obs[domain_key(m)].astype(str).to_numpy(), spatial=spatial,
                            truth=truth, embedding_key=emb, history=history, qc=qc, info=info, n_genes=n_genes))
    return runs


def read_lognorm(path: str | os.PathLike, genes: Sequence[str]) -> tuple[sparse.csr_matrix, list[str]]:
    """Log-normalised expression (1e4 + log1p over every gene of the file) of ``genes`` present.

    The library sizes come from every gene, then only the requested columns are normalised: memory is
    the counts as stored plus spots x ``len(genes)``, never a second copy of the whole matrix.
    """
    import h5py

    from ..analysis import log_normalise

    with h5py.File(path, "r") as f:
        if "layers" not in f or COUNTS_LAYER not in f["layers"]:
            raise InputError(f"{path}: layers['counts'] is missing")
        var = _read_elem(f["var"]).index.astype(str)
        counts = _read_elem(f["layers"][COUNTS_LAYER])
    pos = {g: i for i, g in enumerate(var)}
    keep = [g for g in genes if g in pos]
    return log_normalise(counts, columns=[pos[g] for g in keep]), keep


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON ({err})") from None


def read_yaml(path: str | os.PathLike) -> Any:
    import yaml

    path = Path(path)
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: invalid YAML ({err})") from None


def read_csvs(paths: Sequence[str | os.PathLike], kind: str) -> pd.DataFrame:
    """Concatenate DEG or GO tables; each must carry ``method`` and ``seed`` columns."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except FileNotFoundError:
            raise InputError(f"{p} does not exist") from None
        except pd.errors.EmptyDataError:
            continue
        missing = [c for c in ("method", "seed", "domain") if c not in df]
        if missing and len(df):
            raise InputError(f"{p}: {kind} table lacks column(s) {missing}; write it with `spatialdomains analyse`")
        df["source"] = str(p)
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    if len(out):
        out["seed"] = out["seed"].astype(int)
        out["domain"] = out["domain"].astype(str)
    return out


def attach_metrics(runs: Sequence[Run], metrics_paths: Sequence[str | os.PathLike]) -> list[str]:
    """Give every run its metrics JSON, matched by ``method`` and seed (JSON ``seed`` key or file name).

    A method with a single run and a single metrics file needs no seed. Returns warnings.
    """
    warnings = []
    by_method: dict[str, list[tuple[int | None, dict, str]]] = {}
    for p in metrics_paths:
        m = read_json(p)
        method = m.get("method")
        if method is None:
            warnings.append(f"{p}: no 'method' key; ignored")
            continue
        seed = _as_int(m.get("seed")) if m.get("seed") is not None else _seed_from_name(p)
        by_method.setdefault(str(method), []).append((seed, m, str(p)))
    for run in runs:
        cands = by_method.get(run.method, [])
        hit = [m for s, m, _ in cands if s == run.seed]
        if not hit and len(cands) == 1 and sum(r.method == run.method for r in runs) == 1:
            hit = [cands[0][1]]
        if hit:
            run.metrics = hit[0]
        elif cands:
            warnings.append(f"no metrics JSON matches {run.label} (seeds seen: {sorted(str(s) for s, _, _ in cands)})")
    return warnings


def common_spots(runs: Sequence[Run]) -> list[Run]:
    """Restrict every run to the spots all runs share (same order as the first run)."""
    if not runs:
        return []
    shared = set(runs[0].obs_names)
    for r in runs[1:]:
        shared &= set(r.obs_names)
    if not shared:
        raise InputError("the clustered files share no spot names; are they from the same group?")
    order = [n for n in runs[0].obs_names if n in shared]
    out = []
    for r in runs:
        if len(order) == len(r.obs_names) and np.array_equal(r.obs_names, order):
            out.append(r)
            continue
        pos = pd.Index(r.obs_names).get_indexer(order)
        out.append(r.subset(pos))
    dropped = max(len(r.obs_names) for r in runs) - len(order)
    if dropped:
        logg.warning(f"report: {dropped} spot(s) are not in every clustered file; using the {len(order)} shared")
    return out


# --------------------------------------------------------------------------------------------------
# label arithmetic
# --------------------------------------------------------------------------------------------------


def codes(labels: Sequence) -> tuple[np.ndarray, list[str]]:
    """Integer codes and categories of labels in natural order (``2`` before ``10``)."""
    from ..analysis import _natural_sort

    uniq, inv = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    cats = _natural_sort(uniq)
    order = np.array([cats.index(u) for u in uniq.tolist()], dtype=np.int64)
    return order[inv.ravel()], cats


def pairwise_ari(label_sets: Sequence[np.ndarray]) -> np.ndarray:
    n = len(label_sets)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = ari(label_sets[i], label_sets[j])
    return out


def consensus_labels(label_sets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Consensus of several labellings of the same spots (see the module docstring).

    Returns ``{"labels": (N,) str array in the reference's label names (extra clusters ``"+1"``, ...),
    "reference": index of the reference labelling, "ari_to_each": list of ARI(consensus, labelling),
    "pairwise": (S, S) ARI matrix}``.
    """
    S = len(label_sets)
    if S == 0:
        raise InputError("consensus needs at least one labelling")
    pw = pairwise_ari(label_sets)
    ref = int(np.argmax(pw.sum(1))) if S > 1 else 0
    ref_codes, ref_cats = codes(label_sets[ref])
    n_ref = len(ref_cats)
    aligned = []
    extra = 0
    for s, lab in enumerate(label_sets):
        if s == ref:
            aligned.append(ref_codes)
            continue
        c, _ = codes(lab)
        mapping = cluster_mapping(ref_codes, c, n_ref, require_overlap=True)
        extra = max(extra, int(mapping.max()) + 1 - n_ref)
        aligned.append(mapping[c])
    n_lab = n_ref + extra
    N = len(ref_codes)
    rows = np.arange(N)
    votes = np.zeros(N * n_lab, dtype=np.int32)
    for a in aligned:
        votes += np.bincount(rows * n_lab + a, minlength=N * n_lab).astype(np.int32)
    votes = votes.reshape(N, n_lab)
    best = votes.max(1)
    winner = votes.argmax(1)
    tie = (votes == best[:, None]).sum(1) > 1
    ref_has_best = votes[rows, ref_codes] == best
    winner = np.where(tie & ref_has_best, ref_codes, winner)
    names = np.array(list(ref_cats) + [f"+{j + 1}" for j in range(extra)], dtype=object)
    labels = names[winner].astype(str)
    return {"labels": labels, "reference": ref, "pairwise": pw,
            "ari_to_each": [ari(labels, lab) for lab in label_sets]}


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": value}`` (lists joined) for parameter tables."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(map(str, v))
        else:
            out[key] = v
    return out


def collect_metrics(metrics_paths: Sequence[str | os.PathLike],
                    domains_paths: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """One row per run (method x seed) of a group: flattened metrics plus seed stability.

    ``seed_ari_mean`` is the mean ARI between a run's domains and those of the same method's other
    seeds (on the spots they share; empty with one seed). Runs are named by their file names,
    ``<group>_<method>_s<seed>.metrics.json`` / ``.domains.csv``.
    """
    rows = []
    for path in sorted(map(Path, metrics_paths)):
        run_id = path.name.removesuffix(".metrics.json")
        metrics = read_json(path) if path.stat().st_size else {}
        row = {"id": run_id, "seed": metrics.get("seed", _seed_from_name(run_id))}
        row.update({k: v for k, v in flatten(metrics).items() if k not in ("id", "seed")})
        rows.append(row)
    table = pd.DataFrame(rows)
    if "method" not in table:
        table["method"] = None
    labels: dict[str, pd.Series] = {}
    for path in map(Path, domains_paths):
        if path.stat().st_size:
            frame = pd.read_csv(path, dtype=str)
            keys = [c for c in ("barcode", "slice") if c in frame]
            labels[path.name.removesuffix(".domains.csv")] = frame.set_index(keys)["domain"]
    from ..consensus import CONSENSUS_SEED

    is_consensus = table["seed"].astype(str) == CONSENSUS_SEED
    stability = []
    for i, row in table.iterrows():
        mine = labels.get(row["id"])
        # a seed's peers are the method's other seeds; the consensus row is scored against every seed
        peers = table.loc[(table["method"] == row["method"]) & (table["id"] != row["id"]) & ~is_consensus, "id"]
        scores = [ari(*mine.align(labels[p], join="inner")) for p in peers if p in labels] if mine is not None else []
        stability.append(float(np.mean(scores)) if scores else row.get("seed_ari_mean"))
    table["seed_ari_mean"] = stability
    first = ["id", "method", "seed"]
    table = table[first + sorted(c for c in table.columns if c not in first)]
    # seeds in numeric order, the consensus after them
    order = table["seed"].map(lambda s: (1, 0) if str(s) == CONSENSUS_SEED else (0, int(s) if s is not None else -1))
    return table.assign(_o=order).sort_values(["method", "_o", "id"]).drop(columns="_o")
