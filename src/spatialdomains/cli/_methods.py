"""Method subcommands: methods, train, cluster, consensus, domains (one-shot)."""

from __future__ import annotations

from pathlib import Path

import click

from ._base import input_option, main, output_option, read_slices, threads_option


#: ``"auto"`` and ``spatialdomains.cluster.ALGORITHMS`` (spelled out so that --help imports no numerical
#: library; a test keeps the two equal)
CLUSTER_ALGORITHMS = ["auto", "mclust", "gmm", "kmeans", "leiden", "mclust_cosine", "kmeans_cosine"]


def _parse_params(params: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in params:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def method_options(f):
    """Options shared by ``train`` and ``domains``."""
    f = click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
                     help="Method hyperparameter override (repeatable); `spatialdomains methods` lists them. "
                          "Keys renamed in 0.2 still work, with a deprecation message.")(f)
    f = click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.")(f)
    f = click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--n-domains", type=click.IntRange(min=2), default=None,
                     help="Number of domains (else chosen by silhouette).")(f)
    f = click.option("--deterministic", is_flag=True, help="torch deterministic algorithms (slower on GPU).")(f)
    f = click.option("--image-mode", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                     help="STAIG and obsm['X_image']: auto = only if every slice's image carries its domains.")(f)
    return f


def _config(epochs, lr, params) -> dict:
    cfg = _parse_params(params)
    if epochs is not None:
        cfg["epochs"] = epochs
    if lr is not None:
        cfg["lr"] = lr
    return cfg


def _method_choice():
    # The registry is the only list of methods; importing it pulls in torch, so resolve lazily.
    class MethodType(click.ParamType):
        name = "method"

        def convert(self, value, param, ctx):
            from ..models import METHODS

            if value not in METHODS:
                self.fail(f"{value!r} is not one of {', '.join(sorted(METHODS))}", param, ctx)
            return value

    return MethodType()


@main.command("methods")
def methods_cmd() -> None:
    """List the methods and their hyperparameters with defaults."""
    import dataclasses

    from ..models import METHODS

    for name, spec in sorted(METHODS.items()):
        click.echo(f"{name}: {spec.description}")
        click.echo(f"    default clustering (--algorithm auto): {spec.cluster_algorithm}")
        for field in dataclasses.fields(spec.config_class):
            click.echo(f"    {field.name} = {getattr(spec.config_class(), field.name)!r}")


