"""Analysis and report subcommands: analyse, report, multiqc-content, go-gmt."""

from __future__ import annotations

from pathlib import Path

import click

from ._base import input_option, main, output_option, threads_option

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@main.command("analyse")
@input_option("Clustered .h5ad with obs['domain_<method>'] and layers['counts'].")
@click.option("--method", required=True, help="Whose domains to analyse (obs['domain_<method>']).")
@click.option("--gmt", type=_FILE, default=None,
              help="Gene sets (GMT) for the enrichment; without it only DEG is run. Never fetched online.")
@click.option("--deg-csv", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="DEG table: one row per domain x gene.")
@click.option("--go-csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Enrichment table (required with --gmt).")
@click.option("--plots-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write <prefix>_volcano.png and <prefix>_go.png here.")
@click.option("--prefix", default=None, help="File-name prefix of the plots [default: <method>_s<seed>].")
@click.option("--group", default=None, help="Group id written into the tables' 'group' column.")
@click.option("--seed", type=int, default=None,
              help="Seed written into the tables [default: uns['spatialdomains']['train_<method>']['seed']].")
@click.option("--logfc", type=click.FloatRange(min=0), default=0.25, show_default=True,
              help="|log2 fold change| above which a gene can be significant.")
@click.option("--padj", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="BH-adjusted p below which a gene can be significant.")
@click.option("--min-overlap", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Smallest fraction of tested genes that must be in the gene sets (else an id-mismatch error).")
@click.option("--min-set-size", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--max-set-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--max-spots-per-domain", type=click.IntRange(min=10), default=5000, show_default=True,
              help="DEG tests a seeded uniform subsample of this many spots of a larger domain (table: n_tested).")
@threads_option
def analyse_cmd(input_path: Path, method: str, gmt: Path | None, deg_csv: Path, go_csv: Path | None,
                plots_dir: Path | None, prefix: str | None, group: str | None, seed: int | None, logfc: float,
                padj: float, min_overlap: float, min_set_size: int, max_set_size: int,
                max_spots_per_domain: int) -> None:
    """Marker genes of every domain (Wilcoxon vs rest) and their gene-set enrichment (hypergeometric)."""
    import anndata as ad

    from .. import analysis
    from .._utils import InputError, atomic_path, write_csv_atomic

    if gmt is not None and go_csv is None:
        raise click.UsageError("--gmt needs --go-csv")
    sets = desc = None
    if gmt is not None:  # read before the long DEG so a bad file fails fast
        sets, desc = analysis.read_gmt(gmt)
    adata = ad.read_h5ad(input_path)
    if f"domain_{method}" not in adata.obs:
        raise InputError(f"{input_path}: obs['domain_{method}'] not found; run `spatialdomains cluster` first")
    deg = analysis.domain_markers(adata, method, logfc=logfc, padj=padj, group=group, seed=seed,
                                  max_spots_per_domain=max_spots_per_domain)
    go = None
    if sets is not None:
        id_cols = {f"var[{c!r}]": adata.var[c].astype(str).to_numpy() for c in ("gene_ids", "gene_symbols",
                                                                              "gene_name", "symbol")
                   if c in adata.var}
        go = analysis.domain_enrichment(deg, sets, descriptions=desc, id_columns=id_cols,
                                        all_genes=list(adata.var_names), min_overlap=min_overlap,
                                        min_set_size=min_set_size, max_set_size=max_set_size, source=str(gmt))
    write_csv_atomic(deg, deg_csv, index=False)
    if go is not None:
        write_csv_atomic(go, go_csv, index=False)
    if plots_dir is not None:
        from ..report import plots

        plots_dir.mkdir(parents=True, exist_ok=True)
        seed_v = deg["seed"].iloc[0] if "seed" in deg and len(deg) else seed
        pre = prefix or f"{method}_s{seed_v if seed_v is not None else 0}"
        for name, png in (("volcano", plots.volcano(deg, logfc=logfc, padj=padj)),
                          ("go", plots.go_bars(go) if go is not None else None)):
            if png is not None:
                with atomic_path(plots_dir / f"{pre}_{name}.png") as tmp:
                    tmp.write_bytes(png)


@main.command("report")
@click.option("--clustered", "clustered", type=_FILE, multiple=True, required=True,
              help="Clustered .h5ad of one method x seed of the group (repeat).")
@output_option("The HTML report (self-contained).")
@click.option("--group", default=None, help="Group name for the title [default: the slice ids].")
@click.option("--metrics", type=_FILE, multiple=True, help="Metrics JSON of `spatialdomains evaluate` (repeat).")
@click.option("--deg", type=_FILE, multiple=True, help="DEG CSV of `spatialdomains analyse` (repeat).")
@click.option("--go", type=_FILE, multiple=True, help="Enrichment CSV of `spatialdomains analyse` (repeat).")
@click.option("--qc", type=_FILE, multiple=True, help="qc.json of `spatialdomains qc`, one per slice (repeat).")
@click.option("--params", type=_FILE, default=None, help="Pipeline parameters (JSON).")
@click.option("--versions", type=_FILE, multiple=True, help="Software versions YAML (repeat).")
@click.option("--method", "methods", multiple=True, help="Only these methods, in this order (repeat).")
@click.option("--link-prefix", default=None,
              help="Prefix of the links to the CSVs, e.g. 'analysis/' [default: path relative to the report].")
@click.option("--deg-top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Marker rows per run and domain embedded in the report.")
@click.option("--go-top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Enrichment rows per run and domain embedded in the report.")
@click.option("--umap-max-n", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Spots in each UMAP (seeded subsample above).")
@click.option("--max-points", type=click.IntRange(min=100), default=30000, show_default=True,
              help="Points per spatial map panel (seeded subsample above).")
@click.option("--consensus-csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the consensus domains per method (spot, slice, consensus_<method>).")
@click.option("--mqc-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write <group>_domains_mqc.png (truth + consensus maps) here for MultiQC.")
@threads_option
def report_cmd(clustered, output, group, metrics, deg, go, qc, params, versions, methods, link_prefix, deg_top,
               go_top, umap_max_n, max_points, consensus_csv, mqc_dir) -> None:
    """Self-contained HTML report of one group (all methods and seeds)."""
    from ..report import report

    report(list(clustered), output, group=group, metrics=list(metrics), deg=list(deg), go=list(go), qc=list(qc),
           params=params, versions=list(versions), methods=list(methods) or None, link_prefix=link_prefix,
           deg_top=deg_top, go_top=go_top, umap_max_n=umap_max_n, max_points=max_points, consensus_csv=consensus_csv, mqc_dir=mqc_dir)


@main.command("multiqc-content")
@click.option("--metrics", type=_FILE, multiple=True,
              help="Metrics JSON (repeat); named <group>_<method>_s<seed>.json unless it holds those keys.")
@click.option("--qc", type=_FILE, multiple=True, help="qc.json per slice (repeat).")
@click.option("--versions", type=_FILE, multiple=True, help="Versions YAML {process: {tool: version}} (repeat).")
@click.option("--params", type=_FILE, default=None, help="Pipeline parameters (JSON) for the workflow summary.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the *_mqc files.")
def multiqc_content_cmd(metrics, qc, versions, params, outdir) -> None:
    """MultiQC custom content (QC per slice, metrics per run, versions, workflow summary)."""
    from ..report import multiqc_content

    paths = multiqc_content(outdir, metrics=list(metrics), qc=list(qc), versions=list(versions), params=params)
    for p in paths:
        click.echo(str(p))


@main.command("go-gmt")
@click.option("--obo", type=_FILE, required=True, help="GO ontology (go-basic.obo).")
@click.option("--gaf", type=_FILE, required=True, help="GO annotations (GAF 2.x, .gz allowed).")
@click.option("--namespace", type=click.Choice(["biological_process", "molecular_function", "cellular_component"]),
              default="biological_process", show_default=True)
@click.option("--id-column", type=click.Choice(["symbol", "id"]), default="symbol", show_default=True,
              help="Gene identifier: GAF column 3 (symbol) or 2 (database id).")
@output_option("GMT file (one line per GO term, annotations propagated to ancestors).")
def go_gmt_cmd(obo: Path, gaf: Path, namespace: str, id_column: str, output: Path) -> None:
    """Convert GO (OBO + GAF) into a GMT gene-set file once, for offline enrichment."""
    from ..analysis import go_gmt_from_obo_gaf, write_gmt

    names: dict[str, str] = {}
    sets = go_gmt_from_obo_gaf(obo, gaf, namespace, id_column=id_column, descriptions=names)
    write_gmt(output, sets, names)


@main.command("collect-metrics")
@click.option("--metrics", "metrics", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Metrics JSON (repeatable).")
@click.option("--domains", "domains", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="domains.csv of the same runs (repeatable), for between-seed stability.")
@output_option("Metrics table (CSV), one row per method x seed.")
def collect_metrics_cmd(metrics, domains, output: Path) -> None:
    """Merge a group's metrics JSONs into one table, with between-seed ARI per run."""
    from .._utils import write_csv_atomic
    from ..report._data import collect_metrics

    write_csv_atomic(collect_metrics(metrics, domains), output, index=False)
