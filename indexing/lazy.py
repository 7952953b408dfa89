"""Lazy public names for a package's ``__init__`` (PEP 562): ``from fewlabel.indexing import Encoder`` works,
yet importing the package loads nothing heavy until a name is used, so `fewlabel --help` never pays for torch
or FAISS. Written once for the three packages' public APIs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``name`` from ``exports[name]`` (a module path)
    on first use and keep it in the package's namespace."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
