"""Which of a trial's Tune checkpoints stay on disk: :class:`CheckpointKeeper`.

The actor runner's checkpoints are Tune's. Tune deletes the ones past
``CheckpointConfig(num_to_keep)`` itself, but then forces a snapshot of the whole experiment
each time a trial has saved ``num_to_keep`` checkpoints (so that no saved state names a
deleted one). With one checkpoint an epoch that is a snapshot per epoch of every trial, each
writing the state of every trial so far: on 2,000 short trials, most of the driver's time
(README, "At scale"). So Tune keeps every checkpoint (``num_to_keep=None``: it snapshots on
its own period, at most about 5 % of its time), and this callback deletes what Tune would have.

A trial keeps its latest checkpoint (to resume from) and its best one (the highest
``checkpoint_score``: what MLflow gets); the others are *superseded*. A snapshot names each
trial's latest checkpoint, so a checkpoint superseded before snapshot ``s`` is named by no
snapshot from ``s`` on. It is deleted at snapshot ``s + 1`` (when Tune asks the callbacks for
their state), so that snapshot ``s`` has been written and synced to storage before it goes: a
driver killed at any point resumes from a snapshot whose checkpoints all exist. What was
superseded since the last snapshot but one stays at the end (a few per trial at most).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

logger = logging.getLogger(__name__)


@dataclass
class _Kept:
    """One trial's checkpoints on disk: (score, path) of its best, and its latest path."""

    best: tuple[float, str] | None = None
    latest: str | None = None
    filesystem: Any = None
    superseded: list[str] = field(default_factory=list)
    ended: bool = False  # saves no more checkpoints: forgotten once its superseded are set aside


class CheckpointKeeper(Callback):
    """Deletes a trial's superseded Tune checkpoints, two experiment snapshots after they
    were superseded (see the module docstring).

    Args:
        score_key: the result key that ranks a trial's checkpoints (highest is best); the
            result reported with a checkpoint carries it.
    """

    def __init__(self, score_key: str) -> None:
        self.score_key = score_key
        self._trials: dict[str, _Kept] = {}
        # Superseded by the last snapshot: (filesystem, path), deleted at the next one.
        self._named_by_none: list[tuple[Any, str]] = []
        self.deleted = 0

    def on_checkpoint(
        self, iteration: int, trials: Sequence[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        path = getattr(checkpoint, "path", None)
        if not isinstance(path, str):
            return
        kept = self._trials.setdefault(trial.trial_id, _Kept())
        kept.filesystem, kept.ended = getattr(checkpoint, "filesystem", None), False
        score = (trial.last_result or {}).get(self.score_key)
        score = float(score) if isinstance(score, (int, float)) else float("-inf")
        previous_latest, kept.latest = kept.latest, path
        if kept.best is None or score > kept.best[0]:
            if kept.best is not None and kept.best[1] != previous_latest:
                kept.superseded.append(kept.best[1])
            kept.best = (score, path)
        if previous_latest is not None and previous_latest != kept.best[1]:
            kept.superseded.append(previous_latest)

    def get_state(self) -> dict[str, Any] | None:
        """Called by Tune as it writes an experiment snapshot: delete what was superseded
        before the previous one, and set aside what is superseded now. Saves no state."""
        for filesystem, path in self._named_by_none:
            self._delete(filesystem, path)
        self._named_by_none = [
            (kept.filesystem, path) for kept in self._trials.values() for path in kept.superseded
        ]
        for kept in self._trials.values():
            kept.superseded = []
        self._trials = {k: v for k, v in self._trials.items() if not v.ended}
        return None

    def on_trial_complete(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self._end(trial.trial_id)

    def on_trial_error(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self._end(trial.trial_id)

    def _end(self, trial_id: str) -> None:
        kept = self._trials.get(trial_id)
        if kept is not None:
            kept.ended = True

    def _delete(self, filesystem: Any, path: str) -> None:
        try:
            if filesystem is not None:
                filesystem.delete_dir(path)
            else:
                import shutil

                shutil.rmtree(path)
            self.deleted += 1
        except FileNotFoundError:
            pass
        except OSError as exc:  # a checkpoint left on disk costs space, not correctness
            logger.warning("could not delete superseded checkpoint %s: %s", path, exc)
