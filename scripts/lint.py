#!/usr/bin/env python
"""Offline lint: what `nf-core pipelines lint/schema lint` would check that needs no network.

- both JSON schemas are valid JSON Schema (draft 2020-12);
- every ``params.*`` in ``nextflow config -flat`` is in ``nextflow_schema.json`` and vice versa, with equal defaults;
- the sample-sheet schema in ``assets/`` is the one the package validates with;
- Dockerfiles pass hadolint and list the same Python dependencies as pyproject.toml.
Exits 1 listing every problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lintlib import run_all  # noqa: E402

if __name__ == "__main__":
    problems = run_all(ROOT)
    for p in problems:
        print(f"lint: {p}", file=sys.stderr)
    print(f"lint: {'FAILED' if problems else 'ok'} ({len(problems)} problem(s))", file=sys.stderr)
    sys.exit(1 if problems else 0)
