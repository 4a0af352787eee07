"""Submodules imported on first use, so that a package's import stays cheap.

A package whose ``__init__`` says ``__getattr__ = lazy_submodules(__name__, NAMES)`` gives
``package.name`` for each of ``NAMES`` by importing ``package.name`` when first asked for
it (PEP 562), the way ``import labsupport`` leaves matplotlib, ipywidgets, cryptography
and scapy unloaded until a lesson needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType


def lazy_submodules(package: str, names: Iterable[str]) -> Callable[[str], ModuleType]:
    """A module-level ``__getattr__`` for ``package`` that imports ``names`` on demand."""
    known = frozenset(names)

    def __getattr__(name: str) -> ModuleType:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
