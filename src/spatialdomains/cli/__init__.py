"""The ``spatialdomains`` command line: one click group, one subcommand per pipeline process.

Each subcommand lives in a topic module (``_data.py``, ``_methods.py``, ...) that registers itself on
``main``. Heavy libraries are imported inside command bodies so ``--help`` stays fast.
"""

from ._base import main  # noqa: F401
from . import _data  # noqa: F401  (registers validate-samplesheet, read, qc, prepare, simulate, evaluate, to-spatialdata)

for _optional in ("_methods", "_image", "_analysis"):
    try:
        __import__(f"{__name__}.{_optional}")
    except ModuleNotFoundError as _err:  # a topic module not written yet
        if _err.name != f"{__name__}.{_optional}":
            raise

__all__ = ["main"]
