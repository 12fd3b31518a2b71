"""Lazy public names for a package's ``__init__``: one mechanism for every layer.

A package lists ``name -> module`` and gets a module ``__getattr__`` that imports the module on
first use (so ``import ipt_ray`` or ``import ipt_ray.tracking`` imports neither torch, Ray nor
MLflow) and a ``__dir__`` that shows the names. Packages install them under
``if not TYPE_CHECKING:``: a module-level ``__getattr__`` would make every missing name
``Any`` to mypy, so type checkers read the package's ``TYPE_CHECKING`` imports instead and an
import of a name that does not exist is an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``exports`` map each public name to
    the module that defines it; ``namespace`` is the package's ``globals()``.

    Raises (from ``__getattr__``):
        AttributeError: a name that is neither exported nor defined, as Python words it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
