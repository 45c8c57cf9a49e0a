"""DEG per domain, offline gene-set enrichment (gseapy vs scipy), gene-id matching, GO from OBO + GAF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spatialdomains import analysis
from spatialdomains._utils import InputError

TOP_N = 20  # planted markers per domain (make_slice default n_markers_per_domain)


@pytest.fixture(scope="module")
def truth_deg(_layered_slice):
    a = _layered_slice
    return analysis.rank_domain_genes(a.layers["counts"], a.obs["truth"].to_numpy(), list(a.var_names))


def test_deg_table_shape_and_thresholds(truth_deg, _layered_slice):
    df = truth_deg
    assert list(df.columns) == analysis.DEG_COLUMNS
    n_dom = _layered_slice.obs["truth"].nunique()
    assert len(df) == n_dom * _layered_slice.n_vars
    assert df.groupby("domain")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    expect = (df["log2fc"].abs() > 0.25) & (df["pval_adj"] < 0.05)
    assert (df["significant"] == expect).all()
    assert df["pval_adj"].between(0, 1).all() and (df["pval_adj"] >= df["pval"] - 1e-12).all()
    assert df["pct_in"].between(0, 1).all() and df["pct_out"].between(0, 1).all()
    stricter = analysis.rank_domain_genes(_layered_slice.layers["counts"][:, :40],
                                          _layered_slice.obs["truth"].to_numpy(),
                                          list(_layered_slice.var_names[:40]), logfc=1.0, padj=1e-6)
    assert ((stricter["log2fc"].abs() > 1.0) & (stricter["pval_adj"] < 1e-6) == stricter["significant"]).all()


def test_deg_recovers_planted_markers(truth_deg, _layered_slice):
    markers = _layered_slice.uns["markers"]
    precision, recall = {}, {}
    for dom, genes in markers.items():
        up = truth_deg[(truth_deg["domain"] == dom) & truth_deg["significant"] & (truth_deg["log2fc"] > 0)]
        top = up.sort_values("rank")["gene"].head(len(genes))
        precision[dom] = len(set(top) & set(genes)) / max(len(top), 1)
        recall[dom] = len(set(up["gene"]) & set(genes)) / len(genes)
    assert np.mean(list(precision.values())) >= 0.7, precision
    assert min(precision.values()) >= 0.5, precision
    assert min(recall.values()) >= 0.9, recall


def test_log_normalise_matches_scanpy(_layered_slice):
    import scanpy as sc

    a = _layered_slice[:200].copy()
    X = analysis.log_normalise(a.layers["counts"])
    b = sc.AnnData(a.layers["counts"].copy())
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    np.testing.assert_allclose(X.toarray(), b.X.toarray(), rtol=1e-5, atol=1e-5)


def test_enrichment_ranks_planted_programme_first(truth_deg, _layered_slice, tmp_path):
    from spatialdomains.synthetic import gene_sets

    gmt = analysis.write_gmt(tmp_path / "genesets.gmt", *gene_sets(_layered_slice))
    sets, desc = analysis.read_gmt(gmt)
    go = analysis.domain_enrichment(truth_deg, sets, descriptions=desc)
    assert list(go.columns) == analysis.GO_COLUMNS
    for dom in _layered_slice.uns["markers"]:
        sub = go[go["domain"] == dom]
        assert sub.iloc[0]["term"] == f"PROGRAMME_{dom}", sub.head()
        assert sub.iloc[0]["pval_adj"] < 1e-3
        assert sub.iloc[0]["description"].startswith("planted markers")
        assert all(g.split(";") == sorted(g.split(";")) for g in sub["genes"])


def test_gseapy_pvalues_equal_scipy_hypergeometric():
    from scipy.stats import hypergeom

    background = [f"g{i:02d}" for i in range(40)]
    sets = {
        "A": background[:10],  # 3 hits
        "B": background[8:20] + ["outside1", "outside2"],  # 3 hits; genes outside the background are dropped
        "C": background[30:36],  # 1 hit
        "D": background[36:40],  # no hit: not reported
    }
    query = ["g00", "g01", "g02", "g18", "g10", "g11", "g33", "not_tested"]
    res = analysis.enrich(query, sets, background).set_index("term")
    B, k = 40, 7
    expect = {"A": (3, 10), "B": (3, 12), "C": (1, 6)}
    assert set(res.index) == set(expect)
    for term, (x, m) in expect.items():
        assert res.loc[term, "n_hits"] == x and res.loc[term, "set_size"] == m
        assert res.loc[term, "n_background"] == B and res.loc[term, "n_query"] == k
        np.testing.assert_allclose(res.loc[term, "pval"], hypergeom.sf(x - 1, B, m, k), rtol=1e-10)
    # BH over the terms hit
    p = np.array([hypergeom.sf(x - 1, B, m, k) for x, m in expect.values()])
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    adj = np.empty_like(p)
    adj[order] = np.minimum(bh, 1)
    np.testing.assert_allclose(res.loc[list(expect), "pval_adj"].to_numpy(), adj, rtol=1e-10)
    assert res.loc["B", "genes"] == "g10;g11;g18"  # sorted, whatever gseapy's set order


def test_gene_id_mismatch_is_a_clear_error(truth_deg, _layered_slice):
    a = _layered_slice
    ens = {f"PROG{i}": [f"ENSG{j:011d}" for j in range(i * 20, i * 20 + 20)] for i in range(4)}
    with pytest.raises(InputError) as err:
        analysis.domain_enrichment(truth_deg, ens, id_columns={"var['gene_ids']": a.var["gene_ids"]},
                                   all_genes=list(a.var_names), source="ensembl.gmt")
    msg = str(err.value)
    assert "ensembl.gmt" in msg and "0 of" in msg
    assert "var_names look like symbol" in msg and "Ensembl ids" in msg and "ENSG" in msg
    assert "var['gene_ids']" in msg


def test_gene_ids_matched_through_id_column(truth_deg, _layered_slice, tmp_path):
    a = _layered_slice
    # the same programmes, written with the data's gene_ids instead of the symbols
    to_id = dict(zip(a.var_names, a.var["gene_ids"]))
    sets = {f"PROGRAMME_{d}": [to_id[g] for g in genes] for d, genes in a.uns["markers"].items()}
    mapping, info = analysis.match_gene_ids(list(a.var_names), {g for s in sets.values() for g in s},
                                            id_columns={"var['gene_ids']": a.var["gene_ids"]})
    assert info["id_column"] == "var['gene_ids']" and info["n_matched"] == sum(len(s) for s in sets.values())
    go = analysis.domain_enrichment(truth_deg, sets, id_columns={"var['gene_ids']": a.var["gene_ids"]},
                                    all_genes=list(a.var_names), min_overlap=0.05)
    first = go.groupby("domain").head(1).set_index("domain")["term"]
    assert all(first[d] == f"PROGRAMME_{d}" for d in a.uns["markers"])
    assert go["genes"].str.startswith("GENE").all()  # hits reported with the data's names


def test_id_style_and_versions():
    assert analysis.id_style(["ENSG00000141510", "ENSG00000012048.21"]) == "Ensembl"
    assert analysis.id_style(["ENSMUSG00000059552"]) == "Ensembl"
    assert analysis.id_style(["7157", "672"]) == "Entrez"
    assert analysis.id_style(["TP53", "Brca1"]) == "symbol"
    mapping, info = analysis.match_gene_ids(["A", "B"], {"ENSG00000000001", "ENSG00000000002"},
                                            id_columns={"ids": ["ENSG00000000001.5", "ENSG00000000002.1"]},
                                            min_overlap=0.5)
    assert mapping == {"A": "ENSG00000000001", "B": "ENSG00000000002"} and info["match"] == "no_version"
    mapping, info = analysis.match_gene_ids(["Gfap", "Mbp"], {"GFAP", "MBP"})
    assert mapping == {"Gfap": "GFAP", "Mbp": "MBP"} and info["match"] == "case"


def test_read_gmt_errors(tmp_path):
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET1\tdesc\tA\tB\nSET2 only-one-field\n")
    with pytest.raises(InputError, match=r"bad.gmt: line 2"):
        analysis.read_gmt(bad)
    with pytest.raises(InputError, match="does not exist"):
        analysis.read_gmt(tmp_path / "missing.gmt")


OBO = """format-version: 1.2

