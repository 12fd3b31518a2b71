"""What a finished search returns: :class:`SearchSummary` and one :class:`TrialSummary` per
trial. :meth:`SearchSummary.to_dict` is the ``ipt-ray search --json`` object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ipt_ray import constants as C
from ipt_ray.tracking import SearchTracker, TrialRecord
from ipt_ray.tracking.schema import (
    BEST_PREFIX,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_KILLED,
    STATUS_PRUNED,
    STATUS_RUNNING,
)
from ipt_ray.tracking.store import ui_command
from ipt_ray.tuning.locations import SearchLocations
from ipt_ray.tuning.progress import format_value


@dataclass
class TrialSummary:
    """One trial in a :class:`SearchSummary`.

    ``value`` is the best value of the search metric over the trial's epochs (at
    ``best_epoch``); ``metrics`` holds the metrics reported at that epoch, plus the trial's
    ``test_*`` and ``best_*`` metrics of its last report; ``params`` the sampled values;
    ``settings`` every setting the trial ran with (fixed and sampled, as its MLflow run holds
    them).
    """

    trial_id: str
    run_id: str | None
    status: str
    value: float | None
    best_epoch: int | None
    epochs: int
    params: dict[str, Any]
    metrics: dict[str, float]
    node: str | None = None
    checkpoint: str | None = None
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: From Tune starting the trial to its end, as the driver saw them (None while running).
    seconds: float | None = None

    @classmethod
    def from_record(cls, record: TrialRecord) -> TrialSummary:
        metrics = dict(record.best_metrics)
        for key, value in record.metrics.items():
            if key.startswith((C.TEST_PREFIX, BEST_PREFIX)) or key not in metrics:
                metrics[key] = value
        return cls(
            trial_id=record.trial_id,
            run_id=record.run_id,
            status=record.status,
            value=record.best_value,
            best_epoch=record.best_epoch,
            epochs=record.last_epoch,
            params=dict(record.sampled),
            metrics=metrics,
            node=record.node,
            checkpoint=record.uploaded_checkpoint,
            error=record.error,
            settings=record.settings,
            seconds=None if record.ended is None else record.ended - record.started,
        )


@dataclass
class SearchSummary:
    """What a search produced and where to find it (:meth:`to_dict`: the ``--json`` object;
    :meth:`to_artifact`: every field)."""

    name: str
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    storage_path: str
    num_trials: int
    counts: dict[str, int]
    best: TrialSummary | None
    top: list[TrialSummary]
    interrupted: bool
    seconds: float
    artifact_location: str | None = None
    ui_command: str = ""
    trials: list[TrialSummary] = field(default_factory=list)
    #: MLflow calls that never reached the store (refused, or it stayed unreachable).
    tracking_calls_lost: int = 0
    #: MLflow calls the driver made, the seconds its writer thread spent in them, the seconds
    #: Tune's loop spent handing them over, the most waiting at once.
    tracking_calls: int = 0
    tracking_call_seconds: float = 0.0
    tracking_caller_seconds: float = 0.0
    tracking_backlog_peak: int = 0
    #: Placement groups of dead Ray Train controllers that the watchdog removed.
    placement_groups_reaped: int = 0
    #: Placement groups of this search still reserving or waiting after it ended (should be 0).
    placement_groups_left: int = 0
    #: Trials the watchdog failed because the search had stalled.
    trials_stalled: int = 0

    @property
    def finished(self) -> int:
        return self.counts.get(STATUS_FINISHED, 0)

    @property
    def pruned(self) -> int:
        return self.counts.get(STATUS_PRUNED, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(STATUS_FAILED, 0)

    def to_dict(self) -> dict[str, Any]:
        """The ``ipt-ray search --json`` object: experiment, parent run, best trial (run, trial,
        value, params, metrics), counts, seconds, and the MLflow calls that never reached the
        store, the placement groups reaped and left, the trials stalled. JSON-ready."""
        best = self.best
        return {
            "experiment": self.name,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking_uri,
            "metric": self.metric,
            "mode": self.mode,
            "best": None
            if best is None
            else {
                "run_id": best.run_id,
                "trial_id": best.trial_id,
                "value": best.value,
                "params": best.params,
                "metrics": best.metrics,
            },
            "counts": {
                "trials": self.num_trials,
                "finished": self.finished,
                "pruned": self.pruned,
                "failed": self.failed,
                "killed": self.counts.get(STATUS_KILLED, 0),
            },
            "seconds": self.seconds,
            "tracking_calls_lost": self.tracking_calls_lost,
            "tracking_calls": self.tracking_calls,
            "tracking_call_seconds": round(self.tracking_call_seconds, 3),
            "tracking_caller_seconds": round(self.tracking_caller_seconds, 3),
            "tracking_backlog_peak": self.tracking_backlog_peak,
            "placement_groups_reaped": self.placement_groups_reaped,
            "placement_groups_left": self.placement_groups_left,
            "trials_stalled": self.trials_stalled,
        }

    def to_artifact(self) -> dict[str, Any]:
        """Every field, each trial's too (the parent run's ``search_summary.json``)."""
        return asdict(self)


def summarize(
    tracker: SearchTracker, where: SearchLocations, top_k: int, seconds: float
) -> SearchSummary:
    ranked = [TrialSummary.from_record(r) for r in tracker.ranked()]
    counts = tracker.counts()
    counts.pop(STATUS_RUNNING, None)
    return SearchSummary(
        name=tracker.experiment_name,
        metric=tracker.metric,
        mode=tracker.mode,
        tracking_uri=tracker.tracking_uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        storage_path=where.experiment_path,
        num_trials=len(tracker.trials),
        counts=counts,
        best=ranked[0] if ranked else None,
        top=ranked[:top_k],
        interrupted=tracker.parent_status == STATUS_KILLED,
        seconds=seconds,
        artifact_location=where.artifact_location,
        ui_command=ui_command(tracker.tracking_uri),
        trials=[TrialSummary.from_record(r) for r in tracker.trials.values()],
        tracking_calls_lost=tracker.lost_calls,
        tracking_calls=int(tracker.call_stats["calls"]),
        tracking_call_seconds=tracker.call_stats["seconds"],
        tracking_caller_seconds=tracker.call_stats["caller_seconds"],
        tracking_backlog_peak=int(tracker.call_stats["backlog_peak"]),
    )


def end_line(summary: SearchSummary) -> str:
    c = summary.counts
    text = (
        f"search {summary.name!r} {'interrupted' if summary.interrupted else 'done'} in "
        f"{summary.seconds:.0f} s: {c.get(STATUS_FINISHED, 0)} finished, "
        f"{c.get(STATUS_PRUNED, 0)} pruned, {c.get(STATUS_FAILED, 0)} failed"
    )
    if summary.best is not None:
        text += (
            f"; best {summary.metric}={format_value(summary.best.value)} "
            f"(trial {summary.best.trial_id}, run {summary.best.run_id})"
        )
    if summary.tracking_calls_lost:
        text += (
            f"\n  warning: {summary.tracking_calls_lost} MLflow call(s) did not reach "
            f"{summary.tracking_uri} (see the warnings above)"
        )
    return text + f"\n  {summary.ui_command}"
