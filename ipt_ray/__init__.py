"""ipt-ray: instance-wise prompt tuning on frozen language models.

Public names are imported lazily, so ``import ipt_ray`` (and loading a bundle) imports
neither Ray nor MLflow; the search layer loads them when a search starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.artifacts.bundle import LoadedBundle as LoadedBundle
    from ipt_ray.artifacts.bundle import load_bundle as load_bundle
    from ipt_ray.artifacts.bundle import verify_bundle as verify_bundle
    from ipt_ray.artifacts.bundle import write_bundle as write_bundle
    from ipt_ray.artifacts.peft import write_peft_adapter as write_peft_adapter
    from ipt_ray.artifacts.predict import predict_file as predict_file
    from ipt_ray.artifacts.predict import prompts_file as prompts_file
    from ipt_ray.artifacts.predict import write_predictions as write_predictions
    from ipt_ray.artifacts.predict import write_prompts as write_prompts
    from ipt_ray.artifacts.texts import read_texts as read_texts
    from ipt_ray.core.config import TrainConfig as TrainConfig
    from ipt_ray.core.model import IPTModel as IPTModel
    from ipt_ray.core.model import build_model as build_model
    from ipt_ray.data import load_task as load_task
    from ipt_ray.errors import SettingError as SettingError
    from ipt_ray.errors import UserError as UserError
    from ipt_ray.generators import generator_names as generator_names
    from ipt_ray.tracking.best import best as best
    from ipt_ray.tracking.export import export as export
    from ipt_ray.training.api import train as train
    from ipt_ray.training.loop import TrainingRun as TrainingRun
    from ipt_ray.tuning.api import search as search
    from ipt_ray.tuning.options import SearchOptions as SearchOptions
    from ipt_ray.tuning.space import load_space as load_space

__version__ = "0.1.0"

_EXPORTS = {
    "IPTModel": "ipt_ray.core.model",
    "LoadedBundle": "ipt_ray.artifacts.bundle",
    "SearchOptions": "ipt_ray.tuning.options",
    "SettingError": "ipt_ray.errors",
    "TrainConfig": "ipt_ray.core.config",
    "TrainingRun": "ipt_ray.training.loop",
    "UserError": "ipt_ray.errors",
    "best": "ipt_ray.tracking.best",
    "build_model": "ipt_ray.core.model",
    "export": "ipt_ray.tracking.export",
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
    "search": "ipt_ray.tuning.api",
    "train": "ipt_ray.training.api",
}

__all__ = sorted(_EXPORTS)

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
