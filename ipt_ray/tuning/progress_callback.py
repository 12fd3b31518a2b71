"""The Tune callback that turns trial events into :class:`~ipt_ray.tuning.progress.ProgressEvent`
lines (registered after the tracker's callback, so that trial records are up to date)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback

from ipt_ray import constants as C
from ipt_ray.tracking import SearchTracker, TrialRecord, live
from ipt_ray.tracking.schema import STATUS_FAILED, STATUS_RUNNING
from ipt_ray.tuning.progress import ProgressEvent, ProgressFn, format_params, format_value

logger = logging.getLogger(__name__)


class ProgressCallback(Callback):
    """Turns Tune events into :class:`ProgressEvent` lines (registered after the tracker's
    callback, so that trial records are up to date)."""

    def __init__(
        self, progress: ProgressFn, tracker: SearchTracker, epochs: int, key: str | None = None
    ) -> None:
        self.progress, self.tracker, self.epochs, self.key = progress, tracker, epochs, key

    # Pickled into the experiment by key (see ipt_ray.tracking.register_live).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.key is not None:
            state["tracker"] = state["progress"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.key is not None:
            self.tracker, self.progress = live(self.key)

    def _emit(self, event: ProgressEvent) -> None:
        try:
            self.progress(event)
        except Exception as exc:  # a broken printer must not stop the search
            logger.warning("progress callback failed: %s", exc)

    def _record(self, trial: Any) -> TrialRecord | None:
        return self.tracker.trials.get(trial.trial_id)

    def on_trial_start(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        record = self._record(trial)
        sampled = record.sampled if record else {}
        text = f"[{trial.trial_id}] started {format_params(sampled)}".rstrip()
        self._emit(
            ProgressEvent(
                "trial_start",
                text,
                trial_id=trial.trial_id,
                status=STATUS_RUNNING,
                params=dict(sampled),
            )
        )

    def on_trial_result(
        self, iteration: int, trials: Sequence[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        metric = self.tracker.metric
        epoch, value = result.get(C.EPOCH), result.get(metric)
        epoch_i = int(epoch) if isinstance(epoch, (int, float)) else None
        value_f = float(value) if isinstance(value, (int, float)) else None
        record = self._record(trial)
        total = record.max_epochs if record and record.max_epochs else self.epochs
        self._emit(
            ProgressEvent(
                "result",
                f"[{trial.trial_id}] epoch {epoch_i}/{total} {metric}={format_value(value_f)}",
                trial_id=trial.trial_id,
                status=STATUS_RUNNING,
                epoch=epoch_i,
                value=value_f,
            )
        )

    def _end(self, trial: Any) -> None:
        record = self._record(trial)
        if record is None:
            return
        text = f"[{trial.trial_id}] {record.status}"
        if record.status == STATUS_FAILED:
            text += f": {record.error}"
        else:
            text += (
                f" after epoch {record.last_epoch}: best {self.tracker.metric}="
                f"{format_value(record.best_value)} (epoch {record.best_epoch})"
            )
        self._emit(
            ProgressEvent(
                "trial_end",
                text,
                trial_id=trial.trial_id,
                status=record.status,
                epoch=record.last_epoch,
                value=record.best_value,
            )
        )

    def on_trial_complete(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self._end(trial)

    def on_trial_error(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self._end(trial)
