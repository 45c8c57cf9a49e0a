"""The session's one real `-profile test` run, shared by test_pipeline.py and test_resilience.py."""

from __future__ import annotations

import time

import pytest

from nfutil import ROOT, nextflow


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """``-profile test`` once per session, on at most 2 CPUs (the profile's resourceLimits)."""
    cwd = tmp_path_factory.mktemp("real")
    start = time.monotonic()
    res = nextflow(["run", str(ROOT), "-profile", "test", "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", "run1"], cwd, timeout=1800)
    return cwd, res, time.monotonic() - start
