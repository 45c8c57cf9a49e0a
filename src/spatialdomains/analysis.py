"""Domain analysis: marker genes (DEG) per domain and offline GO / gene-set enrichment.

DEG
    Each domain against all other spots, Wilcoxon rank-sum (scanpy ``rank_genes_groups``, tie-corrected)
    on log-normalised expression rebuilt from ``layers['counts']`` (library size 1e4, ``log1p``) over
    every gene present. A domain with more than ``max_spots_per_domain`` spots (default 5,000) is
    represented by a uniform seeded subsample of that many, both as the tested group and inside the
    "rest" of the other domains, so the test costs the same at 1M spots as at 35k; ``n_in`` is the
    domain's size and ``n_tested`` the spots of it that were tested. ``log2fc`` is scanpy's fold change (``log2`` of the ratio of ``expm1`` of the
    group means), ``pval_adj`` is Benjamini-Hochberg over the genes of a domain, ``pct_in``/``pct_out``
    are the fractions of spots with a non-zero count inside/outside the domain. A gene is
    ``significant`` when ``|log2fc| > logfc`` and ``pval_adj < padj``.

Enrichment
    Over-representation of each domain's significant *up-regulated* genes in the sets of a local GMT
    file (or a dict), hypergeometric test with BH correction over the terms hit, through
    :func:`gseapy.enrich` with a dict of gene sets (never a library name, so gseapy never goes online).
    The background is the tested genes that belong to at least one gene set (as clusterProfiler's
    universe); sets are restricted to the background and kept when their size lies in
    ``[min_set_size, max_set_size]``. Gene identifiers are matched between the data (``var_names`` or an
    id column such as ``var['gene_ids']``) and the gene sets: the column that overlaps the gene-set
    universe best is used, and a clear :class:`~spatialdomains._utils.InputError` is raised when even
    that overlap is below ``min_overlap`` of the tested genes.

GO files
    :func:`go_gmt_from_obo_gaf` turns a GO ontology (OBO) and an annotation file (GAF 2.x) into gene sets
    once, propagating each annotation to all ancestors through ``is_a`` and ``part_of``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _logging as logg
from ._constants import COUNTS_LAYER, UNS_KEY, domain_key
from ._utils import InputError, write_text_atomic

__all__ = [
    "DEG_COLUMNS",
    "GO_COLUMNS",
    "log_normalise",
    "rank_domain_genes",
    "domain_markers",
    "read_gmt",
    "write_gmt",
    "read_obo",
    "read_gaf",
    "go_gmt_from_obo_gaf",
    "id_style",
    "match_gene_ids",
    "enrich",
    "domain_enrichment",
    "run_seed",
]

#: Columns of the DEG table, in order (``group``, ``method``, ``seed`` first when known).
DEG_COLUMNS = ["domain", "gene", "rank", "score", "log2fc", "pval", "pval_adj", "pct_in", "pct_out",
               "n_in", "n_tested", "significant"]
#: Columns of the enrichment table.
GO_COLUMNS = ["domain", "term", "description", "n_hits", "set_size", "n_query", "n_background", "pval",
              "pval_adj", "odds_ratio", "combined_score", "genes"]
_META = ["group", "method", "seed"]

DEFAULT_MAX_SPOTS_PER_DOMAIN = 5_000  #: DEG tests at most this many spots of each domain (seeded subsample)
DEFAULT_LOGFC = 0.25
DEFAULT_PADJ = 0.05
DEFAULT_MIN_OVERLAP = 0.1
DEFAULT_MIN_SET_SIZE = 5
DEFAULT_MAX_SET_SIZE = 500

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENTREZ = re.compile(r"^\d+$")


# --------------------------------------------------------------------------------------------------
# DEG
# --------------------------------------------------------------------------------------------------


def log_normalise(counts: Any, target_sum: float = 1e4, *, columns: Sequence[int] | None = None) -> sp.csr_matrix:
    """Library-size normalisation to ``target_sum`` then ``log1p``, as a float32 CSR (spots x genes).

    Spots with zero counts stay zero. Never densifies. With ``columns`` the library sizes still come
    from every gene but only those columns are returned (and copied), in that order.
    """
    X = sp.csr_matrix(counts)
    if X.nnz and (X.data < 0).any():
        raise InputError("counts contain negative values; pass raw counts (layers['counts'])")
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    X = sp.csr_matrix(X if columns is None else X[:, list(columns)], dtype=np.float32, copy=True)
    scale = np.divide(target_sum, lib, out=np.zeros_like(lib, dtype=np.float64), where=lib > 0)
    X = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ X)
    np.log1p(X.data, out=X.data)
    return X


def rank_domain_genes(
    counts: Any,
    labels: Sequence,
    genes: Sequence[str],
    *,
    logfc: float = DEFAULT_LOGFC,
    padj: float = DEFAULT_PADJ,
    min_spots: int = 3,
    max_spots_per_domain: int | None = DEFAULT_MAX_SPOTS_PER_DOMAIN,
    random_state: int = 0,
) -> pd.DataFrame:
    """Wilcoxon DEG of every domain against the rest, as a tidy table (columns :data:`DEG_COLUMNS`).

    Parameters
    ----------
    counts
        Raw counts, spots x genes (sparse or dense).
    labels
        Domain of every spot.
    genes
        Gene names (columns of ``counts``).
    logfc, padj
        Thresholds of ``significant``: ``|log2fc| > logfc`` and ``pval_adj < padj``.
    min_spots
        Domains with fewer spots are left out (with a warning).
    max_spots_per_domain, random_state
        Spots tested per domain (a uniform subsample drawn with ``random_state`` above it; ``None``:
        every spot). Only the sampled rows are normalised, so memory is O(domains x max_spots_per_domain).

    Returns
    -------
    One row per domain x gene, domains in natural order, genes by decreasing Wilcoxon score
    (``rank`` 1 = strongest up-regulated).
    """
    import anndata as ad
    import scanpy as sc

    labels = pd.Series(np.asarray(labels).astype(str))
    genes = [str(g) for g in genes]
    if len(labels) != counts.shape[0]:
        raise InputError(f"{len(labels)} labels for {counts.shape[0]} spots")
    if len(genes) != counts.shape[1]:
        raise InputError(f"{len(genes)} gene names for {counts.shape[1]} genes")
    sizes = labels.value_counts()
    small = sorted(sizes.index[sizes < min_spots])
    if small:
        logg.warning(f"DEG: leaving out domain(s) {', '.join(small)} with fewer than {min_spots} spots")
    keep_groups = _natural_sort([g for g in sizes.index if sizes[g] >= min_spots])
    if len(keep_groups) < 2:
        raise InputError(f"DEG needs at least 2 domains with >= {min_spots} spots; got sizes {sizes.to_dict()}")
    rows = _per_domain_subsample(labels, max_spots_per_domain, random_state)
    if len(rows) < len(labels):
        logg.info(f"    DEG on {len(rows)} of {len(labels)} spots (at most {max_spots_per_domain} per domain)")
    counts = counts[rows] if len(rows) < len(labels) else counts
    labels = labels.iloc[rows].reset_index(drop=True)
    tested = labels.value_counts()
    X = log_normalise(counts)
    tmp = ad.AnnData(X=X, obs=pd.DataFrame({"domain": pd.Categorical(labels, categories=_natural_sort(sizes.index))},
                                            index=[str(i) for i in range(len(labels))]),
                     var=pd.DataFrame(index=pd.Index(_unique_names(genes))))
    sc.tl.rank_genes_groups(tmp, "domain", groups=keep_groups, reference="rest", method="wilcoxon", pts=True,
                            tie_correct=True, corr_method="benjamini-hochberg", use_raw=False, n_genes=tmp.n_vars)
    df = sc.get.rank_genes_groups_df(tmp, group=None)
    if "group" not in df:  # a single group comes back without the column
        df.insert(0, "group", keep_groups[0])
    df = df.rename(columns={"group": "domain", "names": "gene", "scores": "score", "logfoldchanges": "log2fc",
                            "pvals": "pval", "pvals_adj": "pval_adj", "pct_nz_group": "pct_in",
                            "pct_nz_reference": "pct_out"})
    df["domain"] = df["domain"].astype(str)
    df["rank"] = df.groupby("domain", sort=False).cumcount() + 1
    df["n_in"] = df["domain"].map(sizes).astype(int)
    df["n_tested"] = df["domain"].map(tested).astype(int)
    df["log2fc"] = df["log2fc"].astype(float)
    df["significant"] = (df["log2fc"].abs() > logfc) & (df["pval_adj"] < padj)
    return df[DEG_COLUMNS].reset_index(drop=True)


def _per_domain_subsample(labels: pd.Series, max_per_domain: int | None, random_state: int) -> np.ndarray:
    """Sorted row indices: every spot of a domain with at most ``max_per_domain`` spots, else a uniform
    subsample of ``max_per_domain`` of them (one seeded stream, domains in natural order)."""
    if max_per_domain is None or labels.value_counts().max() <= max_per_domain:
        return np.arange(len(labels))
    rng = np.random.default_rng(random_state)
    codes = labels.to_numpy()
    keep = []
    for dom in _natural_sort(pd.unique(codes)):
        idx = np.flatnonzero(codes == dom)
        keep.append(idx if len(idx) <= max_per_domain else rng.choice(idx, max_per_domain, replace=False))
    return np.sort(np.concatenate(keep))


def domain_markers(
    adata,
    method: str,
    *,
    domains_key: str | None = None,
    layer: str = COUNTS_LAYER,
    logfc: float = DEFAULT_LOGFC,
    padj: float = DEFAULT_PADJ,
    min_spots: int = 3,
    group: str | None = None,
    seed: int | None = None,
    max_spots_per_domain: int | None = DEFAULT_MAX_SPOTS_PER_DOMAIN,
    random_state: int = 0,
) -> pd.DataFrame:
    """DEG of the domains of ``method`` in ``adata`` (``obs['domain_<method>']``), a tidy table.

    Reads ``layers[layer]`` (raw counts) and does not modify ``adata``. Returns the table of
    :func:`rank_domain_genes` (``max_spots_per_domain`` and ``random_state`` go to it) with ``group``
    (when given), ``method`` and ``seed`` (the training seed recorded in the table, from
    ``uns['spatialdomains']['train_<method>']['seed']`` unless given) in front.
    """
    key = domains_key or domain_key(method)
    if key not in adata.obs:
        raise InputError(f"obs[{key!r}] not found; available: {sorted(c for c in adata.obs if c.startswith('domain_'))}")
    if layer not in adata.layers:
        raise InputError(f"layers[{layer!r}] (raw counts) not found; DEG needs counts")
    start = logg.info(f"DEG of obs[{key!r}] (Wilcoxon, {adata.n_obs} spots x {adata.n_vars} genes)")
    df = rank_domain_genes(adata.layers[layer], adata.obs[key].to_numpy(), list(adata.var_names),
                           logfc=logfc, padj=padj, min_spots=min_spots, max_spots_per_domain=max_spots_per_domain,
                           random_state=random_state)
    seed = run_seed(adata, method) if seed is None else seed
    df = _with_meta(df, group=group, method=method, seed=seed)
    logg.info(f"    finished: {int(df['significant'].sum())} significant domain x gene pairs", time=start)
    return df


def run_seed(adata, method: str) -> int | None:
    """The training seed stored by ``tl.train`` (``uns['spatialdomains']['train_<method>']['seed']``)."""
    entry = adata.uns.get(UNS_KEY, {}).get(f"train_{method}", {})
    seed = entry.get("seed") if isinstance(entry, Mapping) else None
    if seed is None:
        entry = adata.uns.get(UNS_KEY, {}).get(f"cluster_{method}", {})
        seed = entry.get("seed") if isinstance(entry, Mapping) else None
    return None if seed is None else int(np.asarray(seed).item())


def _with_meta(df: pd.DataFrame, **meta) -> pd.DataFrame:
    df = df.copy()
    for i, col in enumerate(c for c in _META if meta.get(c) is not None):
        df.insert(i, col, meta[col])
    return df


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def _natural_sort(values: Iterable) -> list[str]:
    return sorted((str(v) for v in values), key=_natural_key)


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for n in names:
        out.append(n if not seen[n] else f"{n}-{seen[n]}")
        seen[n] += 1
    return out


# --------------------------------------------------------------------------------------------------
# gene-set files
# --------------------------------------------------------------------------------------------------


def read_gmt(path: str | os.PathLike) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Gene sets and their descriptions from a GMT file (``name<TAB>description<TAB>gene...`` per line).

    Raises :class:`InputError` naming the file and line for a malformed or empty file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"gene-set file {path} does not exist")
    sets: dict[str, list[str]] = {}
    desc: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise InputError(f"{path}: line {lineno} has {len(parts)} tab-separated field(s); a GMT line is "
                                 "name<TAB>description<TAB>gene1<TAB>gene2...")
            genes = [g.strip() for g in parts[2:] if g.strip()]
            name = parts[0].strip()
            sets[name] = sorted(set(sets.get(name, [])) | set(genes))
            desc[name] = parts[1].strip()
    if not sets:
        raise InputError(f"{path}: no gene sets found")
    return sets, desc


def write_gmt(path: str | os.PathLike, sets: Mapping[str, Iterable[str]],
              descriptions: Mapping[str, str] | None = None) -> Path:
    """Write gene sets as GMT (sorted by name, genes sorted), atomically."""
    descriptions = descriptions or {}
    lines = []
    for name in sorted(sets):
        genes = sorted(set(sets[name]))
        if genes:
            d = str(descriptions.get(name, name)).replace("\t", " ")
            lines.append("\t".join([name, d, *genes]))
    return write_text_atomic(path, "\n".join(lines) + "\n")


def read_obo(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Terms of an OBO ontology: ``{id: {"name", "namespace", "parents" (is_a + part_of ids)}}``.

    Obsolete terms are dropped; ``alt_id`` values are keys that point at the primary term's entry.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"ontology file {path} does not exist")
    terms: dict[str, dict[str, Any]] = {}
    alt: dict[str, str] = {}
    cur: dict[str, Any] | None = None
    in_term = False

    def flush():
        if cur and cur.get("id") and not cur.get("obsolete"):
            terms[cur["id"]] = cur

    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("["):
                if in_term:
                    flush()
                in_term = line == "[Term]"
                cur = {"parents": [], "alt": []} if in_term else None
                continue
            if not in_term or cur is None or ":" not in line:
                continue
            tag, value = line.split(":", 1)
            value = value.split(" ! ")[0].strip()
            if tag == "id":
                cur["id"] = value
            elif tag == "name":
                cur["name"] = value
            elif tag == "namespace":
                cur["namespace"] = value
            elif tag == "is_a":
                cur["parents"].append(value.split()[0])
            elif tag == "relationship":
                rel = value.split()
                if len(rel) >= 2 and rel[0] == "part_of":
                    cur["parents"].append(rel[1])
            elif tag == "alt_id":
                cur["alt"].append(value)
            elif tag == "is_obsolete" and value.lower() == "true":
                cur["obsolete"] = True
    if in_term:
        flush()
    if not terms:
        raise InputError(f"{path}: no [Term] stanzas found; is this an OBO file?")
    for tid, t in list(terms.items()):
        for a in t.pop("alt"):
            alt[a] = tid
    for a, tid in alt.items():
        terms.setdefault(a, terms[tid])
    return terms


def read_gaf(path: str | os.PathLike, *, id_column: str = "symbol") -> pd.DataFrame:
    """Annotations of a GAF 2.x file (gzip allowed): columns ``gene``, ``go_id``, ``aspect``.

    ``id_column``: ``"symbol"`` (column 3, DB_Object_Symbol) or ``"id"`` (column 2, DB_Object_ID).
    Rows with a ``NOT`` qualifier are dropped.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"annotation file {path} does not exist")
    if id_column not in ("symbol", "id"):
        raise InputError(f"id_column must be 'symbol' or 'id', got {id_column!r}")
    col = 2 if id_column == "symbol" else 1
    rows = []
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("!") or not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 9:
                raise InputError(f"{path}: line {lineno} has {len(parts)} columns; GAF has at least 15 (9 used)")
            if "NOT" in parts[3].split("|"):
                continue
            rows.append((parts[col], parts[4], parts[8]))
    if not rows:
        raise InputError(f"{path}: no annotations found")
    return pd.DataFrame(rows, columns=["gene", "go_id", "aspect"])


