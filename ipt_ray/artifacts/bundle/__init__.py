"""Portable prompt bundles: the winning trial's prompts as a folder that loads anywhere.

The modules follow a bundle's life: :mod:`.format` (names, versions, file helpers; the
layout is in its docstring), :mod:`.card` (the README.md model card), :mod:`.write` (from a
trial checkpoint), :mod:`.verify` (checks before use) and :mod:`.load` (back to a model).
Names are imported lazily: ``verify_bundle`` needs neither torch's models nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipt_ray.artifacts.bundle.card import model_card
    from ipt_ray.artifacts.bundle.format import (
        CHECKSUMS_NAME,
        CONFIG_NAME,
        FORMAT_NAME,
        FORMAT_VERSION,
        PROVENANCE_KEYS,
        README_NAME,
        SUPPORTED_FORMAT_VERSIONS,
        WEIGHTS_NAME,
    )
    from ipt_ray.artifacts.bundle.load import LoadedBundle, load_bundle
    from ipt_ray.artifacts.bundle.verify import verify_bundle
    from ipt_ray.artifacts.bundle.write import (
        bundle_config_from_checkpoint,
        write_bundle,
        write_checksums,
    )

_PREFIX = "ipt_ray.artifacts.bundle."
_EXPORTS = {
    "CHECKSUMS_NAME": "format",
    "CONFIG_NAME": "format",
    "FORMAT_NAME": "format",
    "FORMAT_VERSION": "format",
    "LoadedBundle": "load",
    "PROVENANCE_KEYS": "format",
    "README_NAME": "format",
    "SUPPORTED_FORMAT_VERSIONS": "format",
    "WEIGHTS_NAME": "format",
    "bundle_config_from_checkpoint": "write",
    "load_bundle": "load",
    "model_card": "card",
    "verify_bundle": "verify",
    "write_bundle": "write",
    "write_checksums": "write",
}

__all__ = [
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PROVENANCE_KEYS",
    "README_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "WEIGHTS_NAME",
    "LoadedBundle",
    "bundle_config_from_checkpoint",
    "load_bundle",
    "model_card",
    "verify_bundle",
    "write_bundle",
    "write_checksums",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_PREFIX + _EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
