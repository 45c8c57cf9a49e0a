"""The per-group HTML report: gather runs, metrics, tables and figures, render one self-contained file.

The page has no external reference: images are inlined as base64 PNG, CSS and JavaScript are inline,
and the only links are relative links to the DEG/GO CSV files published beside the report. It opens
from ``file://`` offline. The page's own script makes tables sortable (click a header) and searchable
(the box above each table), and after ``load`` writes a summary of what rendered into
``document.body.dataset.checks`` (and ``<pre id="sd-checks">``): images decoded, table rows and any
JavaScript errors, which the tests read back from headless Chromium.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._utils import InputError, package_version, write_csv_atomic, write_text_atomic
from ..metrics import cluster_mapping, subsample_index
from . import _plots as plots
from ._data import (
    Run,
    attach_metrics,
    codes,
    common_spots,
    consensus_labels,
    flatten,
    load_runs,
    pairwise_ari,
    read_csvs,
    read_json,
    read_lognorm,
    read_yaml,
)

#: (key, title, higher is better) of the metrics shown, in order.
METRICS: list[tuple[str, str, bool]] = [
    ("ari", "ARI", True),
    ("nmi", "NMI", True),
    ("ca", "CA", True),
    ("f1_macro", "F1 macro", True),
    ("silhouette", "SC", True),
    ("davies_bouldin", "DB", False),
    ("batch_kl", "BatchKL", False),
    ("ilisi", "iLISI", True),
    ("kbet", "kBET", True),
    ("graph_connectivity", "graph conn.", True),
    ("silhouette_batch", "silhouette batch", True),
    ("pcr_comparison", "PCR comparison", True),
]
#: metrics drawn in the method-comparison bars (all of them are in the tables)
COMPARISON_METRICS = ("ari", "nmi", "ca", "silhouette", "davies_bouldin", "batch_kl", "ilisi", "kbet")
DEG_SHOW = ["method", "seed", "domain", "rank", "gene", "log2fc", "pval_adj", "pct_in", "pct_out", "n_in", "n_tested"]
GO_SHOW = ["method", "seed", "domain", "term", "description", "n_hits", "set_size", "pval_adj", "genes"]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any) -> tuple[str, str]:
    """(display text, sort key) of a cell."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–", ""
    if isinstance(v, (bool, np.bool_)):
        return ("yes" if v else "no"), str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v)), str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}", repr(v)
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}", repr(v)
    return str(v), ""


WRAP_COLUMNS = {"genes", "description", "thresholds", "value", "term"}


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, tid: str, numeric: Sequence[bool] | None = None,
          searchable: bool = True, caption: str | None = None, raw: Sequence[bool] | None = None) -> dict[str, Any]:
    """A table for the template: header, rows of ``(text, sort key)`` cells, numeric flags."""
    cells = []
    for r in rows:
        out = []
        for j, v in enumerate(r):
            if isinstance(v, tuple) and len(v) == 2 and raw and raw[j]:
                out.append(v)
            else:
                out.append(_fmt(v))
        cells.append(out)
    if numeric is None:
        numeric = [all((c[j][1] != "" or c[j][0] == "–") for c in cells) and any(c[j][1] != "" for c in cells)
                   for j in range(len(columns))]
    return {"id": tid, "columns": list(columns), "rows": cells, "numeric": list(numeric), "searchable": searchable,
            "caption": caption, "wrap": [c in WRAP_COLUMNS for c in columns]}


def _mean_sd(values: Sequence[float]) -> tuple[str, str]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return "–", ""
    mean = float(v.mean())
    if len(v) == 1:
        return f"{mean:.3f}", repr(mean)
    return f"{mean:.3f} ± {float(v.std(ddof=1)):.3f}", repr(mean)


def _rel_link(path: str, output: Path, link_prefix: str | None) -> str:
    if link_prefix is not None:
        return f"{link_prefix}{Path(path).name}"
    try:
        return Path(os.path.relpath(Path(path).resolve(), output.resolve().parent)).as_posix()
    except ValueError:  # other drive (Windows)
        return Path(path).name


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------


