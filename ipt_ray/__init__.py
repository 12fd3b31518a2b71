"""ipt-ray: instance-wise prompt tuning on frozen language models.

Public names are imported lazily, so ``import ipt_ray`` (and loading a bundle) imports
neither Ray nor MLflow; the search layer loads them when a search starts.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "IPTModel": "ipt_ray.core.model",
    "LoadedBundle": "ipt_ray.artifacts.bundle",
    "TrainConfig": "ipt_ray.core.config",
    "TrainingRun": "ipt_ray.training.loop",
    "UserError": "ipt_ray.errors",
    "build_model": "ipt_ray.core.model",
    "generator_names": "ipt_ray.generators",
    "load_bundle": "ipt_ray.artifacts.bundle",
    "load_space": "ipt_ray.tuning.space",
    "load_task": "ipt_ray.data",
    "predict_file": "ipt_ray.artifacts.predict",
    "prompts_file": "ipt_ray.artifacts.predict",
    "read_texts": "ipt_ray.artifacts.texts",
    "verify_bundle": "ipt_ray.artifacts.bundle",
    "write_bundle": "ipt_ray.artifacts.bundle",
    "write_peft_adapter": "ipt_ray.artifacts.peft",
    "write_predictions": "ipt_ray.artifacts.predict",
    "write_prompts": "ipt_ray.artifacts.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ipt_ray' has no attribute {name!r}")
