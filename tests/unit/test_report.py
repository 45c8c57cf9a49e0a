"""Per-group HTML report (self-contained, every section, decodable images), consensus domains, MultiQC content
(rendered by a real MultiQC run) and a headless Chromium check of the report."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

SECTIONS = ["summary", "qc", "metrics", "maps", "umap", "loss", "stability", "comparison", "consensus", "deg", "go"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# a small clustered group without training: embeddings = spatially smoothed PCA + seed noise
# --------------------------------------------------------------------------------------------------


def _fake_group(out: Path, *, n_spots=300, n_genes=120, n_domains=4, methods=("staig", "spotscape"), seeds=(0, 1)):
    """Two slices; per method x seed: truth labels relabelled with ~8 % of spots moved, an embedding of
    spatially smoothed PCA + noise, a loss history, metrics from ``metrics.evaluate``, DEG and enrichment."""
    import scipy.sparse as sp
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    from spatialdomains import analysis, pp, synthetic
    from spatialdomains import metrics as M
    from spatialdomains._utils import write_csv_atomic, write_h5ad_atomic, write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    slices = synthetic.make_slices(n_slices=2, n_spots=n_spots, n_domains=n_domains, n_genes=n_genes,
                                     random_state=4)
    gmt = analysis.write_gmt(out / "genesets.gmt", *synthetic.gene_sets(slices[0]))
    sets, desc = analysis.read_gmt(gmt)
    files = {"clustered": [], "metrics": [], "deg": [], "go": [], "qc": []}
    for a in slices:  # the qc.json of `spatialdomains qc` with no threshold (pp.qc's numba warm-up is slow)
        counts = sp.csr_matrix(a.layers["counts"])
        a.obs["total_counts"] = np.asarray(counts.sum(1)).ravel()
        a.obs["n_genes_by_counts"] = np.diff(counts.indptr)
        mt = a.var_names.str.startswith("MT-")
        a.obs["pct_counts_mt"] = 100 * np.asarray(counts[:, mt].sum(1)).ravel() / a.obs["total_counts"]
        q = pp.qc_summary(a)
        q.update(n_spots_in=a.n_obs, n_genes_in=a.n_vars, n_spots_out=a.n_obs, n_genes_out=a.n_vars,
                 n_spots_removed=0, n_genes_removed=0,
                 thresholds=dict(min_counts=0, min_genes=0, max_mt_pct=100.0, min_cells=0))
        files["qc"].append(write_json_atomic(out / f"{q['slice']}.qc.json", q))
    adata = pp.concat_slices(slices)
    pcs = PCA(10, random_state=0).fit_transform(analysis.log_normalise(adata.layers["counts"]).toarray())
    smooth = np.zeros_like(pcs)
    for s in adata.obs["slice"].cat.categories:
        m = np.flatnonzero(adata.obs["slice"].to_numpy() == s)
        _, idx = NearestNeighbors(n_neighbors=7).fit(adata.obsm["spatial"][m]).kneighbors(adata.obsm["spatial"][m])
        smooth[m] = pcs[m][idx].mean(1)
    truth = adata.obs["truth"].cat.codes.to_numpy()
    (out / "analysis").mkdir(exist_ok=True)
    for i, meth in enumerate(methods):
        for seed in seeds:
            rng = np.random.default_rng(10 * i + seed)
            labels = rng.permutation(n_domains)[truth]
            moved = rng.random(len(labels)) < 0.08
            labels[moved] = rng.integers(0, n_domains, moved.sum())
            b = adata.copy()
            b.obsm[f"X_{meth}"] = (smooth + rng.normal(0, 0.2 * smooth.std(), smooth.shape)).astype(np.float32)
            b.obs[f"domain_{meth}"] = pd.Categorical(labels.astype(str))
            ep = np.arange(30)
            b.uns["spatialdomains"] = {
                f"train_{meth}": {"seed": seed, "train_seconds": 1.0, "device": "cpu",
                                  "history": {"epoch": ep, "loss": np.exp(-ep / (5.0 + seed)) + 0.1,
                                              "recon": np.exp(-ep / 8.0)}},
                f"cluster_{meth}": {"backend": "mclust", "seed": seed, "n_domains": n_domains,
                                    "k_selection": "argument"}}
            b.X = sp.csr_matrix(b.layers["counts"])
            stem = f"g1_{meth}_s{seed}"
            met = M.evaluate(b, embedding_key=f"X_{meth}", domain_key=f"domain_{meth}")
            met["method"] = meth
            files["metrics"].append(write_json_atomic(out / f"{stem}.json", met))
            b.X = None
            files["clustered"].append(write_h5ad_atomic(b, out / f"{stem}.h5ad", compression=None))
            deg = analysis.domain_markers(b, meth, group="g1")
            go = analysis.domain_enrichment(deg, sets, descriptions=desc, min_set_size=2)
            files["deg"].append(write_csv_atomic(deg, out / "analysis" / f"{stem}.deg.csv", index=False))
            files["go"].append(write_csv_atomic(go, out / "analysis" / f"{stem}.go.csv", index=False))
    (out / "params.json").write_text(json.dumps({"input": "samplesheet.csv", "outdir": "results",
                                                 "deg": {"logfc": 0.25, "padj": 0.05}, "seeds": len(seeds)}))
    (out / "versions.yml").write_text('"SPATIALDOMAINS:SPATIALDOMAINS_TRAIN":\n  spatialdomains: 0.1.0\n  torch: 2.5.1\n'
                                      '"SPATIALDOMAINS:SPATIALDOMAINS_REPORT":\n  multiqc: "1.35"\n')
    files["params"] = out / "params.json"
    files["versions"] = out / "versions.yml"
    return files


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    return _fake_group(tmp_path_factory.mktemp("group"))


@pytest.fixture(scope="module")
def rendered(group):
    """The report written through the CLI, as pipelines call it."""
    from spatialdomains.cli import main

    out = group["params"].parent / "report" / "g1.html"
    args = ["report", "--group", "g1", "-o", str(out), "--params", str(group["params"]), "--versions",
            str(group["versions"]), "--consensus-csv", str(out.parent / "consensus.csv"), "--mqc-dir",
            str(out.parent / "mqc"), "--umap-max-n", "400"]
    for kind in ("clustered", "metrics", "deg", "go", "qc"):
        for p in group[kind]:
            args += [f"--{kind}", str(p)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return out


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.ids, self.tables = [], [], [], {}
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href", "action", "data", "poster"):
            if key in a and tag != "img":
                self.refs.append((tag, key, a[key] or ""))
        if tag in ("link", "script", "iframe", "object", "embed") and "src" in a:
            self.refs.append((tag, "src", a["src"]))
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = 0
        if tag == "tr" and self._table:
            self.tables[self._table] += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------


def test_consensus_is_majority_after_alignment():
    from spatialdomains.report import consensus_labels

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 50)
    a = truth.copy()
    b = np.array([3, 2, 1, 0])[truth]  # a relabelling of a
    c = truth.copy()
    flip = rng.choice(200, 30, replace=False)
    c[flip] = (c[flip] + 1) % 4  # a noisier copy
    res = consensus_labels([c.astype(str), a.astype(str), b.astype(str)])
    assert res["reference"] in (1, 2)  # a and b agree perfectly: one of them is the medoid
    np.testing.assert_allclose(res["ari_to_each"][1:], [1.0, 1.0])
    assert res["ari_to_each"][0] < 1.0
    assert res["pairwise"].shape == (3, 3) and np.allclose(np.diag(res["pairwise"]), 1)
    # with extra clusters in one labelling: unmatched clusters get new labels, never silently merged
    d = truth.copy()
    d[:10] = 7
    res = consensus_labels([d.astype(str), d.astype(str), truth.astype(str)])
    assert res["reference"] in (0, 1) and "7" in set(res["labels"])


def test_report_sections_and_inline_images(rendered, group):
    text = rendered.read_text()
    p = _Collect()
    p.feed(text)
    for sid in SECTIONS:
        assert sid in p.ids, f"section {sid} missing"
    # self-contained: no network reference anywhere in attributes, no CDN
    for tag, key, val in p.refs:
        assert not re.match(r"^\s*(https?:)?//", val), (tag, key, val)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    # every image is an inline PNG that decodes
    assert len(p.imgs) >= 12
    from PIL import Image
    import io

    for src in p.imgs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == PNG_MAGIC
        w, h = Image.open(io.BytesIO(raw)).size
        assert 50 < w < 3000 and 50 < h < 5000
    # tables populated
    for tid in ("tbl-metrics", "tbl-metrics-runs", "tbl-qc", "tbl-consensus", "tbl-deg", "tbl-go", "tbl-params",
                "tbl-versions", "tbl-stability"):
        assert p.tables.get(tid, 0) > 1, (tid, p.tables)
    assert p.tables["tbl-metrics-runs"] == 1 + 4  # header + 2 methods x 2 seeds
    # relative CSV links that resolve from the report's folder
    csv_links = [v for t, k, v in p.refs if k == "href" and v.endswith(".csv")]
    assert len(csv_links) == 8
    for link in csv_links:
        assert not os.path.isabs(link) and (rendered.parent / link).resolve().exists(), link
    for name in ("ARI", "NMI", "SC", "DB", "iLISI", "seed 0", "staig", "spotscape", "slice0", "slice1", "PROGRAMME_D"):
        assert name in text
    assert rendered.stat().st_size < 2_000_000


def test_report_side_outputs(rendered):
    cons = pd.read_csv(rendered.parent / "consensus.csv")
    assert list(cons.columns) == ["spot", "slice", "consensus_staig", "consensus_spotscape"]
    assert len(cons) == 600 and set(cons["slice"]) == {"slice0", "slice1"}
    png = rendered.parent / "mqc" / "g1_domains_mqc.png"
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_report_link_prefix_and_missing_inputs(group, tmp_path):
    from spatialdomains.report import report

    out = report(group["clustered"][:2], tmp_path / "r.html", link_prefix="analysis/", deg=group["deg"][:1],
                 umap_max_n=60, dpi=40)
    text = out.read_text()
    assert 'href="analysis/g1_staig_s0.deg.csv"' in text
    assert "No parameter file was given" in text and "No enrichment tables were given" in text
    assert "computed by the report" in text  # no metrics JSON: label metrics computed on the fly
    from spatialdomains._utils import InputError

    with pytest.raises(InputError, match="both staig seed 0"):
        report([group["clustered"][0], group["clustered"][0]], tmp_path / "dup.html")


def test_multiqc_content_renders_in_multiqc(group, rendered, tmp_path):
    from spatialdomains.cli import main

    repo = Path(__file__).resolve().parents[2]
    outdir = tmp_path / "mqc_in"
    args = ["multiqc-content", "--outdir", str(outdir), "--params", str(group["params"]), "--versions",
            str(group["versions"])]
    for p in group["metrics"]:
        args += ["--metrics", str(p)]
    for p in group["qc"]:
        args += ["--qc", str(p)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    names = {p.name for p in outdir.iterdir()}
    assert {"spatialdomains_qc_mqc.tsv", "spatialdomains_metrics_mqc.tsv", "spatialdomains_summary_mqc.tsv",
            "spatialdomains_ari_mqc.tsv", "spatialdomains_mqc_versions.yml", "workflow_summary_mqc.yaml"} <= names
    shutil.copy(rendered.parent / "mqc" / "g1_domains_mqc.png", outdir)
    multiqc = Path(sys.executable).with_name("multiqc")
    if not multiqc.exists():
        pytest.skip("multiqc is not installed in this environment")
    proc = subprocess.run([str(multiqc), "-c", str(repo / "assets" / "multiqc_config.yml"), "-o",
                           str(tmp_path / "mqc_out"), "--no-ansi", "-f", str(outdir)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "MPLCONFIGDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    for sec in ("spatialdomains_qc", "spatialdomains_metrics", "spatialdomains_summary", "spatialdomains_ari",
                "spatialdomains-spatialdomains-summary", "g1_domains_mqc.png"):
        assert sec in log, log[-3000:]
    data = json.loads((tmp_path / "mqc_out" / "multiqc_data" / "multiqc_data.json").read_text())
    raw = data["report_saved_raw_data"]
    runs = raw["multiqc_spatialdomains_metrics_table"]
    assert set(runs) == {f"g1_{m}_s{s}" for m in ("staig", "spotscape") for s in (0, 1)}
    for name, row in runs.items():
        met = json.loads(Path(group["params"].parent / f"{name}.json").read_text())
        np.testing.assert_allclose(float(row["ari"]), met["ari"], atol=1e-5)
        np.testing.assert_allclose(float(row["silhouette"]), met["silhouette"], atol=1e-5)
    assert set(raw["multiqc_spatialdomains_qc_table"]) == {"slice0", "slice1"}
    html_text = (tmp_path / "mqc_out" / "multiqc_report.html").read_text()
    for name in list(runs) + ["slice0", "slice1", "Domain metrics per run", "Slice QC", "Software Versions"]:
        assert name in html_text, name
    versions = (tmp_path / "mqc_out" / "multiqc_data" / "multiqc_software_versions.txt").read_text()
    assert "torch" in versions and "2.5.1" in versions


# --------------------------------------------------------------------------------------------------
# headless Chromium
# --------------------------------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"could not install chromium as root: {proc.stderr[-2000:]}"
        return shutil.which("chromium")
    return None


def test_report_in_headless_chromium(rendered, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and we are not root (apt-get install chromium)")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    url = rendered.resolve().as_uri()
    shot = tmp_path / "report.png"
    proc = subprocess.run(common + [f"--screenshot={shot}", url], capture_output=True, text=True, timeout=180)
    assert shot.exists() and shot.read_bytes()[:8] == PNG_MAGIC, proc.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[1] == 1280 and img.std() > 10  # not a blank page
    proc = subprocess.run(common + ["--virtual-time-budget=10000", "--dump-dom", url], capture_output=True, text=True,
                          timeout=180)
    m = re.search(r'<pre id="sd-checks">([^<]*)</pre>', proc.stdout)
    assert m and m.group(1), proc.stdout[-1000:] + proc.stderr[-2000:]
    checks = json.loads(m.group(1).replace("&quot;", '"'))
    assert checks["errors"] == []
    assert checks["images"] >= 12 and checks["images_ok"] == checks["images"], checks
    assert all(n > 0 for n in checks["tables"].values()), checks["tables"]
    assert checks["tables"]["tbl-deg"] > 10 and checks["tables"]["tbl-go"] > 3
    # the page's own sort and search work (the ?selftest hook clicks a numeric header and types a query)
    proc = subprocess.run(common + ["--virtual-time-budget=10000", "--dump-dom", url + "?selftest"],
                          capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="sd-checks">([^<]*)</pre>', proc.stdout)
    st = json.loads(m.group(1).replace("&quot;", '"'))["selftest"]
    assert st["table"] == "tbl-deg" and st["sorted"] is True, st
    assert 0 < st["shown"] < st["total"], st
