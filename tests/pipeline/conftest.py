"""The session's one real `-profile test` run, shared by test_pipeline.py and test_resilience.py."""

from __future__ import annotations

import os
import time

import pytest

from nfutil import ROOT, nextflow


#: ~5-15 min on an idle 2-core machine; a machine shared with other jobs may need more (like SPATIALDOMAINS_FAIL_FAST_S)
REAL_RUN_TIMEOUT_S = float(os.environ.get("SPATIALDOMAINS_REAL_RUN_TIMEOUT_S", "1800"))


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """``-profile test`` once per session, on at most 2 CPUs (the profile's resourceLimits)."""
    cwd = tmp_path_factory.mktemp("real")
    start = time.monotonic()
    res = nextflow(["run", str(ROOT), "-profile", "test", "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", "run1"], cwd, timeout=REAL_RUN_TIMEOUT_S)
    return cwd, res, time.monotonic() - start
