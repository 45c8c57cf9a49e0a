"""The Nextflow pipeline, run for real through the offline wrapper.

(a) a ``-stub`` run of the whole DAG (test profile, both methods, two seeds) matches a stored snapshot:
    tasks per process, the sorted published files and the tools in the versions YAML;
(b) the real ``-profile test`` run (once per session, 2 CPUs; tests/pipeline/conftest.py) publishes embeddings,
    domains and metrics, with ARI above a floor on the synthetic truth; h5ad outputs are compared by structure;
    the group's HTML report holds every section and links its published tables; the MultiQC report lists every
    slice and every method with its metrics; pipeline_info holds the run's provenance;
    the group's SpatialData store opens with spatialdata.read_zarr and holds the domains of every method and seed;
    a run whose sample sheet gives SpatialData stores (written here from the demo) as data goes through;
(c) ``-resume`` re-runs nothing; after changing one method's epochs only that method's tasks re-run;
(d) a bad sample sheet fails in seconds with the row-level message and no task but VALIDATE;
plus --help, the missing --input error, the unknown-parameter warning and every profile parsing.

Snapshots live in ``tests/pipeline/snapshots/``; refresh them with ``UPDATE_SNAPSHOTS=1`` and review the diff.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "tools/nextflow/lib"
VENV_BIN = ROOT / ".venv/bin"
NEXTFLOW = VENV_BIN / "nextflow" if (VENV_BIN / "nextflow").exists() else ROOT / "tools/nextflow/nextflow"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
DEMO = ROOT / "assets/demo"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
METHODS = ("staig", "spotscape")
ARI_FLOOR = 0.25  # both methods reach far more on the demo's layered synthetic tissue; this catches breakage
FAIL_FAST_S = float(os.environ.get("SPATIALDOMAINS_FAIL_FAST_S", "30"))

pytestmark = pytest.mark.skipif(not LIB.exists(), reason="Nextflow runtime missing: run `make setup` (CI always does)")


# --- helpers ---------------------------------------------------------------------------------------------------

def nextflow(args: list[str], cwd: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run the wrapper offline from ``cwd`` (its own .nextflow/ history), with the venv's CLI on PATH."""
    env = {**os.environ, "NXF_OFFLINE": "true", "NXF_ANSI_LOG": "false",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # C1-only JIT: the JVM starts in about half the time on a busy 2-core machine (scripts/demo.sh does the same)
    env.setdefault("NXF_OPTS", "-XX:+TieredCompilation -XX:TieredStopAtLevel=1")
    env.pop("NXF_WORK", None)
    return subprocess.run([str(NEXTFLOW), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def explain(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-6000:]}\n--- stderr ---\n{res.stderr[-6000:]}"


def read_trace(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def short(process: str) -> str:
    return process.rsplit(":", 1)[-1]


def task_counts(trace: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in trace:
        counts[short(row["process"])] = counts.get(short(row["process"]), 0) + 1
    return dict(sorted(counts.items()))


def published_files(outdir: Path, ignore: list[str]) -> list[str]:
    files = sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file())
    return [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in ignore)]


def versions_tools(path: Path) -> dict[str, list[str]]:
    """``process: [tool, ...]`` of the collated versions YAML (values vary by machine; names must not)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    return {proc: sorted(tools) for proc, tools in sorted(data.items())}


def h5ad_structure(path: Path) -> dict:
    import anndata as ad

    a = ad.read_h5ad(path, backed="r")
    try:
        return {
            "obs": sorted(a.obs.columns),
            "obsm": {k: list(a.obsm[k].shape[1:]) for k in sorted(a.obsm)},
            "obsp": sorted(a.obsp),
            "layers": sorted(a.layers),
            "uns": sorted(a.uns),
        }
    finally:
        a.file.close()


def check_snapshot(name: str, actual: dict) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        if not UPDATE and os.environ.get("CI"):
            pytest.fail(f"snapshot {path} is missing; create it with UPDATE_SNAPSHOTS=1 and commit it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
        if not UPDATE:
            pytest.fail(f"snapshot {path} did not exist and was written; review and commit it")
        return
    expected = json.loads(path.read_text())
    assert actual == expected, f"{name} differs from the snapshot (UPDATE_SNAPSHOTS=1 to refresh, then review)"


def ignore_patterns() -> list[str]:
    lines = (SNAPSHOTS / "ignore.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


# --- (a) the stub DAG ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stub_run(tmp_path_factory):
    assert (DEMO / "samplesheet.csv").exists(), "assets/demo/samplesheet.csv is missing"
    cwd = tmp_path_factory.mktemp("stub")
    # --sedds: a misspelt parameter must give a warning with a suggestion, and nothing else
    res = nextflow(["run", str(ROOT), "-profile", "test", "-stub", "--seeds", "0,1", "--outdir", "results",
                    "-w", "work", "--trace_report_suffix", "stub", "--sedds", "3"], cwd)
    return cwd, res


def test_stub_run_passes(stub_run):
    cwd, res = stub_run
    assert res.returncode == 0, explain(res)
    assert "Pipeline completed successfully" in res.stdout + res.stderr


def test_stub_matches_snapshot(stub_run):
    cwd, res = stub_run
    assert res.returncode == 0, explain(res)
    outdir = cwd / "results"
    actual = {
        "tasks": task_counts(read_trace(outdir / "pipeline_info/execution_trace_stub.txt")),
        "files": published_files(outdir, ignore_patterns()),
        "versions": versions_tools(outdir / "pipeline_info/spatialdomains_software_versions.yml"),
    }
    # the fan-out itself, independent of the snapshot: 2 slices, 1 group, 2 methods, 2 seeds
    assert actual["tasks"]["SPATIALDOMAINS_READ"] == 2
    assert actual["tasks"]["SPATIALDOMAINS_PREPARE"] == 2
    assert actual["tasks"]["SPATIALDOMAINS_TRAIN"] == 4
    assert actual["tasks"]["SPATIALDOMAINS_COLLECT_METRICS"] == 1
    assert actual["tasks"]["SPATIALDOMAINS_CONSENSUS"] == 2  # one per method: 2 seeds make a consensus
    assert actual["tasks"]["SPATIALDOMAINS_ANALYSE"] == 4
    assert actual["tasks"]["SPATIALDOMAINS_REPORT"] == 1
    assert actual["tasks"]["SPATIALDOMAINS_MULTIQC_CONTENT"] == 1 and actual["tasks"]["MULTIQC"] == 1
    check_snapshot("stub.json", actual)


def test_unknown_parameter_warns_with_suggestion(stub_run):
    cwd, res = stub_run
    out = res.stdout + res.stderr
    assert "unknown parameter(s)" in out and "--sedds (did you mean --seeds?)" in out, explain(res)


# --- (b) the real test profile ---------------------------------------------------------------------------------

def _group_dirs(outdir: Path) -> list[Path]:
    """Group folders: every top-level folder except the run-wide ones (the sample sheet reserves their names)."""
    return sorted(p for p in outdir.iterdir() if p.is_dir() and p.name not in ("pipeline_info", "slices", "multiqc"))


def test_real_run_passes(real_run):
    cwd, res, took = real_run
    assert res.returncode == 0, explain(res)
    trace = read_trace(cwd / "results/pipeline_info/execution_trace_run1.txt")
    assert all(row["status"] == "COMPLETED" for row in trace), trace
    assert max(int(row["cpus"]) for row in trace) <= 2
    print(f"test profile: {len(trace)} tasks in {took:.0f} s")


def test_real_outputs_hold_embeddings_domains_metrics(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    import anndata as ad
    import pandas as pd

    outdir = cwd / "results"
    groups = _group_dirs(outdir)
    assert groups, f"no group folder in {outdir}"
    structures = {}
    for group_dir in groups:
        group = group_dir.name
        table = pd.read_csv(group_dir / f"{group}.metrics.csv")
        assert sorted(table["method"]) == sorted(METHODS)
        for method in METHODS:
            run = group_dir / method / "seed0"
            prefix = f"{group}_{method}_s0"
            adata = ad.read_h5ad(run / f"{prefix}.h5ad")
            emb = adata.obsm[f"X_{method}"]
            assert emb.shape[0] == adata.n_obs and emb.shape[1] >= 2
            assert pd.notna(emb).all()
            domains = adata.obs[f"domain_{method}"]
            assert domains.nunique() >= 2
            assert adata.obs["slice"].nunique() == 2  # both slices were integrated jointly
            calls = pd.read_csv(run / f"{prefix}.domains.csv")
            assert len(calls) == adata.n_obs and {"barcode", "domain"} <= set(calls.columns)
            loss = pd.read_csv(run / f"{prefix}.loss.csv")
            assert len(loss) > 0
            assert (run / f"{prefix}.pt").stat().st_size > 0
            metrics = json.loads((run / f"{prefix}.metrics.json").read_text())
            assert metrics["ari"] >= ARI_FLOOR, f"{method}: ARI {metrics['ari']:.3f} < {ARI_FLOOR}"
            assert table.loc[table["method"] == method, "ari"].iloc[0] == pytest.approx(metrics["ari"])
            structures[str((run / f"{prefix}.h5ad").relative_to(outdir))] = h5ad_structure(run / f"{prefix}.h5ad")
        for method in METHODS:
            path = group_dir / f"{group}_{method}.prepared.h5ad"
            structures[str(path.relative_to(outdir))] = h5ad_structure(path)
    for qc in sorted((outdir / "slices").glob("*/*.qc.json")):
        assert json.loads(qc.read_text()), qc
    check_snapshot("test_h5ad.json", structures)


def test_real_spatialdata_store_holds_every_method_and_seed(real_run):
    """<group>/<group>.zarr opens with spatialdata.read_zarr; its table holds the domains of every run."""
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    import anndata as ad
    import pandas as pd
    import spatialdata as sd

    for group_dir in _group_dirs(cwd / "results"):
        group = group_dir.name
        runs = pd.read_csv(group_dir / f"{group}.metrics.csv")[["method", "seed"]].itertuples(index=False)
        sdata = sd.read_zarr(group_dir / f"{group}.zarr")
        table = sdata.tables["table"]
        for method, seed in runs:
            domains = table.obs[f"domain_{method}_s{seed}"]
            clustered = ad.read_h5ad(group_dir / method / f"seed{seed}" / f"{group}_{method}_s{seed}.h5ad")
            assert list(domains.astype(str)) == list(clustered.obs.loc[table.obs_names, f"domain_{method}"].astype(str))
            assert table.obsm[f"X_{method}_s{seed}"].shape == clustered.obsm[f"X_{method}"].shape
        slices = sorted(table.obs["slice"].astype(str).unique())
        assert sorted(sdata.shapes) == [f"{s}_spots" for s in slices]
        assert sorted(sdata.images) == [f"{s}_image" for s in slices]  # the demo's slices have H&E images


def _spatialdata_store(h5ad: Path, image: Path, out: Path) -> Path:
    """A demo slice as a SpatialData store laid out as spatialdata-io writes Visium: counts in the table,
    spots as circles in 'global' (full-resolution pixels), the full-resolution H&E as an image element."""
    import anndata as ad
    import cv2
    import numpy as np
    import pandas as pd
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity

    a = ad.read_h5ad(h5ad)
    (lib,) = a.uns["spatial"]
    radius = a.uns["spatial"][lib]["scalefactors"]["spot_diameter_fullres"] / 2
    spots = ShapesModel.parse(np.asarray(a.obsm["spatial"], dtype=float), geometry=0, radius=np.full(a.n_obs, radius),
                              index=np.arange(a.n_obs), transformations={"global": Identity()})
    table = ad.AnnData(X=a.X, obs=pd.DataFrame({"truth": a.obs["truth"].to_numpy(), "region": "spots",
                                                "location_id": np.arange(a.n_obs)}, index=a.obs_names), var=a.var[[]])
    table.obs["region"] = table.obs["region"].astype("category")
    table = TableModel.parse(table, region="spots", region_key="region", instance_key="location_id")
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    he = Image2DModel.parse(rgb, dims=("y", "x", "c"), c_coords=["r", "g", "b"], transformations={"global": Identity()})
    sd.SpatialData(images={"he_full_image": he}, shapes={"spots": spots}, tables={"table": table}).write(out)
    return out


@pytest.fixture(scope="module")
def spatialdata_input_run(tmp_path_factory):
    """The demo's two slices given as SpatialData stores (no image column: the H&E is in the store), one method."""
    cwd = tmp_path_factory.mktemp("sdata_input")
    lines = ["sample,group,data,platform,truth,n_domains"]
    for i in (0, 1):
        _spatialdata_store(DEMO / f"slice{i}.h5ad", DEMO / f"slice{i}_fullres.jpg", cwd / f"slice{i}.zarr")
        lines.append(f"slice{i},demo,slice{i}.zarr,visium,truth,5")
    (cwd / "sheet.csv").write_text("\n".join(lines) + "\n")
    res = nextflow(["run", str(ROOT), "-profile", "test", "--input", "sheet.csv", "--methods", "staig",
                    "--skip_report", "--skip_multiqc", "--outdir", "results", "-w", "work",
                    "--trace_report_suffix", "sdata"], cwd, timeout=1800)
    return cwd, res


def test_spatialdata_input_runs_through_the_pipeline(spatialdata_input_run):
    cwd, res = spatialdata_input_run
    assert res.returncode == 0, explain(res)
    import anndata as ad
    import spatialdata as sd

    outdir = cwd / "results"
    valid = list(csv.DictReader((outdir / "pipeline_info/samplesheet.valid.csv").open()))
    assert [r["has_image"].lower() for r in valid] == ["true", "true"]  # the stores' own H&E
    counts = task_counts(read_trace(outdir / "pipeline_info/execution_trace_sdata.txt"))
    assert counts["SPATIALDOMAINS_IMAGE_FEATURES"] == 2 and counts["SPATIALDOMAINS_TO_SPATIALDATA"] == 1
    clustered = ad.read_h5ad(outdir / "demo/staig/seed0/demo_staig_s0.h5ad")
    assert "X_image" in clustered.obsm and clustered.obs["slice"].nunique() == 2
    sdata = sd.read_zarr(outdir / "demo/demo.zarr")
    assert list(sdata.tables["table"].obs["domain_staig_s0"].astype(str)) == list(
        clustered.obs.loc[sdata.tables["table"].obs_names, "domain_staig"].astype(str))
    assert sorted(sdata.images) == ["slice0_image", "slice1_image"]


REPORT_SECTIONS = ("summary", "qc", "metrics", "maps", "umap", "loss", "stability", "comparison", "consensus", "deg",
                   "go")


def test_real_group_report_has_every_section_and_resolving_links(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    import re

    import pandas as pd

    outdir = cwd / "results"
    for group_dir in _group_dirs(outdir):
        report = group_dir / "report.html"
        assert report.exists(), f"{report} is missing"
        html = report.read_text()
        for section in REPORT_SECTIONS:
            assert f'<section id="{section}"' in html, f"{report}: section {section!r} is missing"
        # the marker and enrichment tables are published beside the report, where its links point
        links = sorted(set(re.findall(r'href="(analysis/[^"]+)"', html)))
        for method in METHODS:
            assert f"analysis/{group_dir.name}_{method}_s0.deg.csv" in links, links
            assert f"analysis/{group_dir.name}_{method}_s0.go.csv" in links, links
        for link in links:
            assert (group_dir / link).is_file(), f"{report} links {link}, which was not published"
        deg = pd.read_csv(group_dir / f"analysis/{group_dir.name}_staig_s0.deg.csv")
        assert deg["significant"].any() and set(deg["method"]) == {"staig"}
        go = pd.read_csv(group_dir / f"analysis/{group_dir.name}_staig_s0.go.csv")
        assert len(go) > 0   # the demo's planted programmes are its gene sets
        # the run summary shows the run's parameters and the versions of the tasks before it
        assert "staig_epochs" in html and "SPATIALDOMAINS_TRAIN" in html
        assert (group_dir / f"{group_dir.name}.consensus.csv").exists()


def test_real_multiqc_lists_every_slice_and_method_with_metrics(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    import pandas as pd

    outdir = cwd / "results"
    assert (outdir / "multiqc/multiqc_report.html").exists()
    data = outdir / "multiqc/multiqc_data"
    slices = sorted(p.name for p in (outdir / "slices").iterdir())
    qc = pd.read_csv(data / "multiqc_spatialdomains_qc_table.txt", sep="\t")
    assert sorted(qc["Sample"]) == slices and (qc["spots_kept"] > 0).all()
    runs = pd.read_csv(data / "multiqc_spatialdomains_metrics_table.txt", sep="\t")
    groups = [g.name for g in _group_dirs(outdir)]
    assert sorted(runs["Sample"]) == sorted(f"{g}_{m}_s0" for g in groups for m in METHODS)
    assert sorted(runs["method"]) == sorted(METHODS * len(groups))
    for _, row in runs.iterrows():   # the same numbers as the run's own metrics JSON
        metrics = json.loads(next(outdir.glob(f"*/{row['method']}/seed0/{row['Sample']}.metrics.json")).read_text())
        for key in ("ari", "nmi", "silhouette"):
            assert row[key] == pytest.approx(metrics[key], rel=1e-4), (row["Sample"], key)
    summary = pd.read_csv(data / "multiqc_spatialdomains_summary_table.txt", sep="\t")
    assert sorted(summary["method"]) == sorted(METHODS * len(groups)) and summary["ari_mean"].notna().all()
    html = (outdir / "multiqc/multiqc_report.html").read_text()
    for section in ("spatialdomains_metrics", "spatialdomains_qc", "spatialdomains_summary", "multiqc_software_versions",
                    "spatialdomains-spatialdomains-summary"):
        assert f'id="{section}"' in html, section
    for name in slices + list(METHODS):
        assert name in html, name


def test_real_pipeline_info_holds_the_provenance(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    import yaml

    info = cwd / "results/pipeline_info"
    for name in ("execution_trace_run1.txt", "execution_timeline_run1.html", "execution_report_run1.html",
                 "pipeline_dag_run1.html", "params_run1.json", "samplesheet.valid.csv",
                 "spatialdomains_software_versions.yml"):
        assert (info / name).is_file() and (info / name).stat().st_size > 0, name
    trace = read_trace(info / "execution_trace_run1.txt")
    processes = {short(r["process"]) for r in trace}
    versions = yaml.safe_load((info / "spatialdomains_software_versions.yml").read_text())
    assert processes <= set(versions), processes - set(versions)
    # the trace records the container of every task: none in a run without a container engine
    assert {r["container"] for r in trace} == {"-"}, {r["container"] for r in trace}
    assert "# container" not in (info / "spatialdomains_software_versions.yml").read_text()
    assert json.loads((info / "params_run1.json").read_text())["staig_epochs"] == 60


# --- (c) -resume -----------------------------------------------------------------------------------------------

def test_resume_reruns_nothing(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    again = nextflow(["run", str(ROOT), "-profile", "test", "--outdir", "results_resume", "-w", "work",
                      "--trace_report_suffix", "run2", "-resume"], cwd)
    assert again.returncode == 0, explain(again)
    trace = read_trace(cwd / "results_resume/pipeline_info/execution_trace_run2.txt")
    assert trace and all(row["status"] == "CACHED" for row in trace), [(r["name"], r["status"]) for r in trace]
    assert "Submitted process" not in again.stdout


def test_resume_after_changing_one_method_reruns_only_that_method(real_run):
    cwd, res, _ = real_run
    assert res.returncode == 0, explain(res)
    changed = nextflow(["run", str(ROOT), "-profile", "test", "--outdir", "results_changed", "-w", "work",
                        "--trace_report_suffix", "run3", "--staig_epochs", "59", "-resume"], cwd)
    assert changed.returncode == 0, explain(changed)
    trace = read_trace(cwd / "results_changed/pipeline_info/execution_trace_run3.txt")
    rerun = sorted((short(r["process"]), r["tag"]) for r in trace if r["status"] != "CACHED")
    group = _group_dirs(cwd / "results")[0].name
    multiqc = [tag for name, tag in rerun if name == "MULTIQC"]   # the nf-core module has no tag
    assert rerun == sorted([
        ("SPATIALDOMAINS_TRAIN", f"{group}_staig_s0"),
        ("SPATIALDOMAINS_CLUSTER", f"{group}_staig_s0"),
        ("SPATIALDOMAINS_EVALUATE", f"{group}_staig_s0"),
        ("SPATIALDOMAINS_ANALYSE", f"{group}_staig_s0"),
        ("SPATIALDOMAINS_COLLECT_METRICS", group),
        ("SPATIALDOMAINS_REPORT", group),      # its run summary shows the parameters
        ("SPATIALDOMAINS_TO_SPATIALDATA", group),   # the store holds the staig domains
        ("SPATIALDOMAINS_MULTIQC_CONTENT", "run"),
        ("MULTIQC", multiqc[0] if multiqc else "?"),
    ]), rerun


# --- (d) bad sample sheets fail fast ---------------------------------------------------------------------------

def _demo_rows() -> list[dict[str, str]]:
    with open(DEMO / "samplesheet.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:  # absolute paths, so the bad sheets can live in tmp_path
        for col in ("data", "image"):
            if row.get(col):
                row[col] = str((DEMO / row[col]).resolve())
    return rows


def _write(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _missing_column(tmp: Path) -> tuple[Path, list[str]]:
    rows = _demo_rows()
    cols = [c for c in rows[0] if c != "data"]
    return _write(tmp / "sheet.csv", rows, cols), ["column 'data': required column is missing"]


def _duplicate_sample(tmp: Path) -> tuple[Path, list[str]]:
    rows = _demo_rows()
    rows[1]["sample"] = rows[0]["sample"]
    return _write(tmp / "sheet.csv", rows, list(rows[0])), ["row 2, column 'sample': duplicate sample id"]


def _missing_file(tmp: Path) -> tuple[Path, list[str]]:
    rows = _demo_rows()
    rows[1]["data"] = str(tmp / "nowhere.h5ad")
    return _write(tmp / "sheet.csv", rows, list(rows[0])), ["row 2, column 'data': file not found"]


def _unknown_platform(tmp: Path) -> tuple[Path, list[str]]:
    rows = _demo_rows()
    rows[0]["platform"] = "visiumm"
    return _write(tmp / "sheet.csv", rows, list(rows[0])), ["row 1, column 'platform': platform must be one of"]


@pytest.mark.parametrize("make_sheet", [_missing_column, _duplicate_sample, _missing_file, _unknown_platform],
                         ids=["missing-column", "duplicate-sample", "missing-file", "unknown-platform"])
def test_bad_samplesheet_fails_fast_with_row_message(tmp_path, make_sheet):
    sheet, messages = make_sheet(tmp_path)
    start = time.monotonic()
    res = nextflow(["run", str(ROOT), "-profile", "test", "--input", str(sheet), "--outdir", "results",
                    "-w", "work", "--trace_report_suffix", "bad"], tmp_path, timeout=300)
    took = time.monotonic() - start
    assert res.returncode != 0, explain(res)
    for message in messages:
        assert message in res.stderr, f"{message!r} not on stderr\n{explain(res)}"
    trace = read_trace(tmp_path / "results/pipeline_info/execution_trace_bad.txt")
    assert [(short(r["process"]), r["status"]) for r in trace] == [("SPATIALDOMAINS_VALIDATE", "FAILED")], trace
    assert took < FAIL_FAST_S, f"took {took:.1f} s"


# --- init: help, missing input, profiles -----------------------------------------------------------------------

def test_help_lists_schema_parameters(tmp_path):
    res = nextflow(["run", str(ROOT), "--help"], tmp_path, timeout=300)
    assert res.returncode == 0, explain(res)
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    for group in schema["$defs"].values():
        for name, prop in group["properties"].items():
            if not prop.get("hidden"):
                assert f"--{name} " in res.stdout, name
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_missing_input_is_a_clear_error(tmp_path):
    res = nextflow(["run", str(ROOT), "--outdir", "results"], tmp_path, timeout=300)
    assert res.returncode != 0
    assert "Missing --input" in res.stdout + res.stderr, explain(res)


@pytest.mark.parametrize("profiles", ["test,gpu,docker", "test_full,slurm,singularity,gpu", "podman,apptainer",
                                      "awsbatch", "google_batch", "k8s,gpu"])
def test_profiles_parse(tmp_path, profiles):
    res = nextflow(["config", "-flat", "-profile", profiles, str(ROOT)], tmp_path, timeout=300)
    assert res.returncode == 0, explain(res)
    if "gpu" in profiles:
        assert "accelerator = 1" in res.stdout
    if "slurm" in profiles:
        assert "process.executor = 'slurm'" in res.stdout
        assert "--gres=gpu:${task.accelerator.request}" in res.stdout and "singularity.autoMounts = true" in res.stdout
        assert "executor.queueSize = 50" in res.stdout
    for executor in ("awsbatch", "google-batch", "k8s"):
        if executor.replace("-", "_") in profiles:
            assert f"process.executor = '{executor}'" in res.stdout
    # executor settings belong to the site (environment or -c site.config), not to the pipeline's parameters
    assert not [line for line in res.stdout.splitlines()
                if line.startswith(("params.slurm_", "params.aws", "params.google_", "params.k8s_"))]


def test_site_settings_of_the_executor_profiles_come_from_the_environment(tmp_path):
    from nfutil import nextflow as nextflow_env

    site = {"SPATIALDOMAINS_SLURM_QUEUE": "cpu", "SPATIALDOMAINS_SLURM_OPTIONS": "--account=lab",
            "SPATIALDOMAINS_AWSBATCH_QUEUE": "batchq", "GOOGLE_CLOUD_PROJECT": "proj",
            "SPATIALDOMAINS_K8S_NAMESPACE": "lab", "SPATIALDOMAINS_K8S_STORAGE_MOUNT": "/data",
            "UNRELATED_TOKEN": "s3cr3t-value"}
    expected = {"slurm": ["process.queue = 'cpu'", "process.clusterOptions = '--account=lab'"],
                "awsbatch": ["process.queue = 'batchq'"], "google_batch": ["google.project = 'proj'"],
                "k8s": ["k8s.namespace = 'lab'", "k8s.storageMountPath = '/data'", "workDir = '/data/work'"]}
    for profile, lines in expected.items():
        res = nextflow_env(["config", "-flat", "-profile", profile, str(ROOT)], tmp_path, timeout=300, env=site)
        assert res.returncode == 0, explain(res)
        for line in lines:
            assert line in res.stdout, (profile, line)
        assert "s3cr3t-value" not in res.stdout   # the profiles read single variables; the environment stays out


def test_schema_methods_are_the_registry():
    """The `methods` pattern of nextflow_schema.json names exactly the registered methods."""
    import re

    from spatialdomains.models import METHODS as REGISTRY

    pattern = json.loads((ROOT / "nextflow_schema.json").read_text())["$defs"]["domain_options"]["properties"][
        "methods"]["pattern"]
    named = set(re.findall(r"[a-z_]+", re.sub(r"\\[sd]", "", pattern)))
    assert named == set(REGISTRY), (named, sorted(REGISTRY))
    params = {name for group in json.loads((ROOT / "nextflow_schema.json").read_text())["$defs"].values()
              for name in group["properties"]}
    for method in REGISTRY:  # every method has its own epochs / params options (conf/modules.config reads them)
        assert re.fullmatch(pattern, method) and re.fullmatch(pattern, ",".join(sorted(REGISTRY)))
        assert {f"{method}_epochs", f"{method}_params"} <= params, method
