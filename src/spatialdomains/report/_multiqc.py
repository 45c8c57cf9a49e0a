"""MultiQC custom content: the run-wide tables MultiQC renders with ``assets/multiqc_config.yml``.

Files written to ``outdir`` (each only when its inputs are given):

``spatialdomains_qc_mqc.tsv``
    one row per slice: spots and genes before/after QC, median counts, genes and mitochondrial %.
``spatialdomains_metrics_mqc.tsv``
    one row per group x method x seed (sample ``<group>_<method>_s<seed>``): every metric of
    ``spatialdomains evaluate``; and one per seed consensus (``<group>_<method>_consensus``, the label
    metrics of ``spatialdomains consensus``).
``spatialdomains_summary_mqc.tsv``
    one row per group x method: mean and sd over seeds of the headline metrics (consensus rows excluded).
``spatialdomains_ari_mqc.tsv``
    the mean ARI (with truth) or silhouette (without) per group x method, for a bar plot.
``spatialdomains_mqc_versions.yml``
    software versions ``{process: {tool: version}}`` merged from every versions YAML (MultiQC's
    "Software versions" section).
``workflow_summary_mqc.yaml``
    the pipeline parameters as an HTML definition list: the section ``spatialdomains-spatialdomains-summary``
    (``<org>-<pipeline>-summary``, the id nf-core lint expects last in ``report_section_order``).

The section ids, titles, column formats and search patterns live in ``assets/multiqc_config.yml``;
the files carry no header comments so that the config is the one place they are described.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import _logging as logg
from .._utils import InputError, write_text_atomic

QC_FILE = "spatialdomains_qc_mqc.tsv"
METRICS_FILE = "spatialdomains_metrics_mqc.tsv"
SUMMARY_FILE = "spatialdomains_summary_mqc.tsv"
ARI_FILE = "spatialdomains_ari_mqc.tsv"
VERSIONS_FILE = "spatialdomains_mqc_versions.yml"
SUMMARY_YAML = "workflow_summary_mqc.yaml"
#: section id of the workflow summary: ``<org>-<pipeline>-summary`` of manifest.name, as nf-core lint checks it
SUMMARY_SECTION = "spatialdomains-spatialdomains-summary"

#: metric columns of the per-run table, in order
METRIC_KEYS = ["n_domains", "n_spots", "ari", "nmi", "ca", "f1_macro", "silhouette", "davies_bouldin", "batch_kl",
               "ilisi", "kbet", "graph_connectivity", "silhouette_batch", "pcr_comparison"]
SUMMARY_KEYS = ["ari", "nmi", "ca", "silhouette", "davies_bouldin", "ilisi", "kbet"]


def _tsv(df: pd.DataFrame, path: Path) -> Path:
    text = df.to_csv(sep="\t", index=False, na_rep="", float_format="%.6g")
    return write_text_atomic(path, text)


def _group_method_seed(path: str | os.PathLike, m: Mapping[str, Any]) -> tuple[str, str, int | str]:
    """Group, method and seed of a metrics JSON: its keys, else the Nextflow name ``<group>_<method>_s<seed>``.

    A seed consensus (``seed`` = ``"consensus"``) keeps that seed.
    """
    from ..consensus import CONSENSUS_SEED

    method = m.get("method")
    if method is None:
        raise InputError(f"{path}: metrics JSON without 'method' (write it with `spatialdomains evaluate`)")
    method = str(method)
    stem = Path(path).stem
    seed = m.get("seed")
    if seed is None:
        hit = re.search(r"(?:^|[_.\-])(?:s|seed)(\d+)(?=$|[_.\-])", stem)
        seed = int(hit.group(1)) if hit else 0
    group = m.get("group")
    if group is None:
        hit = re.match(rf"^(.*?)[_.\-]{re.escape(method)}(?:[_.\-]|$)", stem)
        group = hit.group(1) if hit and hit.group(1) else "all"
    return str(group), method, (CONSENSUS_SEED if str(seed) == CONSENSUS_SEED else int(seed))


def qc_table(qc: Sequence[str | os.PathLike]) -> pd.DataFrame:
    from ._data import read_json

    rows = []
    for p in qc:
        q = read_json(p)
        rows.append({
            "Sample": str(q.get("slice") or Path(p).stem),
            "spots_in": q.get("n_spots_in"), "spots_kept": q.get("n_spots_out"),
            "spots_removed": q.get("n_spots_removed"), "genes_in": q.get("n_genes_in"),
            "genes_kept": q.get("n_genes_out"),
            "median_counts": (q.get("total_counts") or {}).get("median"),
            "median_genes": (q.get("n_genes_by_counts") or {}).get("median"),
            "median_pct_mt": (q.get("pct_counts_mt") or {}).get("median"),
        })
    return pd.DataFrame(rows)


def metrics_table(metrics: Sequence[str | os.PathLike]) -> pd.DataFrame:
    from ._data import read_json

    rows = []
    for p in metrics:
        m = read_json(p)
        group, method, seed = _group_method_seed(p, m)
        run = seed if isinstance(seed, str) else f"s{seed}"
        row = {"Sample": f"{group}_{method}_{run}", "group": group, "method": method, "seed": seed}
        row.update({k: m.get(k) for k in METRIC_KEYS})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    dup = df["Sample"][df["Sample"].duplicated()]
    if len(dup):
        raise InputError(f"metrics JSONs repeat group/method/seed {sorted(set(dup))}; give each run once")
    keep = ["Sample", "group", "method", "seed"] + [k for k in METRIC_KEYS if df[k].notna().any()]
    order = df["seed"].map(lambda s: (1, 0) if isinstance(s, str) else (0, s))  # the consensus after the seeds
    return df[keep].assign(_o=order).sort_values(["group", "method", "_o"]).drop(columns="_o").reset_index(drop=True)


def summary_table(per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over the seeds of each group x method (a seed consensus row is not a seed)."""
    rows = []
    seeds_only = per_run[per_run["seed"].map(lambda s: not isinstance(s, str))]
    for (g, m), sub in seeds_only.groupby(["group", "method"], sort=True):
        row: dict[str, Any] = {"Sample": f"{g}_{m}", "group": g, "method": m, "n_seeds": len(sub)}
        for k in SUMMARY_KEYS:
            if k in sub and sub[k].notna().any():
                v = sub[k].astype(float).dropna()
                row[f"{k}_mean"] = float(v.mean())
                row[f"{k}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def _versions(paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, str]]:
    from ._data import read_yaml

    merged: dict[str, dict[str, str]] = {}
    for p in paths:
        data = read_yaml(p) or {}
        if not isinstance(data, Mapping):
            raise InputError(f"{p}: versions YAML must map process -> {{tool: version}}")
        for proc, tools in data.items():
            if isinstance(tools, Mapping):
                merged.setdefault(str(proc), {}).update({str(k): str(v) for k, v in tools.items()})
            else:
                merged.setdefault("spatialdomains", {})[str(proc)] = str(tools)
    return merged


def _workflow_summary(params: Mapping[str, Any]) -> str:
    from ._data import flatten

    items = "".join(f"<dt>{html.escape(str(k))}</dt><dd><samp>{html.escape(str(v))}</samp></dd>"
                    for k, v in sorted(flatten(params).items()) if v not in (None, ""))
    import yaml

    doc = {
        "id": SUMMARY_SECTION,
        "section_name": "spatialdomains workflow summary",
        "description": "Parameters this run of the pipeline used.",
        "plot_type": "html",
        "data": f'<dl class="dl-horizontal">{items}</dl>',
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def multiqc_content(
    outdir: str | os.PathLike,
    *,
    metrics: Sequence[str | os.PathLike] = (),
    qc: Sequence[str | os.PathLike] = (),
    versions: Sequence[str | os.PathLike] = (),
    params: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the MultiQC custom-content files (see the module docstring) to ``outdir``; return their paths.

    Metrics JSONs give group, method and seed by their ``group``/``method``/``seed`` keys, else by the
    file name ``<group>_<method>_s<seed>.json`` (the pipeline's ``meta.id``).
    """
    import yaml

    from ._data import read_json

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    start = logg.info(f"MultiQC content in {out}")
    written: list[Path] = []
    if qc:
        written.append(_tsv(qc_table(qc), out / QC_FILE))
    if metrics:
        per_run = metrics_table(metrics)
        if not per_run.empty:
            written.append(_tsv(per_run, out / METRICS_FILE))
            summary = summary_table(per_run)
            written.append(_tsv(summary, out / SUMMARY_FILE))
            key = "ari" if "ari_mean" in summary and summary["ari_mean"].notna().any() else "silhouette"
            if f"{key}_mean" in summary:
                bars = pd.DataFrame({"Sample": summary["Sample"], f"mean_{key}": summary[f"{key}_mean"]})
                written.append(_tsv(bars, out / ARI_FILE))
    if versions:
        merged = _versions(versions)
        from .._utils import package_version

        merged.setdefault("spatialdomains", {}).setdefault("spatialdomains", package_version())
        written.append(write_text_atomic(out / VERSIONS_FILE, yaml.safe_dump(merged, sort_keys=True)))
    if params:
        written.append(write_text_atomic(out / SUMMARY_YAML, _workflow_summary(read_json(params))))
    if not written:
        raise InputError("multiqc-content: give at least one of --metrics, --qc, --versions, --params")
    logg.info(f"    finished: {len(written)} file(s)", time=start, deep=", ".join(p.name for p in written))
    return written
