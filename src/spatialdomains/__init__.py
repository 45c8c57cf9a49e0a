"""spatialdomains: spatial domains and alignment-free multi-slice integration (STAIG, Spotscape).

Namespaces follow scanpy: ``io`` (readers), ``pp`` (preprocessing), ``graph`` (sparse spatial graphs),
``tl`` (training, clustering, one-shot domains), ``metrics``. Subpackages import lazily so the CLI and
``import spatialdomains`` stay fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("io", "pp", "graph", "tl", "metrics", "models", "synthetic", "cluster", "image", "samplesheet",
               "analysis", "align", "report")


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'spatialdomains' has no attribute {name!r}")


__all__ = ["__version__", *_SUBMODULES]
