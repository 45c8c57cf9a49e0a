"""The registry of methods: the only list of methods the library, CLI and pipeline know.

Adding a method = one file in this package (config, modules, ``fit_<name>``, one ``register`` call),
its name in the import list at the bottom, and its tests. Shared building blocks are in
:mod:`spatialdomains.nn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ._base import FitResult

__all__ = ["METHODS", "MethodSpec", "FitResult", "get_method"]


@dataclass(frozen=True)
class MethodSpec:
    """What the rest of the package needs to know about a method."""

    name: str
    config_class: type  #: frozen dataclass of hyperparameters (defaults from the paper / spec)
    #: ``fit(adata, *, config, device=None, random_state=0, n_domains=None, train_options=None) -> FitResult``
    fit: Callable[..., FitResult]
    prep: Any  #: ``spatialdomains.pp.PrepConfig`` with the method's preprocessing defaults
    description: str = ""
    prep_multi: Any = None  #: preprocessing for groups of several slices (default: ``prep``)
    #: what ``cluster(method="auto")`` (the default) runs on this method's embedding: the clustering that
    #: measured best on its default embedding (``benchmarks/results/defaults_cluster.md``)
    cluster_algorithm: str = "mclust"

    def prep_for(self, n_slices: int):
        """The preprocessing recipe for a group of ``n_slices`` slices."""
        return self.prep_multi if (n_slices > 1 and self.prep_multi is not None) else self.prep

    @property
    def embedding_key(self) -> str:
        return f"X_{self.name}"

    @property
    def domain_key(self) -> str:
        return f"domain_{self.name}"


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        from .._utils import InputError

        raise InputError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}") from None


# Each method module registers itself on import.
from . import spotscape, staig  # noqa: E402,F401
