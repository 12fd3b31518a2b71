"""Artifacts: what leaves a search, and what is done with it afterwards.

- :mod:`.bundle`: a trial checkpoint as a portable, checksummed folder, and loading it back
  (no Ray, no MLflow).
- :mod:`.peft`: static prompts (``task``, ``prefix``) as a PEFT adapter.
- :mod:`.texts`: reading texts from .txt, .csv and .jsonl files.
- :mod:`.predict`: texts in, predictions and prompt vectors out (``ipt-ray predict``,
  ``ipt-ray prompts``).

Nothing here imports Ray or MLflow, and names are imported lazily, so loading a bundle
imports neither. Exporting a trial from MLflow is the tracking layer's
(:mod:`ipt_ray.tracking.export`), which writes through :mod:`.bundle` and :mod:`.peft`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:
    from ipt_ray.artifacts.bundle import (
        LoadedBundle,
        load_bundle,
        verify_bundle,
        write_bundle,
    )
    from ipt_ray.artifacts.peft import write_peft_adapter
    from ipt_ray.artifacts.predict import (
        predict_file,
        prompts_file,
        write_predictions,
        write_prompts,
    )
    from ipt_ray.artifacts.texts import ColumnNotFound, read_texts

_EXPORTS = {
    "ColumnNotFound": "ipt_ray.artifacts.texts",
    "LoadedBundle": "ipt_ray.artifacts.bundle",
    "load_bundle": "ipt_ray.artifacts.bundle",
    "predict_file": "ipt_ray.artifacts.predict",
    "prompts_file": "ipt_ray.artifacts.predict",
    "read_texts": "ipt_ray.artifacts.texts",
    "verify_bundle": "ipt_ray.artifacts.bundle",
    "write_bundle": "ipt_ray.artifacts.bundle",
    "write_peft_adapter": "ipt_ray.artifacts.peft",
    "write_predictions": "ipt_ray.artifacts.predict",
    "write_prompts": "ipt_ray.artifacts.predict",
}

__all__ = [
    "ColumnNotFound",
    "LoadedBundle",
    "load_bundle",
    "predict_file",
    "prompts_file",
    "read_texts",
    "verify_bundle",
    "write_bundle",
    "write_peft_adapter",
    "write_predictions",
    "write_prompts",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
