"""A search's best trials as a Python call: :func:`best` runs what ``ipt-ray best`` runs.

The result's ``to_dict()`` is the ``ipt-ray best --json`` object. Importing this module
imports neither MLflow nor torch; :func:`best` imports MLflow (and matplotlib for plots).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.errors import SettingError

if TYPE_CHECKING:
    from ipt_ray.tracking.query import Search, TrialRow


@dataclass
class BestTrials:
    """A search's trials, ranked (the rows of ``ipt-ray best``)."""

    search: Search
    #: The metric the rows are ranked by.
    metric: str
    #: Every trial of the search, best first.
    rows: list[TrialRow]
    #: How many rows the table and ``to_dict()`` show.
    top: int
    #: With two or more objectives, the rows no other row dominates; else None.
    pareto_front: list[TrialRow] | None = None
    #: The plot files written (``plot``).
    plots: list[Path] = field(default_factory=list)

    @property
    def trials(self) -> list[TrialRow]:
        """The ``top`` best rows."""
        return self.rows[: self.top]

    def to_dict(self) -> dict[str, Any]:
        """The ``ipt-ray best --json`` object."""
        return {
            "experiment": self.search.experiment_name,
            "parent_run_id": self.search.run_id,
            "metric": self.metric,
            "objectives": self.search.objectives,
            "trials": [r.to_dict() for r in self.trials],
            "pareto_front": (
                None if self.pareto_front is None else [r.run_id for r in self.pareto_front]
            ),
        }


def best(
    experiment: str | None = None,
    *,
    search: str | None = None,
    top: int = 10,
    metric: str | None = None,
    tracking_uri: str | None = None,
    plot: str | Path | None = None,
) -> BestTrials:
    """The trials of a search from MLflow, best first; with two objectives, its Pareto front.

    Args:
        experiment: the search's name (its MLflow experiment); the newest search in it.
        search: the search's parent run id instead (default: the newest search in the store).
        top: how many rows :attr:`BestTrials.trials` (and the table) hold.
        metric: rank by this metric (default: the search's).
        tracking_uri: the MLflow store (default: ``./ipt-ray-runs/mlflow.db``).
        plot: also write the search's plots into this folder.

    Raises:
        SettingError: ``top`` below 1, or both ``experiment`` and ``search``.
        UserError: no store, no such search or experiment.
    """
    from ipt_ray.tracking.pareto import pareto_front
    from ipt_ray.tracking.query import client_for, find_search, trial_rows

    if top < 1:
        raise SettingError(f"{{top}} must be at least 1, got {top}")
    if experiment is not None and search is not None:
        raise SettingError("give {experiment} or {search}, not both")
    client, _ = client_for(tracking_uri)
    found = find_search(client, experiment=experiment, search=search)
    rows = trial_rows(client, found, metric=metric)
    front = pareto_front(rows, found.objectives) if len(found.objectives) > 1 else None
    written: list[Path] = []
    if plot is not None:
        from ipt_ray.tracking.plots import write_search_plots

        written = write_search_plots(rows, found, plot, metric=metric)
    return BestTrials(found, metric or found.metric, rows, top, front, written)


__all__ = ["BestTrials", "best"]