def report(
    clustered: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    group: str | None = None,
    metrics: Sequence[str | os.PathLike] = (),
    deg: Sequence[str | os.PathLike] = (),
    go: Sequence[str | os.PathLike] = (),
    qc: Sequence[str | os.PathLike] = (),
    params: str | os.PathLike | None = None,
    versions: Sequence[str | os.PathLike] = (),
    methods: Sequence[str] | None = None,
    link_prefix: str | None = None,
    deg_top: int = 10,
    go_top: int = 5,
    umap_max_n: int = 5000,
    max_points: int = plots.MAX_POINTS,
    consensus_csv: str | os.PathLike | None = None,
    mqc_dir: str | os.PathLike | None = None,
    dpi: int = plots.DPI,
) -> Path:
    """Write the self-contained HTML report of one group and return its path.

    Parameters
    ----------
    clustered
        Clustered ``.h5ad`` files of the group, one per method x seed (a file holding several
        ``obs['domain_<method>']`` columns gives one run per method). Read: ``obs`` (``slice``,
        ``truth``, ``domain_<method>``, QC columns), ``obsm['spatial']``, ``obsm['X_<method>']``,
        ``uns['spatialdomains']['train_<method>']`` (seed, loss history) and ``['cluster_<method>']``;
        ``layers['counts']`` only for the marker dot plots. ``X`` is never read.
    output
        The HTML file (written atomically).
    group
        Group name shown in the title (default: the slice ids).
    metrics
        Metrics JSONs of ``spatialdomains evaluate``; matched to runs by ``method`` and seed (a ``seed``
        key, else ``s<k>``/``seed<k>`` in the file name). Runs without one get label metrics and SC/DB
        computed here.
    deg, go
        CSV tables of ``spatialdomains analyse`` (columns ``method``, ``seed``, ``domain``, ...); the top
        rows are embedded and the files are linked (relative links).
    qc
        ``qc.json`` files of ``spatialdomains qc`` (one per slice).
    params, versions
        Pipeline parameters (JSON) and software versions (YAML ``{process: {tool: version}}``), shown in
        the run summary.
    methods
        Only these methods (default: every method found), in this order.
    link_prefix
        Prefix of the CSV links (e.g. ``"analysis/"`` when the tables are published there); default: the
        path of each CSV relative to the report.
    deg_top, go_top
        Rows per run and domain embedded in the marker and enrichment tables.
    umap_max_n
        Spots in each UMAP (seeded subsample above).
    max_points
        Points per spatial map panel (seeded subsample above).
    consensus_csv
        Also write the consensus domains (``spot, slice, consensus_<method>...``) here.
    mqc_dir
        Also write ``<group>_domains_mqc.png`` (truth and consensus maps) here for MultiQC.
    dpi
        Resolution of the figures.
    """
    t_start = time.perf_counter()
    output = Path(output)
    if not clustered:
        raise InputError("the report needs at least one clustered .h5ad")
    start = logg.info(f"report of {len(clustered)} clustered file(s)")
    runs: list[Run] = []
    for p in clustered:
        runs.extend(load_runs(p, methods))
    seen: dict[tuple[str, int], Path] = {}
    for r in runs:
        key = (r.method, r.seed)
        if key in seen:
            raise InputError(f"{r.path} and {seen[key]} are both {r.method} seed {r.seed}; give each run once")
        seen[key] = r.path
    method_order = list(dict.fromkeys(methods or [r.method for r in runs]))
    runs.sort(key=lambda r: (method_order.index(r.method), r.seed))
    runs = common_spots(runs)
    warnings: list[str] = []
    warnings += attach_metrics(runs, metrics)
    for r in runs:
        if r.info.get("warning"):
            warnings.append(f"{r.label}: {r.info['warning']}")
        if r.metrics is None:
            r.metrics = _fallback_metrics(r)
            warnings.append(f"{r.label}: no metrics JSON given; label metrics and SC/DB computed by the report "
                            "(no batch metrics)")
    group = group or _guess_group(runs)
    first = runs[0]
    slices, spatial, truth = first.slices, first.spatial, first.truth
    slice_ids = list(dict.fromkeys(slices.tolist()))
    by_method = {m: [r for r in runs if r.method == m] for m in method_order if any(r.method == m for r in runs)}

    # consensus per method and a common colour frame ---------------------------------------------
    cons = {m: consensus_labels([r.domains for r in rs]) for m, rs in by_method.items()}
    if truth is not None:
        lab = np.array([t is not None for t in truth])
        t_codes_l, truth_cats = codes(truth[lab])
        anchor = np.full(len(truth), -1, dtype=np.int64)
        anchor[lab] = t_codes_l
        n_anchor = len(truth_cats)
    else:
        anchor, anchor_cats = codes(cons[next(iter(cons))]["labels"])
        lab = np.ones(len(anchor), dtype=bool)
        n_anchor = len(anchor_cats)

    def colour_codes(labels: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int]]]:
        c, cats = codes(labels)
        mapping = cluster_mapping(anchor[lab], c[lab], n_anchor, n_other=len(cats), require_overlap=True)
        return mapping[c], [(name, int(mapping[i])) for i, name in enumerate(cats)]

    coloured: dict[str, tuple[np.ndarray, list[tuple[str, int]]]] = {}
    for r in runs:
        coloured[r.label] = colour_codes(r.domains)
    for m, cn in cons.items():
        coloured[f"{m} consensus"] = colour_codes(cn["labels"])
    n_colours = max([n_anchor] + [int(c.max()) + 1 for c, _ in coloured.values()])
    colours = plots.palette(n_colours)

    ctx: dict[str, Any] = {
        "group": group,
        "title": f"spatialdomains report: {group}",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": package_version(),
        "warnings": warnings,
        "has_truth": truth is not None,
    }

    # 1. run summary --------------------------------------------------------------------------------
    n_spots = {s: int((slices == s).sum()) for s in slice_ids}
    ctx["summary"] = {
        "cards": [
            ("group", group),
            ("slices", len(slice_ids)),
            ("spots", f"{len(slices):,}"),
            ("features (genes)", f"{first.n_genes:,}"),
            ("methods", ", ".join(by_method)),
            ("seeds per method", ", ".join(f"{m}: {len(rs)}" for m, rs in by_method.items())),
            ("ground truth", "yes" if truth is not None else "no"),
        ],
        "slices": _slices_table(slice_ids, n_spots, runs),
        "runs": table(
            ["method", "seed", "domains", "clustering", "K chosen by", "train s", "device", "file"],
            [[r.method, r.seed, len(set(r.domains)), r.info.get("backend"), r.info.get("k_selection"),
              r.info.get("train_seconds"), r.info.get("device"), r.path.name] for r in runs],
            tid="tbl-runs", searchable=False),
        "inputs": _inputs_table(clustered, metrics, deg, go, qc, params, versions),
    }
    ctx["params"] = None
    if params:
        p = flatten(read_json(params))
        ctx["params"] = table(["parameter", "value"], [[k, v if not isinstance(v, float) else v]
                                                       for k, v in sorted(p.items())],
                              tid="tbl-params", numeric=[False, False])
    ctx["versions"] = _versions_table(versions)

    # 2. QC -------------------------------------------------------------------------------------------
    qc_rows = []
    for p in qc:
        q = read_json(p)
        th = q.get("thresholds", {}) or {}
        qc_rows.append([
            q.get("slice") or Path(p).stem, q.get("n_spots_in"), q.get("n_spots_out"), q.get("n_spots_removed"),
            q.get("n_genes_in"), q.get("n_genes_out"),
            (q.get("total_counts") or {}).get("median"), (q.get("n_genes_by_counts") or {}).get("median"),
            (q.get("pct_counts_mt") or {}).get("median"),
            ", ".join(f"{k}={v}" for k, v in th.items()),
        ])
    ctx["qc"] = {
        "table": table(["slice", "spots in", "spots kept", "spots removed", "genes in", "genes kept",
                        "median counts", "median genes", "median mt %", "thresholds"], qc_rows, tid="tbl-qc",
                       searchable=False) if qc_rows else None,
        "hist": data_uri(plots.qc_histograms(first.qc, slices, dpi=dpi)) if first.qc is not None else None,
    }

    # 3. metrics --------------------------------------------------------------------------------------
    mt = pd.DataFrame([{"method": r.method, "seed": r.seed, "n_domains": len(set(r.domains)),
                        **{k: (r.metrics or {}).get(k) for k, _, _ in METRICS}} for r in runs])
    shown = [(k, t, up) for k, t, up in METRICS if k in mt and mt[k].notna().any()]
    head = ["method", "seeds"] + [f"{t} {'↑' if up else '↓'}" for _, t, up in shown]
    summary_rows = []
    for m in by_method:
        sub = mt[mt["method"] == m]
        summary_rows.append([m, len(sub)] + [_mean_sd(sub[k].astype(float).tolist()) for k, _, _ in shown])
    ctx["metrics"] = {
        "summary": table(head, summary_rows, tid="tbl-metrics", searchable=False,
                         raw=[False, False] + [True] * len(shown),
                         numeric=[False, True] + [True] * len(shown)),
        "per_run": table(["method", "seed", "domains"] + [t for _, t, _ in shown],
                         [[r["method"], r["seed"], r["n_domains"]] + [r[k] for k, _, _ in shown]
                          for _, r in mt.iterrows()], tid="tbl-metrics-runs", searchable=False),
        "per_slice": _per_slice_table(runs),
        "legend": [t for _, t, _ in shown],
    }

    # 4. domain maps --------------------------------------------------------------------------------
    overview_rows = []
    if truth is not None:
        overview_rows.append({"title": "ground truth", "codes": anchor,
                              "legend": [(name, i) for i, name in enumerate(truth_cats)]})
    for m in by_method:
        c, leg = coloured[f"{m} consensus"]
        overview_rows.append({"title": f"{m} consensus", "codes": c, "legend": leg})
    overview_png = plots.domain_maps(spatial, slices, overview_rows, colours=colours, max_points=max_points, dpi=dpi)
    maps = []
    for m, rs in by_method.items():
        rows = [{"title": f"seed {r.seed}", "codes": coloured[r.label][0], "legend": coloured[r.label][1]}
                for r in rs]
        maps.append({"method": m, "img": data_uri(plots.domain_maps(spatial, slices, rows, colours=colours,
                                                                    max_points=max_points, dpi=dpi))})
    ctx["maps"] = {"overview": data_uri(overview_png), "per_method": maps,
                   "anchor": "the ground truth" if truth is not None else f"the {next(iter(by_method))} consensus"}

    # 5. UMAPs ---------------------------------------------------------------------------------------
    umaps = []
    slice_codes = np.array([slice_ids.index(s) for s in slices])
    slice_cols = plots.palette(len(slice_ids))
    for m, rs in by_method.items():
        ref = rs[cons[m]["reference"]]
        if ref.embedding is None:
            continue
        idx = subsample_index(len(slices), umap_max_n, 0)
        t0 = time.perf_counter()
        xy = plots.umap_2d(ref.embedding[idx], random_state=0)
        logg.debug(f"UMAP of {ref.label} on {len(idx)} spots: {time.perf_counter() - t0:.1f} s")
        c, leg = coloured[ref.label]
        panels = [{"title": f"{ref.label} domains", "codes": c[idx], "legend": leg},
                  {"title": "slice", "codes": slice_codes[idx], "legend": [(s, i) for i, s in enumerate(slice_ids)]}]
        cols = [colours, slice_cols]
        if truth is not None:
            panels.append({"title": "ground truth", "codes": anchor[idx],
                           "legend": [(name, i) for i, name in enumerate(truth_cats)]})
            cols.append(colours)
        umaps.append({"method": m, "seed": ref.seed, "n": len(idx),
                      "img": data_uri(plots.embedding_panels(xy, panels, colours=cols, dpi=dpi))})
    ctx["umaps"] = umaps

    # 6. loss curves ------------------------------------------------------------------------------
    ctx["loss"] = [{"method": m, "img": data_uri(plots.loss_curves({f"seed {r.seed}": r.history for r in rs},
                                                                   dpi=dpi))}
                   for m, rs in by_method.items() if any(r.history for r in rs)]

    # 7. seed stability -------------------------------------------------------------------------------
    pw = pairwise_ari([r.domains for r in runs])
    labels = [r.label for r in runs]
    stab_rows = []
    for m, rs in by_method.items():
        ii = [labels.index(r.label) for r in rs]
        vals = [pw[a, b] for x, a in enumerate(ii) for b in ii[x + 1:]]
        stab_rows.append([m, len(rs), _mean_sd(vals) if vals else ("–", ""),
                          (f"{min(vals):.3f}", repr(min(vals))) if vals else ("–", "")])
    ctx["stability"] = {
        "img": data_uri(plots.heatmap(pw, labels, title="ARI between runs", dpi=dpi)) if len(runs) > 1 else None,
        "table": table(["method", "seeds", "ARI between seeds (mean ± sd)", "lowest"], stab_rows,
                       tid="tbl-stability", searchable=False, raw=[False, False, True, True],
                       numeric=[False, True, True, True]),
    }

    # 8. method comparison -----------------------------------------------------------------------
    ctx["comparison"] = data_uri(plots.metric_bars(
        mt, [(k, f"{t} {'↑' if up else '↓'}") for k, t, up in shown if k in COMPARISON_METRICS], dpi=dpi))

    # 9. consensus ------------------------------------------------------------------------------------
    cons_rows = []
    for m, rs in by_method.items():
        cn = cons[m]
        for r, a in zip(rs, cn["ari_to_each"]):
            row = [m, r.seed, "yes" if rs[cn["reference"]] is r else "", a]
            if truth is not None:
                row.append(float(_ari_lab(truth, r.domains)))
            cons_rows.append(row)
        row = [m, "consensus", "", 1.0]
        if truth is not None:
            row.append(float(_ari_lab(truth, cn["labels"])))
        cons_rows.append(row)
    cols = ["method", "seed", "reference", "ARI to consensus"] + (["ARI to truth"] if truth is not None else [])
    ctx["consensus"] = table(cols, cons_rows, tid="tbl-consensus", searchable=False,
                             numeric=[False, False, False, True] + ([True] if truth is not None else []))
    if consensus_csv:
        df = pd.DataFrame({"spot": first.obs_names, "slice": slices,
                           **{f"consensus_{m}": cn["labels"] for m, cn in cons.items()}})
        write_csv_atomic(df, consensus_csv, index=False)

    # 10-11. DEG and enrichment ----------------------------------------------------------------------
    deg_df = read_csvs(deg, "DEG")
    go_df = read_csvs(go, "GO")
    ctx["deg"] = _deg_section(deg_df, by_method, cons, coloured, colours, output, link_prefix, deg_top, dpi)
    ctx["go"] = _go_section(go_df, by_method, cons, coloured, colours, output, link_prefix, go_top, dpi)

    if mqc_dir:
        Path(mqc_dir).mkdir(parents=True, exist_ok=True)
        from .._utils import atomic_path

        with atomic_path(Path(mqc_dir) / f"{_safe(group)}_domains_mqc.png") as tmp:
            tmp.write_bytes(overview_png)

    ctx["sections"] = [s for s in (
        ("summary", "Run summary"), ("qc", "QC"), ("metrics", "Metrics"), ("maps", "Domain maps"),
        ("umap", "UMAP"), ("loss", "Training loss"), ("stability", "Seed stability"),
        ("comparison", "Method comparison"), ("consensus", "Consensus domains"), ("deg", "Marker genes"),
        ("go", "Enrichment"))]
    ctx["render_seconds"] = f"{time.perf_counter() - t_start:.1f}"
    html_text = render(ctx)
    write_text_atomic(output, html_text)
    logg.info(f"    finished: {output} ({len(html_text.encode()) / 1e6:.2f} MB)", time=start)
    return output


