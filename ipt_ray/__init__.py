"""ipt-ray: instance-wise prompt tuning on frozen language models.

Public names are imported lazily, so ``import ipt_ray`` (and loading a bundle) imports
neither Ray nor MLflow; the search layer loads them when a search starts.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "IPTModel": "ipt_ray.model",
    "LoadedBundle": "ipt_ray.bundle",
    "TrainConfig": "ipt_ray.config",
    "TrainingRun": "ipt_ray.loop",
    "UserError": "ipt_ray.errors",
    "build_model": "ipt_ray.model",
    "generator_names": "ipt_ray.generators",
    "load_bundle": "ipt_ray.bundle",
    "load_space": "ipt_ray.search.space",
    "load_task": "ipt_ray.data",
    "read_texts": "ipt_ray.predict",
    "verify_bundle": "ipt_ray.bundle",
    "write_bundle": "ipt_ray.bundle",
    "write_peft_adapter": "ipt_ray.peft_export",
    "write_predictions": "ipt_ray.predict",
    "write_prompts": "ipt_ray.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ipt_ray' has no attribute {name!r}")
