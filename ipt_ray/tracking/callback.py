"""The Ray Tune callback that feeds a search's :class:`~ipt_ray.tracking.tracker.SearchTracker`
(:class:`TrackingCallback`), and the registry of live trackers a restored callback finds.

The only module of :mod:`ipt_ray.tracking` that imports Ray.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from ipt_ray.tracking.tracker import SearchTracker

if TYPE_CHECKING:
    from ipt_ray.core.config import TrainConfig

logger = logging.getLogger(__name__)

#: Live trackers of this process by search key (the search's experiment dir). Tune pickles its
#: callbacks into the experiment (``tuner.pkl``); a restored callback finds the tracker of the
#: process that restores the search here instead of a stale copy.
_LIVE: dict[str, Any] = {}


def register_live(key: str, tracker: SearchTracker, extra: Any = None) -> None:
    """Make ``tracker`` (and ``extra``, e.g. a progress printer) the live one for ``key``."""
    _LIVE[key] = (tracker, extra)


def live(key: str) -> tuple[SearchTracker, Any]:
    """The live (tracker, extra) for ``key``; raises KeyError if none was registered."""
    return _LIVE[key]


def _exception_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the trainable's exception
    if isinstance(cause, BaseException):
        exc = cause
    short = getattr(exc, "short_message", None)  # ipt_ray.tuning.trial.TrialFailed
    if isinstance(short, str) and short:
        return short
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _text_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Failed)\b", line)]
    return (errors or lines or ["unknown error"])[-1]


def _trial_error(trial: Any) -> str:
    """A one-line error of a failed Tune trial (the root cause's type and first line).

    Read from the trial's local error files: at ``on_trial_error`` time Tune has written them
    on the driver but not yet synced them to the storage that ``Trial.get_error()`` reads.
    """
    import cloudpickle

    for attr in ("pickled_error_file", "error_file"):
        path = getattr(trial, attr, None)
        if not isinstance(path, str) or not Path(path).is_file():
            continue
        try:
            if attr == "pickled_error_file":
                with open(path, "rb") as f:
                    exc = cloudpickle.load(f)
                if isinstance(exc, BaseException):
                    return _exception_line(exc)[:500]
            else:
                return _text_line(Path(path).read_text(errors="replace"))[:500]
        except Exception as exc:  # unpicklable or half-written: try the next source
            logger.debug("cannot read %s of trial %s: %s", attr, trial.trial_id, exc)
    for getter in ("get_pickled_error", "get_error"):
        try:
            value = getattr(trial, getter)()
        except Exception:
            continue
        if isinstance(value, BaseException):
            return _exception_line(value)[:500]
        if isinstance(value, str) and value:
            return _text_line(value)[:500]
    return "unknown error"


class TrackingCallback(Callback):
    """Ray Tune callback that feeds a :class:`SearchTracker` (runs in the driver process).

    Args:
        tracker: the tracker, with :meth:`SearchTracker.start_search` already called.
        to_train_config: turns a trial's flat config into a TrainConfig (for params and the
            number of epochs; ``SearchSpace.to_train_config``).
        fixed: the space's fixed settings (not logged again as sampled params).
        num_samples: the trials the search should run (fewer at the end: it was interrupted).
        checkpoint_key: the result key holding a reported checkpoint's path.
    """

    def __init__(
        self,
        tracker: SearchTracker,
        *,
        to_train_config: Callable[[Mapping[str, Any]], TrainConfig] | None = None,
        fixed: Mapping[str, Any] | None = None,
        num_samples: int | None = None,
        checkpoint_key: str = "checkpoint_path",
        key: str | None = None,
    ) -> None:
        self.tracker = tracker
        self.key = key
        self.to_train_config = to_train_config
        self.fixed = dict(fixed or {})
        self.num_samples = num_samples
        self.checkpoint_key = checkpoint_key

    # Pickled into the experiment by key: a restored search logs through the live tracker.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.key is not None:
            state["tracker"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.key is not None:
            self.tracker = live(self.key)[0]

    def get_state(self) -> dict[str, Any] | None:
        return self.tracker.state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.tracker.load_state(state)

    def on_trial_start(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        config = dict(trial.config)
        params: dict[str, Any] = {}
        max_epochs = None
        if self.to_train_config is not None:
            try:
                train_config = self.to_train_config(config)
                params, max_epochs = train_config.flat_params(), train_config.epochs
            except Exception as exc:  # the trial itself will fail with this error
                logger.warning("trial %s: invalid config: %s", trial.trial_id, exc)
        sampled = {k: v for k, v in config.items() if k not in self.fixed}
        self.tracker.start_trial(
            trial.trial_id, params=params, sampled=sampled, max_epochs=max_epochs
        )

    def on_trial_result(
        self, iteration: int, trials: Sequence[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        values = dict(result)
        checkpoint = values.pop(self.checkpoint_key, None)
        self.tracker.log_result(
            trial.trial_id, values, checkpoint=checkpoint if isinstance(checkpoint, str) else None
        )

    def on_checkpoint(
        self, iteration: int, trials: Sequence[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        path = getattr(checkpoint, "path", None)
        if isinstance(path, str):
            self.tracker.attach_checkpoint(trial.trial_id, path)

    def on_trial_complete(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self.tracker.end_trial(trial.trial_id)

    def on_trial_error(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self.tracker.end_trial(trial.trial_id, error=_trial_error(trial))

    def on_experiment_end(self, trials: Sequence[Any], **info: Any) -> None:
        for trial in trials:
            # Tune fails a trial whose reused actor could not be reset (seen once in 2,000
            # trials) without calling on_trial_start or on_trial_error: it still gets its
            # run, FAILED with Tune's reason, and is counted.
            if trial.trial_id not in self.tracker.trials and trial.status == "ERROR":
                self.on_trial_start(0, trials, trial)
                self.on_trial_error(0, trials, trial)
        short = self.num_samples is not None and len(trials) < self.num_samples
        self.tracker.finish_search(interrupted=short)
