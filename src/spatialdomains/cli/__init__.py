"""The ``spatialdomains`` command line: one click group, one subcommand per pipeline process.

Each subcommand lives in a topic module (``_data.py``, ``_methods.py``, ...) that registers itself on
``main``. Heavy libraries are imported inside command bodies so ``--help`` stays fast.
"""

from ._base import main  # noqa: F401
from . import _analysis, _data, _image, _methods  # noqa: F401  (each registers its subcommands on main; _data includes to-spatialdata)

__all__ = ["main"]
