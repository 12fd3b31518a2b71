"""The search layer: search spaces, and Ray Tune + Optuna runs over them.

The data flow: a space file (``spaces/*.yaml``, package data, or any path) is loaded and
checked by :mod:`.space`; :mod:`.api` checks a search's own settings (:mod:`.options`) and
calls :mod:`.run`, which starts Ray (:mod:`.ray_session`), decides where things go
(:mod:`.locations`), builds the Tuner (:mod:`.plan`: TPE, ASHA, the MLflow, progress and
:mod:`.watchdog` callbacks) whose trials train through :mod:`.trial` and :mod:`.worker`
(over a backbone shared per node, :mod:`.shared_backbone`), reports :mod:`.progress`, and
returns a :mod:`.summary`. :mod:`.record` remembers an unfinished search so it can resume;
:mod:`.shared_storage` checks that all nodes see the storage.

Public names are imported lazily: loading a space imports neither torch, Ray, MLflow nor
transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.tuning.api import prepare_search as prepare_search
    from ipt_ray.tuning.api import search as search
    from ipt_ray.tuning.options import SearchOptions as SearchOptions
    from ipt_ray.tuning.progress import LineProgress as LineProgress
    from ipt_ray.tuning.progress import ProgressEvent as ProgressEvent
    from ipt_ray.tuning.run import run_search as run_search
    from ipt_ray.tuning.space import SearchSpace as SearchSpace
    from ipt_ray.tuning.space import load_space as load_space
    from ipt_ray.tuning.space import parse_space as parse_space
    from ipt_ray.tuning.summary import SearchSummary as SearchSummary
    from ipt_ray.tuning.summary import TrialSummary as TrialSummary

_EXPORTS = {
    "LineProgress": "ipt_ray.tuning.progress",
    "ProgressEvent": "ipt_ray.tuning.progress",
    "SearchOptions": "ipt_ray.tuning.options",
    "SearchSpace": "ipt_ray.tuning.space",
    "SearchSummary": "ipt_ray.tuning.summary",
    "TrialSummary": "ipt_ray.tuning.summary",
    "load_space": "ipt_ray.tuning.space",
    "parse_space": "ipt_ray.tuning.space",
    "prepare_search": "ipt_ray.tuning.api",
    "run_search": "ipt_ray.tuning.run",
    "search": "ipt_ray.tuning.api",
}

__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
