"""Tools in the scanpy style: train a method, cluster its embedding, run the whole chain."""

from ._train import train, fit_method, staig, spotscape, parse_overrides
from ._domains import domains

__all__ = ["train", "fit_method", "staig", "spotscape", "cluster", "domains", "parse_overrides"]


def cluster(adata, n_clusters=None, **kwargs):
    """Cluster an embedding into domains (see :func:`spatialdomains.cluster.cluster`)."""
    from ..cluster import cluster as _cluster

    return _cluster(adata, n_clusters, **kwargs)
