"""Per-group HTML report, its figures (:mod:`.plots`) and MultiQC custom content.

- :func:`report` writes one self-contained HTML file per group (run summary, QC, metrics, domain maps,
  UMAPs, loss curves, seed stability, method comparison, consensus domains, marker genes, enrichment).
- :func:`multiqc_content` writes the ``*_mqc`` files the pipeline's MultiQC step renders with
  ``assets/multiqc_config.yml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from . import _plots as plots
from ._data import consensus_labels
from ._multiqc import multiqc_content

__all__ = ["report", "multiqc_content", "consensus_labels", "plots"]


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
    from ._html import build_report

    return build_report(
        clustered, output=output, group=group, metrics=metrics, deg=deg, go=go, qc=qc, params=params,
        versions=versions, methods=methods, link_prefix=link_prefix, deg_top=deg_top, go_top=go_top,
        umap_max_n=umap_max_n, max_points=max_points, consensus_csv=consensus_csv,
        mqc_dir=mqc_dir, dpi=dpi,
    )