_ASPECT = {"biological_process": "P", "molecular_function": "F", "cellular_component": "C"}


def go_gmt_from_obo_gaf(
    obo: str | os.PathLike,
    gaf: str | os.PathLike,
    namespace: str = "biological_process",
    *,
    id_column: str = "symbol",
    descriptions: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """GO gene sets ``{GO id: sorted genes}`` from an ontology (OBO) and annotations (GAF).

    Every direct annotation is propagated to all ancestors through ``is_a`` and ``part_of``
    (true-path rule), within ``namespace``. Pass a dict as ``descriptions`` to receive the term names
    (for :func:`write_gmt`).
    """
    if namespace not in _ASPECT:
        raise InputError(f"namespace must be one of {sorted(_ASPECT)}, got {namespace!r}")
    start = logg.info(f"GO gene sets ({namespace}) from {obo} and {gaf}")
    terms = read_obo(obo)
    ann = read_gaf(gaf, id_column=id_column)
    ann = ann[ann["aspect"] == _ASPECT[namespace]]
    ancestors: dict[str, frozenset[str]] = {}

    def closure(tid: str) -> frozenset[str]:
        if tid in ancestors:
            return ancestors[tid]
        # iterative DFS (deep ontologies exceed the recursion limit)
        stack, order, seen = [tid], [], {tid}
        while stack:
            t = stack.pop()
            order.append(t)
            for p in terms.get(t, {}).get("parents", []):
                if p not in seen and p in terms:
                    seen.add(p)
                    stack.append(p)
        result = frozenset(terms[t]["id"] for t in seen if t in terms
                           and terms[t].get("namespace") == namespace)
        ancestors[tid] = result
        return result

    sets: dict[str, set[str]] = {}
    unknown = 0
    for go_id, genes in ann.groupby("go_id", sort=False)["gene"]:
        if go_id not in terms:
            unknown += 1
            continue
        g = set(genes)
        for a in closure(go_id):
            sets.setdefault(a, set()).update(g)
    if unknown:
        logg.warning(f"{unknown} GO id(s) of {gaf} are not (or no longer) in {obo}; their annotations were skipped")
    if not sets:
        raise InputError(f"no {namespace} annotations of {gaf} map to terms of {obo}")
    if descriptions is not None:
        for tid in sets:
            descriptions[tid] = terms[tid].get("name", tid)
    logg.info(f"    finished: {len(sets)} terms", time=start)
    return {k: sorted(v) for k, v in sorted(sets.items())}


# --------------------------------------------------------------------------------------------------
# gene ids
# --------------------------------------------------------------------------------------------------


def id_style(ids: Iterable[str]) -> str:
    """``"Ensembl"``, ``"Entrez"`` or ``"symbol"``: the style most of ``ids`` follow (first 5000 looked at)."""
    counts = Counter()
    for i, g in enumerate(ids):
        if i >= 5000:
            break
        g = str(g)
        counts["Ensembl" if _ENSEMBL.match(g) else "Entrez" if _ENTREZ.match(g) else "symbol"] += 1
    return counts.most_common(1)[0][0] if counts else "symbol"


def _strip_version(g: str) -> str:
    return g.split(".", 1)[0] if _ENSEMBL.match(g) else g


def match_gene_ids(
    genes: Sequence[str],
    universe: Iterable[str],
    *,
    id_columns: Mapping[str, Sequence[str]] | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    source: str = "gene sets",
) -> tuple[dict[str, str], dict[str, Any]]:
    """Map tested genes to gene-set identifiers.

    Parameters
    ----------
    genes
        Tested gene names (``var_names``).
    universe
        Every identifier of the gene sets.
    id_columns
        Other identifiers of the same genes, ``{label: values aligned with genes}``, e.g.
        ``{"var['gene_ids']": adata.var['gene_ids']}``. ``var_names`` is always a candidate.
    min_overlap
        Smallest fraction of ``genes`` that must be found in ``universe``.
    source
        Name of the gene-set file for messages.

    Returns
    -------
    ``(mapping, info)``: ``mapping`` takes a gene name to its gene-set identifier (only genes found);
    ``info`` names the column used, the match mode (exact, without Ensembl version, case-insensitive)
    and the overlap.
    """
    genes = [str(g) for g in genes]
    universe = {str(u) for u in universe}
    uni_nover = {_strip_version(u): u for u in universe}
    uni_upper: dict[str, str] = {}
    for u in sorted(universe):
        uni_upper.setdefault(u.upper(), u)
    candidates = {"var_names": genes}
    for label, values in (id_columns or {}).items():
        values = [str(v) for v in values]
        if len(values) != len(genes):
            raise InputError(f"{label}: {len(values)} values for {len(genes)} genes")
        candidates[label] = values
    best: tuple[int, str, str, dict[str, str]] | None = None
    for label, values in candidates.items():
        for mode in ("exact", "no_version", "case"):
            mapping = {}
            for g, v in zip(genes, values):
                if mode == "exact":
                    hit = v if v in universe else None
                elif mode == "no_version":
                    hit = uni_nover.get(_strip_version(v))
                else:
                    hit = uni_upper.get(_strip_version(v).upper())
                if hit is not None:
                    mapping[g] = hit
            if best is None or len(mapping) > best[0]:
                best = (len(mapping), label, mode, mapping)
            if len(mapping) == len(genes):
                break
    assert best is not None
    n_hit, label, mode, mapping = best
    frac = n_hit / max(len(genes), 1)
    info = {"id_column": label, "match": mode, "n_genes": len(genes), "n_matched": n_hit, "overlap": frac}
    if frac < min_overlap:
        seen = "; ".join(f"{lab} look like {id_style(vals)} (e.g. {', '.join(vals[:3])})"
                         for lab, vals in candidates.items())
        uni_sorted = sorted(universe)
        raise InputError(
            f"{source}: only {n_hit} of {len(genes)} tested genes ({100 * frac:.1f}%) are in the gene-set universe "
            f"(need >= {100 * min_overlap:.0f}%). The data's {seen}; the gene sets use {id_style(uni_sorted)} ids "
            f"(e.g. {', '.join(uni_sorted[:3])}). Use a gene-set file with the same kind of ids (and species) as "
            "the data, or lower --min-overlap."
        )
    return mapping, info


# --------------------------------------------------------------------------------------------------
# enrichment
# --------------------------------------------------------------------------------------------------


def enrich(
    query: Iterable[str],
    gene_sets: Mapping[str, Iterable[str]],
    background: Iterable[str],
) -> pd.DataFrame:
    """Hypergeometric over-representation of ``query`` in ``gene_sets`` against ``background``.

    Runs :func:`gseapy.enrich` offline: genes are replaced by neutral tokens (so gseapy's
    upper-casing and Entrez-id heuristics cannot change the match) and the sets are passed as a dict.
    Sets and query are restricted to the background; ``pval`` is ``hypergeom.sf(x - 1, B, m, k)`` with
    ``x`` hits, ``B`` background genes, ``m`` set genes in the background and ``k`` query genes in the
    background; ``pval_adj`` is BH over the terms with at least one hit.

    Returns
    -------
    Columns ``term, n_hits, set_size, n_query, n_background, pval, pval_adj, odds_ratio,
    combined_score, genes`` (hits sorted, ``;``-joined), sorted by ``pval`` then ``term``; empty when
    nothing is hit.
    """
    import logging

    import gseapy

    cols = ["term", "n_hits", "set_size", "n_query", "n_background", "pval", "pval_adj", "odds_ratio",
            "combined_score", "genes"]
    bg = sorted({str(g) for g in background})
    token = {g: f"G{i}" for i, g in enumerate(bg)}
    back = {t: g for g, t in token.items()}
    q = sorted({token[str(g)] for g in query if str(g) in token})
    sets = {}
    for name, genes in gene_sets.items():
        toks = sorted({token[g] for g in map(str, genes) if g in token})
        if toks:
            sets[str(name)] = toks
    if not q or not sets:
        return pd.DataFrame(columns=cols)
    # gseapy logs at INFO through its own logger; keep it quiet
    logging.getLogger("gseapy").setLevel(logging.WARNING)
    res = gseapy.enrich(gene_list=q, gene_sets=sets, background=list(token.values()), outdir=None, cutoff=1.0,
                        no_plot=True, verbose=False)
    df = getattr(res, "res2d", None)
    if df is None or not len(df):
        return pd.DataFrame(columns=cols)
    hits_sizes = df["Overlap"].str.split("/", expand=True).astype(int)
    out = pd.DataFrame({
        "term": df["Term"].astype(str).to_numpy(),
        "n_hits": hits_sizes[0].to_numpy(),
        "set_size": hits_sizes[1].to_numpy(),
        "n_query": len(q),
        "n_background": len(bg),
        "pval": df["P-value"].astype(float).to_numpy(),
        "pval_adj": df["Adjusted P-value"].astype(float).to_numpy(),
        "odds_ratio": df["Odds Ratio"].astype(float).to_numpy(),
        "combined_score": df["Combined Score"].astype(float).to_numpy(),
        # gseapy joins a set's hits in string-hash order: sort them
        "genes": [";".join(sorted(back[t] for t in s.split(";") if t)) for s in df["Genes"].astype(str)],
    })
    return out.sort_values(["pval", "term"], kind="stable").reset_index(drop=True)


def domain_enrichment(
    deg: pd.DataFrame,
    gene_sets: Mapping[str, Iterable[str]],
    *,
    descriptions: Mapping[str, str] | None = None,
    id_columns: Mapping[str, Sequence[str]] | None = None,
    all_genes: Sequence[str] | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    min_set_size: int = DEFAULT_MIN_SET_SIZE,
    max_set_size: int = DEFAULT_MAX_SET_SIZE,
    source: str = "gene sets",
) -> pd.DataFrame:
    """Enrichment of every domain's significant up-regulated genes (a tidy table, :data:`GO_COLUMNS`).

    Parameters
    ----------
    deg
        A DEG table (:func:`domain_markers`); its genes are the tested genes.
    gene_sets, descriptions
        ``{term: genes}`` and ``{term: description}`` (:func:`read_gmt`).
    id_columns, all_genes
        Other identifiers of the genes (``{label: values aligned with all_genes}``), e.g. ``var['gene_ids']``.
    min_overlap
        Smallest fraction of tested genes found among the gene-set genes (else :class:`InputError`).
    min_set_size, max_set_size
        Sets kept when their size within the background lies in this range.
    """
    descriptions = descriptions or {}
    meta = {c: deg[c].iloc[0] for c in _META if c in deg and len(deg)}
    tested = list(dict.fromkeys(deg["gene"].astype(str)))
    cols = [c for c in id_columns or {}]
    id_cols = None
    if id_columns and all_genes is not None:
        pos = {str(g): i for i, g in enumerate(all_genes)}
        idx = [pos[g] for g in tested if g in pos]
        if len(idx) == len(tested):
            id_cols = {k: [str(np.asarray(v)[i]) for i in idx] for k, v in id_columns.items()}
        else:
            logg.warning(f"gene-id columns {cols} do not cover every tested gene; using the gene names only")
    universe = set().union(*(set(map(str, g)) for g in gene_sets.values())) if gene_sets else set()
    mapping, info = match_gene_ids(tested, universe, id_columns=id_cols, min_overlap=min_overlap, source=source)
    logg.info(f"    gene ids: {info['n_matched']}/{info['n_genes']} tested genes in {source} "
              f"via {info['id_column']} ({info['match']})")
    # work in the gene-set id space; report hits with the data's gene names
    inverse: dict[str, str] = {}
    for g, s in mapping.items():
        inverse.setdefault(s, g)
    background = set(inverse)
    sets = {}
    for term, genes in gene_sets.items():
        inside = background.intersection(map(str, genes))
        if min_set_size <= len(inside) <= max_set_size:
            sets[term] = inside
    rows = []
    sig = deg[deg["significant"].astype(bool) & (deg["log2fc"] > 0)]
    for dom in _natural_sort(deg["domain"].astype(str).unique()):
        query = [mapping[g] for g in sig.loc[sig["domain"].astype(str) == dom, "gene"].astype(str) if g in mapping]
        res = enrich(query, sets, background)
        if not len(res):
            continue
        res["genes"] = [";".join(sorted(inverse[t] for t in s.split(";") if t)) for s in res["genes"]]
        res.insert(0, "domain", dom)
        res.insert(2, "description", [str(descriptions.get(t, "")) for t in res["term"]])
        rows.append(res)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=GO_COLUMNS)
    out = out[GO_COLUMNS]
    return _with_meta(out, **meta)
