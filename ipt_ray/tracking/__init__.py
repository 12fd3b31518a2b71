"""MLflow tracking of searches: what a search writes, and how it is read back.

- :mod:`~ipt_ray.tracking.schema`: the names a writer and a reader agree on (tags, artifacts,
  trial statuses, metric directions); imports nothing heavy.
- :mod:`~ipt_ray.tracking.store`: where a search's records live by default.
- writing: :mod:`~ipt_ray.tracking.journal` and :mod:`~ipt_ray.tracking.backlog` (MLflow
  calls kept while the store is unreachable), :mod:`~ipt_ray.tracking.record` (a trial as the
  tracker knows it), :mod:`~ipt_ray.tracking.writer` <- :mod:`~ipt_ray.tracking.trials` <-
  :mod:`~ipt_ray.tracking.tracker` (:class:`SearchTracker`), and
  :mod:`~ipt_ray.tracking.callback` (the Ray Tune callback: the only module here that
  imports Ray).
- reading: :mod:`~ipt_ray.tracking.query` (a search's trials ranked),
  :mod:`~ipt_ray.tracking.pareto`, :mod:`~ipt_ray.tracking.plots`.
- exporting: :mod:`~ipt_ray.tracking.winner` (which trial, its checkpoint downloaded),
  :mod:`~ipt_ray.tracking.export` (``ipt_ray.export``: written by :mod:`ipt_ray.artifacts`),
  :mod:`~ipt_ray.tracking.pyfunc` (a bundle as an MLflow pyfunc model) and
  :mod:`~ipt_ray.tracking.registry` (that model as a registered model's version). The function
  stays ``ipt_ray.tracking.export.export``: a package attribute named ``export`` would be
  replaced by the submodule of that name once it is imported.

Public names are imported lazily: ``import ipt_ray.tracking`` (or its schema) imports neither
MLflow nor Ray; each is imported when a name that needs it is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:
    from ipt_ray.tracking.callback import TrackingCallback, live, register_live
    from ipt_ray.tracking.pareto import pareto_front
    from ipt_ray.tracking.plots import log_search_plots, write_search_plots
    from ipt_ray.tracking.query import (
        Search,
        TrialRow,
        best_value,
        client_for,
        find_search,
        get_run,
        metric_mode,
        trial_rows,
        trial_status,
    )
    from ipt_ray.tracking.record import TrialRecord
    from ipt_ray.tracking.tracker import SearchTracker, TrackingError

_EXPORTS = {
    "Search": "ipt_ray.tracking.query",
    "SearchTracker": "ipt_ray.tracking.tracker",
    "TrackingCallback": "ipt_ray.tracking.callback",
    "TrackingError": "ipt_ray.tracking.tracker",
    "TrialRecord": "ipt_ray.tracking.record",
    "TrialRow": "ipt_ray.tracking.query",
    "best_value": "ipt_ray.tracking.query",
    "client_for": "ipt_ray.tracking.query",
    "find_search": "ipt_ray.tracking.query",
    "get_run": "ipt_ray.tracking.query",
    "live": "ipt_ray.tracking.callback",
    "log_search_plots": "ipt_ray.tracking.plots",
    "metric_mode": "ipt_ray.tracking.query",
    "pareto_front": "ipt_ray.tracking.pareto",
    "register_live": "ipt_ray.tracking.callback",
    "trial_rows": "ipt_ray.tracking.query",
    "trial_status": "ipt_ray.tracking.query",
    "write_search_plots": "ipt_ray.tracking.plots",
}

__all__ = [
    "Search",
    "SearchTracker",
    "TrackingCallback",
    "TrackingError",
    "TrialRecord",
    "TrialRow",
    "best_value",
    "client_for",
    "find_search",
    "get_run",
    "live",
    "log_search_plots",
    "metric_mode",
    "pareto_front",
    "register_live",
    "trial_rows",
    "trial_status",
    "write_search_plots",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