def image_use_line(decision: Mapping[str, Any] | None, slice_id: str) -> str | None:
    """"image used / not used, because ..." for one slice from ``uns['spatialdomains']['image_mode']``."""
    if not decision:
        return None
    per = dict(decision.get("slices") or {}).get(slice_id) or {}
    used = "image used" if decision.get("use_image") else "image not used"
    why = per.get("reason") or decision.get("reason") or ""
    if per.get("reason") and decision.get("reason") and per["reason"] != decision["reason"]:
        why = f"{per['reason']}; {decision['reason']}"  # e.g. this slice is informative, another one is not
    return f"{used}, because {why}" if why else used


def _slices_table(slice_ids: Sequence[str], n_spots: Mapping[str, int], runs: Sequence[Run]):
    """Spots per slice, and whether the image-aware method (STAIG) trained with each slice's image."""
    decision = next((r.info.get("image_mode") for r in runs if r.info.get("image_mode")), None)
    if decision is None:
        return table(["slice", "spots"], [[s, n_spots[s]] for s in slice_ids], tid="tbl-slices", searchable=False)
    return table(["slice", "spots", "H&E image (STAIG)"],
                 [[s, n_spots[s], image_use_line(decision, s)] for s in slice_ids], tid="tbl-slices",
                 searchable=False, numeric=[False, True, False])


