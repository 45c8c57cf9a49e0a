"""Data subcommands: validate-samplesheet, read, qc, prepare, simulate, evaluate, to-spatialdata."""

from __future__ import annotations

from pathlib import Path

import click

from ._base import input_option, main, output_option, read_slices, threads_option


@main.command("validate-samplesheet")
@click.argument("sheet", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the normalised sample sheet (absolute paths, groups, platforms) here.")
@click.option("--no-check-exists", is_flag=True, help="Do not check that data/image files exist.")
@click.option("--base-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Resolve relative paths against this folder (default: the sample sheet's folder).")
def validate_samplesheet_cmd(sheet: Path, output: Path | None, no_check_exists: bool, base_dir: Path | None) -> None:
    """Check every row of SHEET and report all problems at once (row, column, reason)."""
    from ..samplesheet import SamplesheetError, validate_samplesheet, write_validated

    try:
        rows = validate_samplesheet(sheet, check_exists=not no_check_exists, base_dir=base_dir)
    except SamplesheetError as err:
        click.echo(f"Error: {err}", err=True)
        raise SystemExit(1) from None
    if output:
        write_validated(rows, output)
    groups = sorted({r["group"] for r in rows})
    click.echo(f"{sheet}: {len(rows)} slice(s) in {len(groups)} group(s): OK", err=True)


@main.command("read")
@click.option("--data", "data", type=click.Path(exists=True, path_type=Path), required=True,
              help="Space Ranger outs/ (or .tar.gz), Visium HD bins, Xenium/CosMx dir, .h5, .h5ad or table.")
@click.option("--sample", required=True, help="Slice id (sample-sheet 'sample'); becomes obs['slice'].")
@click.option("--platform", default=None, help="Platform (sample-sheet 'platform'); guessed when absent.")
@click.option("--truth", default=None, help="Column with manual labels, or a barcode,label file.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Full-resolution H&E image of the slice (recorded for the image steps).")
@output_option("Output .h5ad in the AnnData contract.")
@threads_option
def read_cmd(data: Path, sample: str, platform: str | None, truth: str | None, image: Path | None,
             output: Path) -> None:
    """Read one slice from any supported format into the AnnData contract."""
    from .. import io
    from .._utils import write_h5ad_atomic

    adata = io.read(data, platform=platform, truth=truth or None, library_id=sample, image=image)
    write_h5ad_atomic(adata, output)


@main.command("qc")
@input_option()
@output_option("Filtered .h5ad.")
@click.option("--qc-json", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="QC summary (medians, thresholds, spots/genes removed).")
@click.option("--min-counts", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--min-genes", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-mt-pct", type=click.FloatRange(0, 100), default=100.0, show_default=True)
@click.option("--min-cells", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop genes detected in fewer spots.")
@threads_option
def qc_cmd(input_path: Path, output: Path, qc_json: Path, min_counts: int, min_genes: int, max_mt_pct: float,
           min_cells: int) -> None:
    """QC metrics and spot/gene filters for one slice."""
    import anndata as ad

    from .. import pp
    from .._constants import QC_KEY, UNS_KEY
    from .._utils import write_h5ad_atomic, write_json_atomic

    adata = ad.read_h5ad(input_path)
    pp.qc(adata, min_counts=min_counts, min_genes=min_genes, max_mt_pct=max_mt_pct, min_cells=min_cells)
    write_json_atomic(qc_json, dict(adata.uns[UNS_KEY][QC_KEY]))
    write_h5ad_atomic(adata, output)


@main.command("prepare")
@input_option("QC'd slice .h5ad (repeat for a group: joint integration).", multiple=True)
@output_option("Prepared group .h5ad (features in X, spatial graph in obsp).")
@click.option("--method", required=True, help="Method whose preprocessing recipe to use (staig, spotscape).")
@click.option("--platform", default="other", show_default=True, help="Sets graph defaults.")
@click.option("--n-top-genes", type=click.IntRange(min=10), default=None, help="HVGs per slice.")
@click.option("--hvg-flavor", type=click.Choice(["seurat_v3", "seurat", "cell_ranger", "moran"]), default=None)
@click.option("--scale", type=click.Choice(["none", "sd", "zscore"]), default=None)
@click.option("--graph-kind", type=click.Choice(["hex", "knn", "radius"]), default=None)
@click.option("--graph-k", type=click.IntRange(min=1), default=None)
@click.option("--graph-radius", type=click.FloatRange(min=0, min_open=True), default=None)
@threads_option
def prepare_cmd(inputs: tuple[Path, ...], output: Path, method: str, platform: str, n_top_genes, hvg_flavor, scale,
                graph_kind, graph_k, graph_radius) -> None:
    """HVGs per slice and their intersection, normalisation, block-diagonal spatial graph."""
    from ..models import get_method
    from ..pp import prepare_group
    from .._utils import write_h5ad_atomic

    slices = read_slices(inputs)
    from .._constants import COUNTS_LAYER

    for a in slices:
        if COUNTS_LAYER in a.layers:  # prepare works from the counts; do not hold a second copy in X
            a.X = None
    spec = get_method(method)
    recipe = spec.prep_for(len(slices)).replace(n_top_genes=n_top_genes, hvg_flavor=hvg_flavor, scale=scale)
    adata = prepare_group(slices, recipe, platform=platform, graph_kind=graph_kind, graph_k=graph_k,
                          graph_radius=graph_radius)
    write_h5ad_atomic(adata, output)


@main.command("simulate")
@click.option("--n-spots", type=click.IntRange(min=50), default=3000, show_default=True,
              help="Spots (bins, cells) per slice.")
@click.option("--n-slices", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--n-domains", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--n-genes", type=click.IntRange(min=20), default=1000, show_default=True)
@click.option("--pattern", type=click.Choice(["layers", "blobs"]), default="layers", show_default=True)
@click.option("--layout", type=click.Choice(["visium", "scatter", "cells", "square"]), default="visium",
              show_default=True, help="Spot layout of h5ad slices (set by --format otherwise).")
@click.option("--format", "fmt", type=click.Choice(["h5ad", "visium_hd", "xenium"]), default="h5ad",
              show_default=True,
              help="h5ad slices, or each slice as the instrument writes it: a Space Ranger >= 3 Visium HD "
                   "folder (8 um bins, tissue_positions.parquet) or a Xenium output folder (cell_feature_matrix.h5, "
                   "cells.parquet), plus <slice>_truth.csv; counts are streamed to disk (bounded memory).")
@click.option("--batch-effect", type=click.FloatRange(min=0), default=0.3, show_default=True)
@click.option("--image/--no-image", default=False, show_default=True,
              help="Write an H&E-like image per slice (h5ad only).")
@click.option("--group", default="group1", show_default=True, help="Group of all simulated slices.")
@click.option("--seed", type=int, default=0, show_default=True, help="random_state of the simulation.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for BLAS and for sampling the counts (the result does not depend on it) "
                   "[default: BLAS uncapped, one sampling thread].")
def simulate_cmd(n_spots, n_slices, n_domains, n_genes, pattern, layout, fmt, batch_effect, image, group, seed,
                 out_dir, threads) -> None:
    """Write synthetic slices with known domains (h5ad or instrument folders) and a ready samplesheet.csv to OUT."""
    from ..synthetic import simulate_to_dir
    from ._base import set_threads

    if threads:  # as --threads of the other commands: set only when asked (numba fixes it once)
        set_threads(threads)
    if fmt != "h5ad" and image:
        raise click.BadParameter("images are written for --format h5ad only", param_hint="--image")
    extra = {} if fmt != "h5ad" else {"layout": layout, "image": image}
    sheet = simulate_to_dir(out_dir, n_spots=n_spots, n_slices=n_slices, n_domains=n_domains, n_genes=n_genes,
                            random_state=seed, pattern=pattern, batch_effect=batch_effect, group=group, format=fmt,
                            n_jobs=threads or 1, **extra)
    click.echo(str(sheet))


@main.command("evaluate")
@input_option("Clustered .h5ad with obsm['X_<method>'] and obs['domain_<method>'].")
@output_option("Metrics JSON.")
@click.option("--method", required=True, help="Which embedding/domains to evaluate.")
@click.option("--truth-key", default="truth", show_default=True, help="obs column with manual labels.")
@click.option("--batch-key", default="slice", show_default=True)
@click.option("--group", default=None, help="Group id recorded in the JSON (default: the slices joined by '+').")
@threads_option
def evaluate_cmd(input_path: Path, output: Path, method: str, truth_key: str, batch_key: str,
                 group: str | None) -> None:
    """ARI/NMI/CA against truth when present, SC/DB always, batch metrics for several slices."""
    import anndata as ad

    from .._constants import domain_key, embedding_key
    from .._utils import write_json_atomic
    from ..metrics import evaluate

    adata = ad.read_h5ad(input_path)
    metrics = evaluate(adata, embedding_key=embedding_key(method), domain_key=domain_key(method),
                       truth_key=truth_key if truth_key in adata.obs else None, batch_key=batch_key)
    train_info = adata.uns.get("spatialdomains", {}).get(f"train_{method}", {})
    slices = [str(c) for c in adata.obs[batch_key].astype("category").cat.categories] if batch_key in adata.obs else []
    metrics.update(method=method, seed=train_info.get("seed"), group=group or "+".join(slices), slices=slices)
    write_json_atomic(output, metrics)


@main.command("to-spatialdata")
@click.option("--clustered", "clustered", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, required=True,
              help="A clustered .h5ad of the group (repeat for every method and seed).")
@click.option("--image", "images", multiple=True, metavar="SLICE=PATH",
              help="Full-resolution H&E of a slice (repeat per slice); else the slice's uns['spatial'] image.")
@click.option("--output", "-o", "output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="SpatialData store to write (<group>.zarr; written to a temporary store, then renamed).")
@threads_option
def to_spatialdata_cmd(clustered: tuple[Path, ...], images: tuple[str, ...], output: Path) -> None:
    """Write a group's domains (every method and seed), embeddings, spots and H&E as one SpatialData store."""
    from ..io import write_group_spatialdata

    pairs = {}
    for item in images:
        slice_id, sep, path = item.partition("=")
        if not sep or not slice_id or not path:
            raise click.BadParameter(f"{item!r}: expected SLICE=PATH", param_hint="--image")
        pairs[slice_id] = Path(path)
    write_group_spatialdata(clustered, output, images=pairs)
