"""Portable prompt bundles: the winning trial's prompts as a folder that loads anywhere.

The modules follow a bundle's life: :mod:`.format` (names, versions, file helpers; the
layout is in its docstring), :mod:`.card` (the README.md model card), :mod:`.write` (from a
trial checkpoint), :mod:`.verify` (checks before use) and :mod:`.load` (back to a model).
Names are imported lazily: ``verify_bundle`` needs neither torch's models nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

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

_EXPORTS = {
    "CHECKSUMS_NAME": "ipt_ray.artifacts.bundle.format",
    "CONFIG_NAME": "ipt_ray.artifacts.bundle.format",
    "FORMAT_NAME": "ipt_ray.artifacts.bundle.format",
    "FORMAT_VERSION": "ipt_ray.artifacts.bundle.format",
    "LoadedBundle": "ipt_ray.artifacts.bundle.load",
    "PROVENANCE_KEYS": "ipt_ray.artifacts.bundle.format",
    "README_NAME": "ipt_ray.artifacts.bundle.format",
    "SUPPORTED_FORMAT_VERSIONS": "ipt_ray.artifacts.bundle.format",
    "WEIGHTS_NAME": "ipt_ray.artifacts.bundle.format",
    "bundle_config_from_checkpoint": "ipt_ray.artifacts.bundle.write",
    "load_bundle": "ipt_ray.artifacts.bundle.load",
    "model_card": "ipt_ray.artifacts.bundle.card",
    "verify_bundle": "ipt_ray.artifacts.bundle.verify",
    "write_bundle": "ipt_ray.artifacts.bundle.write",
    "write_checksums": "ipt_ray.artifacts.bundle.write",
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

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
