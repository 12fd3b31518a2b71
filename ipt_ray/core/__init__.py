"""The core layer (torch only): one run's config, the backbone, the model, checkpoints, metrics.

Modules, one job each:

* :mod:`~ipt_ray.core.config`: :class:`TrainConfig`, one run's settings (imports no torch).
* :mod:`~ipt_ray.core.backbone`: loading, freezing and describing a frozen backbone.
* :mod:`~ipt_ray.core.attention`: the attention function that reads deep prompts.
* :mod:`~ipt_ray.core.model`: :class:`IPTModel`, the one place prompts meet the backbone.
* :mod:`~ipt_ray.core.checkpoint`: weights, config and train state on disk (safetensors + JSON).
* :mod:`~ipt_ray.core.metrics`: accuracy, F1 and MCC from predictions.

Names are imported lazily, so ``from ipt_ray.core import TrainConfig`` imports neither torch
nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.core.backbone import backbone_info as backbone_info
    from ipt_ray.core.backbone import load_backbone as load_backbone
    from ipt_ray.core.backbone import load_tokenizer as load_tokenizer
    from ipt_ray.core.config import TrainConfig as TrainConfig
    from ipt_ray.core.metrics import classification_metrics as classification_metrics
    from ipt_ray.core.model import IPTModel as IPTModel
    from ipt_ray.core.model import build_model as build_model
    from ipt_ray.core.model import pool as pool

_EXPORTS = {
    "IPTModel": "ipt_ray.core.model",
    "TrainConfig": "ipt_ray.core.config",
    "backbone_info": "ipt_ray.core.backbone",
    "build_model": "ipt_ray.core.model",
    "classification_metrics": "ipt_ray.core.metrics",
    "load_backbone": "ipt_ray.core.backbone",
    "load_tokenizer": "ipt_ray.core.backbone",
    "pool": "ipt_ray.core.model",
}

__all__ = sorted(_EXPORTS)

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
