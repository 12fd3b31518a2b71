"""The train layer: plain-torch training of one run, with neither Ray nor MLflow.

Modules, one job each:

* :mod:`~ipt_ray.training.loop`: :class:`TrainingRun` (fit, evaluate, checkpoint).
* :mod:`~ipt_ray.training.api`: :func:`train`, one run as a call (``ipt-ray train``).
* :mod:`~ipt_ray.training.checkpointing`: a finished run's checkpoint folder.
* :mod:`~ipt_ray.training.setup`: seeds, device, precision, optimizer, learning-rate schedule.
* :mod:`~ipt_ray.training.features`: the frozen-feature cache (IDPG's sentence vectors, a late
  prompt's layer states).
* :mod:`~ipt_ray.training.warm`: what a trial process keeps for its next trial (backbone, tasks).

A search (:mod:`ipt_ray.tuning`) runs these inside Ray; they know nothing of it. Names are
imported lazily (they import torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.training.api import TrainSummary as TrainSummary
    from ipt_ray.training.api import train as train
    from ipt_ray.training.loop import EpochResult as EpochResult
    from ipt_ray.training.loop import TrainingRun as TrainingRun
    from ipt_ray.training.loop import TrainResult as TrainResult

_EXPORTS = {
    "EpochResult": "ipt_ray.training.loop",
    "TrainResult": "ipt_ray.training.loop",
    "TrainSummary": "ipt_ray.training.api",
    "TrainingRun": "ipt_ray.training.loop",
    "train": "ipt_ray.training.api",
}

__all__ = sorted(_EXPORTS)

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
