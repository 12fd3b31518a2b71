"""What a search's tracker knows about one trial (:class:`TrialRecord`), and which reported
result keys are metrics.

No MLflow and no Ray here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

from ipt_ray import constants as C
from ipt_ray.tracking.schema import STATUS_RUNNING

#: Result keys that are bookkeeping, not metrics (Tune's auto-filled keys among them).
NON_METRIC_KEYS = frozenset(
    {
        C.EPOCH,
        C.FIRST_STEP_UNIX,
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "timestamp",
        "pid",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_total",
        "episodes_total",
        "timesteps_since_restore",
        "done",
        "trial_id",
        "date",
        "hostname",
        "node_ip",
        "config",
        "checkpoint_dir_name",
        "experiment_tag",
        "should_checkpoint",
    }
)


@dataclass
class TrialRecord:
    """What the tracker knows about one trial (kept even when MLflow calls fail).

    ``best_value``/``best_epoch`` are the best reported value of the search metric and its
    epoch; ``checkpoints`` maps epoch to ``(rank, checkpoint path)`` (the rank is the checkpoint
    score, or the metric value).
    """

    trial_id: str
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sampled: dict[str, Any] = field(default_factory=dict)
    max_epochs: int | None = None
    status: str = STATUS_RUNNING
    last_epoch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[int, tuple[float | None, str]] = field(default_factory=dict)
    # (epoch, checkpoint rank) of the latest result: a checkpoint Tune persists after it
    # (the actor runner) belongs to that epoch.
    last_rank: tuple[int, float | None] | None = None
    uploaded_checkpoint: str | None = None
    run_requested: bool = False  # its run's creation was sent or buffered
    logged_epochs: list[int] = field(default_factory=list)
    # metric key -> the highest step of it logged (sent or buffered): a result at an epoch
    # already logged (the final test evaluation, an epoch run again) adds only new keys.
    last_steps: dict[str, int] = field(default_factory=dict)
    # Restored from a save older than what reached MLflow, or (re)started by a resumed search:
    # an epoch it reports may be logged already (it is checked, until one is not).
    check_logged: bool = False
    dataset_logged: bool = False  # its run's dataset input was sent or buffered
    error: str | None = None
    node: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None

    def state(self) -> dict[str, Any]:
        """The record as ``TrialRecord(**state)`` takes it back: every field, its lists and
        dicts copied one level deep (what they hold is immutable: numbers, strings, tuples).
        Tune pickles it at once, so later changes to the record do not reach it."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            out[name] = value.copy() if isinstance(value, (dict, list)) else value
        return out

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting the trial ran with: what its MLflow run logs as params."""
        return {**self.sampled, **self.params}

    @property
    def is_open(self) -> bool:
        return self.status == STATUS_RUNNING

    @property
    def has_run(self) -> bool:
        """The trial has an MLflow run, or one whose creation is buffered."""
        return self.run_id is not None or self.run_requested


#: The fields of a :class:`TrialRecord`, in order.
_FIELDS = tuple(f.name for f in fields(TrialRecord))

#: Where a tracker writes: a run id, or a trial (whose run id may still be on its way).
Run = str | TrialRecord


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is an int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def better(a: float, b: float | None, mode: str) -> bool:
    """Whether ``a`` beats ``b`` in direction ``mode`` (NaN never beats; anything beats
    None or NaN)."""
    if math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a > b if mode == "max" else a < b


def checkpoint_order(record: TrialRecord, *, descending: bool) -> list[str]:
    """The record's checkpoint paths, best first (by rank, highest first when ``descending``;
    ties: the earlier epoch; unranked checkpoints last, newest first)."""
    sign = -1.0 if descending else 1.0

    def key(item: tuple[int, tuple[float | None, str]]) -> tuple[int, float, int]:
        epoch, (score, _) = item
        if score is None or math.isnan(score):
            return (1, 0.0, -epoch)  # unscored last, newest first
        return (0, sign * score, epoch)

    return [path for _, (_, path) in sorted(record.checkpoints.items(), key=key)]