def render(ctx: Mapping[str, Any]) -> str:
    """Render the Jinja2 template ``templates/report.html`` with ``ctx``."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("spatialdomains.report", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    return env.get_template("report.html").render(**ctx)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _guess_group(runs: Sequence[Run]) -> str:
    ids = list(dict.fromkeys(runs[0].slices.tolist()))
    return ids[0] if len(ids) == 1 else "+".join(ids[:4]) + ("…" if len(ids) > 4 else "")


def _ari_lab(truth: np.ndarray, labels: np.ndarray) -> float:
    from ..metrics import ari

    lab = np.array([t is not None for t in truth])
    return ari(truth[lab].astype(str), np.asarray(labels)[lab])


def _fallback_metrics(r: Run) -> dict[str, Any]:
    from .. import metrics as M

    out: dict[str, Any] = {"method": r.method, "n_domains": len(set(r.domains))}
    if r.embedding is not None and len(set(r.domains)) > 1:
        out["silhouette"] = M.silhouette(r.embedding, r.domains)
        out["davies_bouldin"] = M.davies_bouldin(r.embedding, r.domains)
    if r.truth is not None:
        lab = np.array([t is not None for t in r.truth])
        t, d = r.truth[lab].astype(str), r.domains[lab]
        out.update(ari=M.ari(t, d), nmi=M.nmi(t, d), ca=M.clustering_accuracy(t, d))
    return out


def _inputs_table(clustered, metrics, deg, go, qc, params, versions) -> dict[str, Any]:
    rows = []
    for kind, paths in (("clustered", clustered), ("metrics", metrics), ("DEG", deg), ("GO", go), ("QC", qc),
                        ("params", [params] if params else []), ("versions", versions)):
        for p in paths:
            rows.append([kind, Path(p).name])
    return table(["kind", "file"], rows, tid="tbl-inputs", searchable=False)


def _versions_table(versions: Sequence[str | os.PathLike]) -> dict[str, Any] | None:
    rows = []
    for p in versions:
        data = read_yaml(p) or {}
        if not isinstance(data, Mapping):
            continue
        for proc, tools in data.items():
            if isinstance(tools, Mapping):
                for tool, v in tools.items():
                    rows.append([str(proc).split(":")[-1], str(tool), str(v)])
            else:
                rows.append(["", str(proc), str(tools)])
    if not rows:
        return None
    rows = sorted({tuple(r) for r in rows})
    return table(["process", "tool", "version"], rows, tid="tbl-versions", numeric=[False, False, False])


def _per_slice_table(runs: Sequence[Run]) -> dict[str, Any] | None:
    rows = []
    for r in runs:
        per = (r.metrics or {}).get("per_slice") or {}
        for s, v in per.items():
            rows.append([r.method, r.seed, s, v.get("ari"), v.get("nmi"), v.get("n_labelled")])
    if not rows:
        return None
    return table(["method", "seed", "slice", "ARI", "NMI", "labelled spots"], rows, tid="tbl-metrics-slices",
                 searchable=False)


def _csv_links(df: pd.DataFrame, output: Path, link_prefix: str | None) -> list[dict[str, str]]:
    if df.empty or "source" not in df:
        return []
    links = []
    for src, sub in df.groupby("source", sort=False):
        label = f"{sub['method'].iloc[0]} seed {sub['seed'].iloc[0]}" if len(sub) else Path(src).name
        links.append({"href": _rel_link(str(src), output, link_prefix), "name": Path(str(src)).name, "label": label})
    return links


def _ref_rows(df: pd.DataFrame, m: str, seed: int) -> pd.DataFrame:
    if df.empty:
        return df
    return df[(df["method"].astype(str) == m) & (df["seed"] == seed)]


def _legend_colours(coloured, label: str, colours: Sequence[str], domains: Sequence[str]) -> list[str]:
    c, legend = coloured[label]
    lut = dict(legend)
    return [colours[lut[d]] if d in lut and 0 <= lut[d] < len(colours) else plots.UNLABELLED for d in domains]


def _deg_section(deg_df, by_method, cons, coloured, colours, output, link_prefix, top, dpi, *, volcano=False,
                 logfc=0.25, padj=0.05):
    out: dict[str, Any] = {"links": _csv_links(deg_df, output, link_prefix), "per_method": [], "table": None,
                           "top": top}
    if deg_df.empty:
        return out
    from ..analysis import _natural_sort

    for m, rs in by_method.items():
        ref = rs[cons[m]["reference"]]
        sub = _ref_rows(deg_df, m, ref.seed)
        if sub.empty:
            continue
        doms = _natural_sort(sub["domain"].unique())
        dom_cols = _legend_colours(coloured, ref.label, colours, doms)
        item = {"method": m, "seed": ref.seed, "dotplot": None,
                "volcano": data_uri(plots.volcano(sub, logfc=logfc, padj=padj, colours=dom_cols, dpi=dpi))
                if volcano else None}
        genes = []
        for d in doms:
            s = sub[(sub["domain"] == d) & sub["significant"].astype(bool) & (sub["log2fc"] > 0)]
            for g in s.sort_values("rank")["gene"].astype(str).head(3):
                if g not in genes:
                    genes.append(g)
        if genes:
            try:
                X, keep = read_lognorm(ref.path, genes)
                X = X[ref.row_index] if ref.row_index is not None else X
                dom_arr = ref.domains
                frac = np.vstack([np.asarray((X[dom_arr == d] > 0).mean(0)).ravel() for d in doms])
                mean = np.vstack([np.asarray(X[dom_arr == d].mean(0)).ravel() for d in doms])
                item["dotplot"] = data_uri(plots.dotplot(keep, doms, frac, mean,
                                                         title=f"{m} seed {ref.seed}: top markers", dpi=dpi))
            except InputError as err:
                logg.warning(f"dot plot of {ref.label} skipped: {err}")
        out["per_method"].append(item)
    sig = deg_df[deg_df["significant"].astype(bool)] if "significant" in deg_df else deg_df
    sig = sig.sort_values(["method", "seed", "domain", "rank"], key=_natural_series)
    top_rows = sig.groupby(["method", "seed", "domain"], sort=False).head(top)
    cols = [c for c in DEG_SHOW if c in top_rows]
    out["table"] = table(cols, top_rows[cols].itertuples(index=False, name=None), tid="tbl-deg",
                         caption=f"top {top} significant genes per domain (all runs)")
    out["n_sig"] = int(len(sig))
    return out


def _go_section(go_df, by_method, cons, coloured, colours, output, link_prefix, top, dpi):
    out: dict[str, Any] = {"links": _csv_links(go_df, output, link_prefix), "per_method": [], "table": None,
                           "top": top}
    if go_df.empty:
        return out
    from ..analysis import _natural_sort

    for m, rs in by_method.items():
        ref = rs[cons[m]["reference"]]
        sub = _ref_rows(go_df, m, ref.seed)
        if sub.empty:
            continue
        doms = _natural_sort(sub["domain"].unique())
        out["per_method"].append({"method": m, "seed": ref.seed, "img": data_uri(plots.go_bars(
            sub, colours=_legend_colours(coloured, ref.label, colours, doms), dpi=dpi))})
    srt = go_df.sort_values(["method", "seed", "domain", "pval_adj", "pval"], key=_natural_series)
    top_rows = srt.groupby(["method", "seed", "domain"], sort=False).head(top)
    cols = [c for c in GO_SHOW if c in top_rows]
    out["table"] = table(cols, top_rows[cols].fillna("").itertuples(index=False, name=None), tid="tbl-go",
                         caption=f"top {top} terms per domain (all runs)")
    return out


def _natural_series(s: pd.Series) -> pd.Series:
    if s.name == "domain":
        from ..analysis import _natural_key

        return s.map(lambda v: tuple((0, t, "") if isinstance(t, int) else (1, 0, t) for t in _natural_key(v)))
    return s
