"""Small helpers shared by every module: atomic writes, provenance in ``uns``, seeding, errors."""

from __future__ import annotations

import json
import os
import random
import tempfile
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ._constants import UNS_KEY


class InputError(ValueError):
    """Bad input data or files; the message names the file, row or slot and says what is wrong."""


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash never leaves a half-written file that ``-resume`` or a reader would trust.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_h5ad_atomic(adata, path: str | os.PathLike, compression: str | None = "gzip") -> Path:
    """Write ``adata`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp, compression=compression)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_csv_atomic(df, path: str | os.PathLike, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths to plain JSON types, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def package_version(name: str = "spatialdomains") -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - only outside an installed tree
        return "unknown"


def record(adata, step: str, params: dict[str, Any]) -> None:
    """Store ``params`` (plus the package version) under ``uns['spatialdomains'][step]``."""
    store = adata.uns.setdefault(UNS_KEY, {})
    entry = {k: v for k, v in to_jsonable(params).items() if v is not None}
    entry["version"] = package_version()
    store[step] = entry


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (and R when rpy2 is already loaded)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
    except ImportError:  # pragma: no cover
        pass
    import sys

    if "rpy2.robjects" in sys.modules:
        try:
            sys.modules["rpy2.robjects"].r(f"set.seed({int(seed) % 2147483647})")
        except Exception:  # pragma: no cover - R present but broken: clustering reports it
            pass
