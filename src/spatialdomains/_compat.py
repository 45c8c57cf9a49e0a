"""Deprecated spellings accepted for one release, each with a ``FutureWarning`` naming the new one."""

from __future__ import annotations

import functools
import warnings
from typing import Callable

__all__ = ["renamed_kwarg"]


def renamed_kwarg(old: str, new: str, *, removed_in: str = "0.3.0") -> Callable:
    """Decorator: accept keyword ``old`` as ``new`` (with a ``FutureWarning``) until ``removed_in``."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {old!r} (deprecated) and {new!r}")
                warnings.warn(f"{fn.__name__}({old}=...) is deprecated and will be removed in {removed_in}; "
                              f"use {new}=...", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
