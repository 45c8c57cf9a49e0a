"""Per-group HTML report, its figures (:mod:`.plots`) and MultiQC custom content.

- :func:`report` writes one self-contained HTML file per group (run summary, QC, metrics, domain maps,
  UMAPs, loss curves, seed stability, method comparison, consensus domains, marker genes, enrichment).
- :func:`multiqc_content` writes the ``*_mqc`` files the pipeline's MultiQC step renders with
  ``assets/multiqc_config.yml``.
"""

from __future__ import annotations

from . import _plots as plots
from ._data import consensus_labels
from ._html import report
from ._multiqc import multiqc_content

__all__ = ["report", "multiqc_content", "consensus_labels", "plots"]
