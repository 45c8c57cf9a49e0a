from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from .. import __version__

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SpatialGroup(click.Group):
    """Click group that turns expected input errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001
            from .._utils import InputError

            debug = bool(ctx.obj and ctx.obj.get("debug"))
            expected = isinstance(err, (InputError, FileNotFoundError))
            if expected and not debug:
                raise click.ClickException(str(err)) from None
            raise


@click.group(cls=SpatialGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", message="%(version)s")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True, help="Logging verbosity (stderr).")
@click.option("--debug", is_flag=True, help="Show full tracebacks for input errors.")
@click.pass_context
def main(ctx: click.Context, log_level: str, debug: bool) -> None:
    """Spatial domains and alignment-free multi-slice integration (STAIG, Spotscape).

    Every subcommand reads and writes files; the Nextflow pipeline runs one subcommand per process.
    """
    from .._logging import configure

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    configure(logging.DEBUG if debug else log_level)


def output_option(help_text: str = "Output file (written atomically)."):
    return click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path),
                        required=True, help=help_text)


def input_option(help_text: str = "Input .h5ad file.", multiple: bool = False):
    return click.option("--input", "-i", "inputs" if multiple else "input_path",
                        type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        required=True, multiple=multiple, help=help_text)


def threads_option(f):
    """``--threads N``: cap BLAS/torch threads to the task's CPUs."""

    @click.option("--threads", type=click.IntRange(min=1), default=None,
                  help="Threads for BLAS/torch (default: all cores).")
    @functools.wraps(f)
    def wrapper(*args, threads=None, **kwargs):
        if threads:
            set_threads(threads)
        return f(*args, **kwargs)

    return wrapper


def set_threads(n: int) -> None:
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["SPATIALDOMAINS_TORCH_THREADS"] = str(n)


def read_slices(paths, *, slice_from_file_name: bool = False) -> list:
    """Read slice ``.h5ad`` files for ``prepare`` / ``domains``; each needs ``obsm['spatial']``.

    A file without ``obs['slice']`` is an error, or, with ``slice_from_file_name``, takes its file name
    (stem) as its slice id.
    """
    import anndata as ad

    from .._constants import SLICE_KEY, SPATIAL
    from .._utils import InputError

    slices = []
    for path in paths:
        a = ad.read_h5ad(path)
        if SPATIAL not in a.obsm:
            raise InputError(f"{path}: obsm['spatial'] is missing (spot coordinates are needed for the graph)")
        if SLICE_KEY not in a.obs:
            if not slice_from_file_name:
                raise InputError(f"{path}: obs['slice'] is missing; create inputs with `spatialdomains read`")
            a.obs[SLICE_KEY] = Path(path).stem
        slices.append(a)
    return slices