[Term]
id: GO:0008150
name: biological_process
namespace: biological_process

[Term]
id: GO:0000001
name: parent process
namespace: biological_process
is_a: GO:0008150 ! biological_process

[Term]
id: GO:0000002
name: child part
namespace: biological_process
alt_id: GO:0000099
relationship: part_of GO:0000001 ! parent process

[Term]
id: GO:0000003
name: obsolete thing
namespace: biological_process
is_obsolete: true

[Term]
id: GO:0003674
name: molecular_function
namespace: molecular_function

[Typedef]
id: part_of
name: part of
"""

GAF = "\n".join([
    "!gaf-version: 2.2",
    "\t".join(["UniProtKB", "P1", "GENEA", "", "GO:0000002", "PMID:1", "IDA", "", "P", "", "", "protein", "taxon:9606",
               "20200101", "UniProt"]),
    "\t".join(["UniProtKB", "P2", "GENEB", "", "GO:0000001", "PMID:1", "IDA", "", "P", "", "", "protein", "taxon:9606",
               "20200101", "UniProt"]),
    "\t".join(["UniProtKB", "P3", "GENEC", "NOT", "GO:0000002", "PMID:1", "IDA", "", "P", "", "", "protein",
               "taxon:9606", "20200101", "UniProt"]),
    "\t".join(["UniProtKB", "P4", "GENED", "", "GO:0003674", "PMID:1", "IDA", "", "F", "", "", "protein",
               "taxon:9606", "20200101", "UniProt"]),
    "\t".join(["UniProtKB", "P5", "GENEE", "", "GO:0000099", "PMID:1", "IDA", "", "P", "", "", "protein",
               "taxon:9606", "20200101", "UniProt"]),
    "\t".join(["UniProtKB", "P6", "GENEF", "", "GO:0000003", "PMID:1", "IDA", "", "P", "", "", "protein",
               "taxon:9606", "20200101", "UniProt"]),
]) + "\n"


def test_go_gmt_from_obo_gaf_propagates_to_ancestors(tmp_path):
    from spatialdomains.cli import main

    obo, gaf = tmp_path / "go.obo", tmp_path / "go.gaf"
    obo.write_text(OBO)
    gaf.write_text(GAF)
    names: dict[str, str] = {}
    sets = analysis.go_gmt_from_obo_gaf(obo, gaf, descriptions=names)
    assert sets == {
        "GO:0000002": ["GENEA", "GENEE"],  # GENEE via the alt_id; GENEC has a NOT qualifier
        "GO:0000001": ["GENEA", "GENEB", "GENEE"],  # part_of child propagated
        "GO:0008150": ["GENEA", "GENEB", "GENEE"],
    }
    assert names["GO:0000001"] == "parent process"
    mf = analysis.go_gmt_from_obo_gaf(obo, gaf, "molecular_function")
    assert mf == {"GO:0003674": ["GENED"]}
    ids = analysis.go_gmt_from_obo_gaf(obo, gaf, id_column="id")
    assert ids["GO:0000001"] == ["P1", "P2", "P5"]
    out = tmp_path / "go_bp.gmt"
    res = CliRunner().invoke(main, ["go-gmt", "--obo", str(obo), "--gaf", str(gaf), "-o", str(out)])
    assert res.exit_code == 0, res.output
    back, desc = analysis.read_gmt(out)
    assert back == sets and desc["GO:0000002"] == "child part"


def test_analyse_cli(tmp_path, _layered_slice):
    import anndata as ad

    from spatialdomains.cli import main
    from spatialdomains.synthetic import gene_sets

    a = _layered_slice[:, :120].copy()
    a.obs["domain_staig"] = a.obs["truth"].astype(str).astype("category")
    a.uns["spatialdomains"]["train_staig"] = {"seed": 3}
    path = tmp_path / "clustered.h5ad"
    a.write_h5ad(path)
    gmt = analysis.write_gmt(tmp_path / "genesets.gmt", *gene_sets(_layered_slice))
    args = ["analyse", "-i", str(path), "--method", "staig", "--gmt", str(gmt), "--deg-csv",
            str(tmp_path / "deg.csv"), "--go-csv", str(tmp_path / "go.csv"), "--plots-dir", str(tmp_path / "plots"),
            "--group", "g1", "--min-set-size", "2"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    deg = pd.read_csv(tmp_path / "deg.csv")
    go = pd.read_csv(tmp_path / "go.csv")
    assert list(deg.columns[:3]) == ["group", "method", "seed"] and set(deg["seed"]) == {3}
    assert set(deg["domain"]) == set(a.obs["truth"]) and len(go) > 0
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"staig_s3_volcano.png", "staig_s3_go.png"}
    assert (tmp_path / "plots" / "staig_s3_volcano.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a gene-set file with other ids: one line, exit 1, before any output
    bad = tmp_path / "ens.gmt"
    bad.write_text("".join(f"S{i}\tx\t" + "\t".join(f"ENSG{j:011d}" for j in range(i * 30, i * 30 + 30)) + "\n"
                           for i in range(3)))
    res = CliRunner().invoke(main, ["analyse", "-i", str(path), "--method", "staig", "--gmt", str(bad),
                                    "--deg-csv", str(tmp_path / "d2.csv"), "--go-csv", str(tmp_path / "g2.csv")])
    assert res.exit_code == 1
    assert "Ensembl" in res.output and "symbol" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["analyse", "-i", str(path), "--method", "spotscape", "--deg-csv",
                                    str(tmp_path / "d3.csv")])
    assert res.exit_code == 1 and "domain_spotscape" in res.output
    assert not ad.read_h5ad(path).uns.get("rank_genes_groups")


def test_deg_tests_a_per_domain_subsample_and_says_so(_layered_slice):
    a = _layered_slice
    labels = a.obs["truth"].astype(str).to_numpy()
    sizes = pd.Series(labels).value_counts()
    cap = int(sizes.min()) // 2
    df = analysis.rank_domain_genes(a.layers["counts"], labels, list(a.var_names), max_spots_per_domain=cap)
    per = df.drop_duplicates("domain").set_index("domain")
    assert (per["n_tested"] == cap).all()
    assert (per["n_in"] == sizes.reindex(per.index)).all()
    full = analysis.rank_domain_genes(a.layers["counts"], labels, list(a.var_names), max_spots_per_domain=None)
    assert (full.drop_duplicates("domain")["n_tested"].to_numpy() == full.drop_duplicates("domain")["n_in"]).all()
    # the subsample still finds each domain's planted markers at the top
    for dom, genes in a.uns["markers"].items():
        top = set(df[df["domain"] == dom].head(10)["gene"])
        assert len(top & set(genes)) >= 5, dom
    again = analysis.rank_domain_genes(a.layers["counts"], labels, list(a.var_names), max_spots_per_domain=cap)
    pd.testing.assert_frame_equal(df, again)  # seeded