@main.command("train")
@input_option("Prepared group .h5ad (from `spatialdomains prepare`).")
@output_option("Output .h5ad with obsm['X_<method>'].")
@click.option("--method", type=_method_choice(), required=True)
@method_options
@click.option("--loss-csv", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Loss log per epoch.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model + optimiser checkpoint (.pt); the final weights are saved here too.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from --checkpoint when it exists.")
@click.option("--no-progress", is_flag=True,
              help="No progress bar (terminal) and no progress lines in the log (batch job).")
@threads_option
def train_cmd(input_path: Path, output: Path, method: str, n_domains, seed, device, epochs, lr, params, deterministic,
              image_mode, loss_csv, checkpoint, checkpoint_every, resume, no_progress) -> None:
    """Train a method on a prepared group and write its embedding."""
    import anndata as ad

    from .._utils import write_csv_atomic, write_h5ad_atomic
    from ..tl import fit_method

    adata = ad.read_h5ad(input_path)
    result = fit_method(adata, method, random_state=seed, device=device, n_domains=n_domains, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every, resume=resume, deterministic=deterministic,
                        progress=not no_progress, image_mode=image_mode, **_config(epochs, lr, params))
    if loss_csv:
        write_csv_atomic(result.history, loss_csv, index=False)
    write_h5ad_atomic(adata, output)


@main.command("cluster")
@input_option("Trained .h5ad with obsm['X_<method>'].")
@output_option("Output .h5ad with obs['domain_<method>'].")
@click.option("--method", required=True, help="Whose embedding to cluster (obsm['X_<method>']).")
@click.option("--n-domains", type=click.IntRange(min=2), default=None, help="K; else chosen by silhouette.")
@click.option("--algorithm", type=click.Choice(CLUSTER_ALGORITHMS), default="auto",
              show_default=True, help="auto = the method's own default (`spatialdomains methods` shows it); "
              "mclust (EEE, R) falls back to a tied GMM when R/mclust is missing; *_cosine = on the "
              "L2-normalised embedding.")
@click.option("--refine/--no-refine", default=False, show_default=True,
              help="Spatial refinement: majority vote over the 15 nearest spots (per slice).")
@click.option("--k-min", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--k-max", type=click.IntRange(min=2), default=15, show_default=True)
@click.option("--seed", type=int, default=2023, show_default=True, help="Seed for R and sklearn.")
@click.option("--domains-csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write barcode,slice,domain here.")
@threads_option
def cluster_cmd(input_path: Path, output: Path, method: str, n_domains, algorithm, refine, k_min, k_max, seed,
                domains_csv) -> None:
    """Cluster an embedding into spatial domains."""
    import anndata as ad

    from .._constants import SLICE_KEY, domain_key, embedding_key
    from .._utils import InputError, write_csv_atomic, write_h5ad_atomic
    from ..cluster import cluster

    if k_min > k_max:
        raise click.BadParameter(f"--k-min {k_min} > --k-max {k_max}", param_hint="--k-min")
    adata = ad.read_h5ad(input_path)
    if embedding_key(method) not in adata.obsm:
        raise InputError(f"{input_path}: obsm['{embedding_key(method)}'] is missing; run `spatialdomains train` first")
    cluster(adata, n_domains, use_rep=embedding_key(method), method=algorithm, refine=refine,
            key_added=domain_key(method), k_range=(k_min, k_max), random_state=seed)
    if domains_csv:
        cols = [c for c in (SLICE_KEY, domain_key(method)) if c in adata.obs]
        table = adata.obs[cols].rename(columns={domain_key(method): "domain"})
        write_csv_atomic(table, domains_csv, index_label="barcode")
    write_h5ad_atomic(adata, output)


@main.command("consensus")
@click.option("--input", "-i", "inputs", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Clustered .h5ad of one seed (repeat, at least two seeds).")
@click.option("--method", required=True, help="Whose domains to combine (obs['domain_<method>']).")
@click.option("--group", default=None, help="Group id recorded in the JSON (default: the slices joined by '+').")
@click.option("--domains-csv", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Consensus barcode,slice,domain.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Metrics JSON of the consensus (seed 'consensus'; ARI/NMI/CA with truth).")
def consensus_cmd(inputs, method: str, group, domains_csv: Path, metrics_path: Path) -> None:
    """Consensus domains of several seeds of one method, written and scored like a seed."""
    from .._utils import write_csv_atomic, write_json_atomic
    from ..consensus import seed_consensus

    table, metrics = seed_consensus(list(inputs), method, group=group)
    write_csv_atomic(table, domains_csv)
    write_json_atomic(metrics_path, metrics)


@main.command("domains")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--method", type=_method_choice(), required=True)
@click.option("--out", "output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .h5ad (embedding + domains).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Metrics JSON (ARI/NMI/CA with truth, SC/DB, batch metrics, stage times).")
@click.option("--truth-key", default="truth", show_default=True, help="obs column with manual labels.")
@click.option("--platform", default=None, help="Graph defaults; guessed (visium when array_row exists).")
@click.option("--algorithm", type=click.Choice(CLUSTER_ALGORITHMS), default="auto",
              show_default=True, help="Clustering; auto = the method's own default.")
@click.option("--refine/--no-refine", default=None, help="Spatial refinement (default: on for one slice).")
@method_options
@threads_option
def domains_cmd(inputs, method, output, metrics_path, truth_key, platform, algorithm, refine, n_domains, seed,
                device, epochs, lr, params, deterministic, image_mode) -> None:
    """One shot: prepare -> train -> cluster -> evaluate on one or several raw slices (.h5ad)."""
    import numpy as np

    from .._constants import TRUTH_KEY
    from .._utils import InputError, write_h5ad_atomic, write_json_atomic
    from ..tl import domains

    slices = read_slices(inputs, slice_from_file_name=True)
    for path, a in zip(inputs, slices):
        if truth_key != TRUTH_KEY and truth_key in a.obs:
            a.obs[TRUTH_KEY] = a.obs[truth_key]
        elif truth_key not in a.obs and truth_key != TRUTH_KEY:
            raise InputError(f"{path}: truth column obs['{truth_key}'] not found")
    if platform is None:
        platform = "visium" if all("array_row" in a.obs for a in slices) else "other"
    adata, metrics = domains(slices, method, n_domains=n_domains, random_state=seed, device=device, platform=platform,
                             cluster_method=algorithm, refine=refine, deterministic=deterministic,
                             image_mode=image_mode, **_config(epochs, lr, params))
    write_json_atomic(metrics_path, metrics)
    write_h5ad_atomic(adata, output)
    shown = {k: round(v, 4) for k, v in metrics.items() if k in ("ari", "nmi", "silhouette") and v is not None
             and np.isfinite(v)}
    click.echo(f"{method}: {shown}", err=True)


@main.command("align")
@input_option("Trained group .h5ad with obsm['X_<method>'] and obs['slice'] (two slices or more).")
@click.option("--method", default="spotscape", show_default=True, help="Whose embedding to match on.")
@click.option("--query", "slice_a", required=True, help="Slice to match (obs['slice'] value).")
@click.option("--reference", "slice_b", required=True, help="Slice to match it to.")
@click.option("--pairs-csv", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Matched spot pairs with scores (and both labels when truth exists).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON with the number of pairs, mean score and LTARI (when both slices have truth).")
@click.option("--smooth", is_flag=True, help="Pick the spatially closest candidate (registered sections only).")
@click.option("--top-n", type=click.IntRange(min=1), default=20, show_default=True)
@threads_option
def align_cmd(input_path: Path, method: str, slice_a: str, slice_b: str, pairs_csv: Path, metrics_path,
              smooth: bool, top_n: int) -> None:
    """Match the spots of two slices in embedding space; LTARI when both slices have truth."""
    import anndata as ad

    from .._constants import embedding_key
    from .._utils import write_csv_atomic, write_json_atomic
    from ..align import align_slices

    adata = ad.read_h5ad(input_path)
    pairs, ltari = align_slices(adata, slice_a, slice_b, use_rep=embedding_key(method), smooth=smooth, top_n=top_n)
    write_csv_atomic(pairs, pairs_csv, index=False)
    if metrics_path:
        write_json_atomic(metrics_path, {"method": method, "query": str(pairs["query_slice"].iloc[0]),
                           "reference": str(pairs["reference_slice"].iloc[0]), "n_pairs": int(len(pairs)),
                           "mean_score": float(pairs["score"].mean()), "ltari": ltari})


@main.command("pseudotime")
@input_option("Trained .h5ad with obsm['X_<method>'].")
@output_option("Output .h5ad with obs['pseudotime_<method>'].")
@click.option("--method", default="spotscape", show_default=True, help="Whose embedding to use.")
@click.option("--root-domain", default=None, help="Start from the most central spot of this domain.")
@click.option("--root-spot", default=None, help="Start from this spot (obs name).")
@click.option("--n-neighbors", type=click.IntRange(min=2), default=50, show_default=True,
              help="neighbours of the embedding graph that diffusion pseudotime runs on")
@threads_option
def pseudotime_cmd(input_path: Path, output: Path, method: str, root_domain, root_spot, n_neighbors: int) -> None:
    """Diffusion pseudotime (scanpy dpt) on a method's embedding."""
    import anndata as ad

    from .._constants import domain_key, embedding_key
    from .._utils import write_h5ad_atomic
    from ..align import pseudotime

    if (root_domain is None) == (root_spot is None):
        raise click.UsageError("give exactly one of --root-domain and --root-spot")
    adata = ad.read_h5ad(input_path)
    pseudotime(adata, use_rep=embedding_key(method), root_domain=root_domain, root_spot=root_spot,
               domain_key=domain_key(method), key_added=f"pseudotime_{method}", n_neighbors=n_neighbors)
    write_h5ad_atomic(adata, output)
