"""MLflow tracking of a search: a parent run per search, a child run per trial.

Everything is logged from the Tune driver process with :class:`mlflow.MlflowClient`, never
from the trials: a trial that is killed (ASHA, Ctrl-C, a lost node) cannot leave a run
``RUNNING``, and workers need no access to the tracking server.

:class:`SearchTracker` holds the MLflow logic and knows nothing of Ray (tests drive it with
plain dicts). :class:`MlflowSearchTracker` is the thin Ray Tune callback that feeds it.

What lands in MLflow (experiment = the search name, artifact location explicit):

- parent run (tag ``ipt_ray.kind=search``): the search settings as params, the space file as
  the artifact ``search_space.yaml``; at the end the tag ``best_trial_run_id``, the metrics
  ``best_<metric>``, ``trials_finished``/``trials_pruned``/``trials_failed`` and the artifact
  ``search_summary.json``;
- one child run per trial (tags ``mlflow.parentRunId``, ``ray.trial_id``,
  ``ipt_ray.kind=trial``, ``node``): params are the trial's :meth:`TrainConfig.flat_params`
  plus the sampled params; every reported numeric metric with ``step = epoch`` (the parameter
  counts once); the best checkpoint's files (weights + config, no optimizer state) under
  ``checkpoint/``; status FINISHED (tag ``pruned=true`` when stopped before its last epoch
  without an error), FAILED (tag ``error``) or KILLED (the search was interrupted).

A failing MLflow call is logged as a warning and the search goes on; only creating the
experiment and the parent run (before any trial starts) raises :class:`TrackingError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from ipt_ray import constants as C
from ipt_ray.errors import UserError
from ipt_ray.store import (
    experiment_artifact_location,
    is_local_uri,
    local_tracking_uri,
    ui_command,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ipt_ray.config import TrainConfig

logger = logging.getLogger(__name__)

SPACE_ARTIFACT = "search_space.yaml"
SUMMARY_ARTIFACT = "search_summary.json"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
#: Checkpoint files not uploaded: optimizer/scheduler state is for resuming, and the uploaded
#: checkpoint is the best epoch's own (its weights are the best ones).
CHECKPOINT_SKIP_PREFIXES = ("train_state", "best_weights")
#: Metrics that do not change during a trial: logged once, at the first epoch.
STATIC_METRICS = (C.TRAINABLE_PARAMS, C.BACKBONE_PARAMS, C.TRAINABLE_SHARE)
#: Result keys that are bookkeeping, not metrics (Tune's auto-filled keys among them).
NON_METRIC_KEYS = frozenset(
    {
        C.EPOCH,
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
#: Result key with the hosts of the trial's workers (``ipt_ray.worker.NODE_KEY``).
NODE_RESULT_KEY = "node"

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_PRUNED = "pruned"
STATUS_FAILED = "failed"
STATUS_KILLED = "killed"
_MLFLOW_STATUS = {
    STATUS_FINISHED: "FINISHED",
    STATUS_PRUNED: "FINISHED",
    STATUS_FAILED: "FAILED",
    STATUS_KILLED: "KILLED",
}
_PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param value
_BATCH_PARAMS = 100  # MLflow's limit on params per log_batch call
_BATCH_METRICS = 1000


class TrackingError(UserError):
    """The tracking server or store cannot be used (raised before any trial starts)."""


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
    uploaded_checkpoint: str | None = None
    logged_epochs: list[int] = field(default_factory=list)
    error: str | None = None
    node: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None

    @property
    def is_open(self) -> bool:
        return self.status == STATUS_RUNNING


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _better(a: float, b: float | None, mode: str) -> bool:
    if math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a > b if mode == "max" else a < b


def _param_value(value: Any) -> str:
    text = "None" if value is None else str(getattr(value, "value", value))
    return text[:_PARAM_VALUE_LIMIT]


@contextlib.contextmanager
def _local_dir(path: str) -> Iterator[Path | None]:
    """The default checkpoint resolver: a directory on this machine, or None."""
    directory = Path(path)
    yield directory if directory.is_dir() else None


CheckpointResolver = Callable[[str], contextlib.AbstractContextManager[Path | None]]


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


class SearchTracker:
    """The MLflow side of one search (no Ray here). See the module docstring.

    Args:
        tracking_uri: the MLflow tracking URI (``sqlite:///...``, ``http://host:port``, ...).
        experiment_name: MLflow experiment; created if missing, reused otherwise.
        metric, mode: the search metric and direction (``max``/``min``).
        artifact_location: artifact root of a new experiment (None: the server's default).
        client: an MlflowClient to use (tests); built from ``tracking_uri`` otherwise.
        resolve_checkpoint: turns a reported checkpoint path into a local directory (a
            context manager yielding None when it is gone); default: local paths only.
        checkpoint_score_key: a result key ranking checkpoints (highest first, not logged as
            a metric); None: checkpoints are ranked by the search metric.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        *,
        metric: str,
        mode: str,
        artifact_location: str | None = None,
        client: MlflowClient | None = None,
        resolve_checkpoint: CheckpointResolver | None = None,
        checkpoint_score_key: str | None = None,
    ) -> None:
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        self.client = client
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.metric, self.mode = metric, mode
        self.resolve_checkpoint: CheckpointResolver = resolve_checkpoint or _local_dir
        self.checkpoint_score_key = checkpoint_score_key
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.parent_status: str | None = None
        self.trials: dict[str, TrialRecord] = {}
        self.failed_calls = 0

    # -- helpers ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call; a failure is a warning, never an exception."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self.failed_calls += 1
            logger.warning("MLflow: %s failed (the search goes on): %s", what, exc)
            return None

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k)[:250], _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), _BATCH_PARAMS):
            self._call(
                "log params",
                self.client.log_batch,
                run_id,
                params=items[start : start + _BATCH_PARAMS],
            )

    def _log_metrics(self, run_id: str, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in values.items()]
        for start in range(0, len(items), _BATCH_METRICS):
            self._call(
                "log metrics",
                self.client.log_batch,
                run_id,
                metrics=items[start : start + _BATCH_METRICS],
            )

    def _terminate(self, run_id: str, status: str) -> None:
        self._call(f"set run status {status}", self.client.set_terminated, run_id, status)

    # -- the search ------------------------------------------------------------------------
    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return str(
                self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            )
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.experiment_name!r} is deleted (but its name is still "
                "taken); restore it, remove it for good with `mlflow gc`, or choose another "
                "search name"
            )
        return str(experiment.experiment_id)

    def start_search(
        self,
        *,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        space_text: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create (or reuse) the experiment and create the parent run; return its id.

        Raises:
            TrackingError: the tracking store cannot be reached or refuses the experiment.
        """
        try:
            self.experiment_id = self._experiment()
            run = self.client.create_run(
                self.experiment_id,
                run_name=run_name,
                tags={C.TAG_KIND: C.KIND_SEARCH, **(tags or {})},
            )
        except TrackingError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise TrackingError(
                f"cannot use the MLflow tracking URI {self.tracking_uri}: "
                f"{type(exc).__name__}: {first}"
            ) from exc
        self.parent_run_id = run.info.run_id
        self.parent_status = STATUS_RUNNING
        if params:
            self._log_params(self.parent_run_id, params)
        if space_text is not None:
            self._call(
                "log the search space",
                self.client.log_text,
                self.parent_run_id,
                space_text,
                SPACE_ARTIFACT,
            )
        return self.parent_run_id

    def resume_search(self, parent_run_id: str) -> str:
        """Continue an interrupted search: reopen its parent run (no new run is created).

        Raises:
            TrackingError: the parent run cannot be found in the tracking store.
        """
        try:
            run = self.client.get_run(parent_run_id)
            self.experiment_id = run.info.experiment_id
            self.client.update_run(parent_run_id, status="RUNNING")
        except Exception as exc:
            raise TrackingError(
                f"cannot resume: parent run {parent_run_id} is not in {self.tracking_uri} "
                f"({type(exc).__name__})"
            ) from exc
        self.parent_run_id = parent_run_id
        self.parent_status = STATUS_RUNNING
        return parent_run_id

    def state(self) -> dict[str, Any]:
        """What a restored search needs to go on logging into the same runs."""
        return {"trials": {tid: asdict(rec) for tid, rec in self.trials.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back :meth:`state`: trials keep their child runs (no duplicates)."""
        for trial_id, values in state.get("trials", {}).items():
            if trial_id not in self.trials:
                self.trials[trial_id] = TrialRecord(**values)

    # -- trials ----------------------------------------------------------------------------
    def start_trial(
        self,
        trial_id: str,
        *,
        params: Mapping[str, Any],
        sampled: Mapping[str, Any] | None = None,
        max_epochs: int | None = None,
    ) -> TrialRecord:
        """Create the trial's child run (once: a restarted trial keeps its run).

        ``params`` (the TrainConfig's flat params) and ``sampled`` (the searched values) are
        logged together; a sampled name that is also a flat param is logged once.
        """
        record = self.trials.get(trial_id)
        if record is not None:  # restarted (failure retry) or resumed (interrupted search)
            if record.status != STATUS_RUNNING and record.run_id is not None:
                self._call(
                    "reopen a resumed trial's run",
                    self.client.update_run,
                    record.run_id,
                    status="RUNNING",
                )
            record.status, record.ended, record.error = STATUS_RUNNING, None, None
            return record
        record = TrialRecord(
            trial_id, params=dict(params), sampled=dict(sampled or {}), max_epochs=max_epochs
        )
        self.trials[trial_id] = record
        tags = {
            C.TAG_KIND: C.KIND_TRIAL,
            C.TAG_TRIAL_ID: trial_id,
        }
        if self.parent_run_id is not None:
            tags[C.TAG_PARENT_RUN] = self.parent_run_id
        if self.experiment_id is None:
            logger.warning(
                "MLflow: no experiment (start_search was not called); trial %s is not tracked",
                trial_id,
            )
            return record
        run = self._call(
            f"create the run of trial {trial_id}",
            self.client.create_run,
            self.experiment_id,
            run_name=f"trial-{trial_id}",
            tags=tags,
        )
        if run is None:
            return record
        record.run_id = run.info.run_id
        self._log_params(record.run_id, {**record.sampled, **record.params})
        return record

    def log_result(
        self, trial_id: str, result: Mapping[str, Any], *, checkpoint: str | None = None
    ) -> None:
        """Log one reported result: numeric values as metrics at ``step = result['epoch']``.

        ``checkpoint`` is the path of the checkpoint reported with it (if any).
        """
        record = self.trials.get(trial_id) or self.start_trial(trial_id, params={})
        epoch_value = _number(result.get(C.EPOCH))
        epoch = int(epoch_value) if epoch_value is not None else record.last_epoch + 1
        values: dict[str, float] = {}
        for key, value in result.items():
            number = _number(value)
            if number is None or key in NON_METRIC_KEYS or key == self.checkpoint_score_key:
                continue
            if key in STATIC_METRICS and key in record.metrics:
                continue
            values[key] = number
        record.metrics.update(values)
        record.last_epoch = max(record.last_epoch, epoch)
        score = _number(result.get(self.metric))
        if score is not None and _better(score, record.best_value, self.mode):
            record.best_value, record.best_epoch = score, epoch
            record.best_metrics = dict(values)
        if checkpoint:
            rank = score
            if self.checkpoint_score_key is not None:
                rank = _number(result.get(self.checkpoint_score_key))
            record.checkpoints[epoch] = (rank, checkpoint)
        node = result.get(NODE_RESULT_KEY)
        if record.run_id is None:
            return
        if isinstance(node, str) and node != record.node:
            record.node = node
            self._call("set the node tag", self.client.set_tag, record.run_id, C.TAG_NODE, node)
        if checkpoint and any(e not in record.logged_epochs for e in range(1, epoch)):
            self._backfill(record, checkpoint, epoch)
        if values:
            self._log_metrics(record.run_id, values, epoch)
            record.logged_epochs.append(epoch)

    def _backfill(self, record: TrialRecord, checkpoint: str, epoch: int) -> None:
        """Log earlier epochs this tracker never logged, from the checkpoint's history.

        A driver killed after a worker reported an epoch (and Ray saved its checkpoint) but
        before this tracker logged it would leave a gap once the trial resumes past it; every
        checkpoint carries the trial's per-epoch metrics, so the gap is filled from there.
        """
        try:
            with self.resolve_checkpoint(checkpoint) as directory:
                if directory is None:
                    return
                state = json.loads((directory / C.STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("MLflow: no history in checkpoint %s: %s", checkpoint, exc)
            return
        if record.run_id is None:
            return
        # MLflow is the truth about what is logged (a restored tracker's own list may be an
        # older snapshot than what reached the store before the driver died).
        history = self._call(
            "read the logged epochs", self.client.get_metric_history, record.run_id, self.metric
        )
        if history is None:
            return
        record.logged_epochs = sorted({*record.logged_epochs, *(int(m.step) for m in history)})
        for entry in state.get("history", []):
            past = int(entry.get("epoch", 0))
            if 0 < past < epoch and past not in record.logged_epochs:
                values = {
                    k: float(v)
                    for k, v in entry.get("metrics", {}).items()
                    if _number(v) is not None
                    and k not in NON_METRIC_KEYS
                    and k not in STATIC_METRICS
                }
                self._log_metrics(record.run_id, values, past)
                record.logged_epochs.append(past)

    def _checkpoint_order(self, record: TrialRecord) -> list[str]:
        """Checkpoint paths, best first (by the checkpoint score, else by the metric; ties:
        the earlier epoch)."""
        descending = self.checkpoint_score_key is not None or self.mode == "max"
        sign = -1.0 if descending else 1.0

        def key(item: tuple[int, tuple[float | None, str]]) -> tuple[int, float, int]:
            epoch, (score, _) = item
            if score is None or math.isnan(score):
                return (1, 0.0, -epoch)  # unscored last, newest first
            return (0, sign * score, epoch)

        return [path for _, (_, path) in sorted(record.checkpoints.items(), key=key)]

    def upload_best_checkpoint(self, trial_id: str) -> str | None:
        """Upload the trial's best checkpoint that still exists under ``checkpoint/``.

        Returns the checkpoint path uploaded, or None.
        """
        record = self.trials.get(trial_id)
        if record is None or record.run_id is None or record.uploaded_checkpoint:
            return None if record is None else record.uploaded_checkpoint
        for path in self._checkpoint_order(record):
            try:
                with self.resolve_checkpoint(path) as directory:
                    if directory is None:
                        continue
                    files = [
                        f
                        for f in sorted(directory.iterdir())
                        if f.is_file() and not f.name.startswith(CHECKPOINT_SKIP_PREFIXES)
                    ]
                    for file in files:
                        self.client.log_artifact(record.run_id, str(file), CHECKPOINT_ARTIFACT_DIR)
            except Exception as exc:
                self.failed_calls += 1
                logger.warning(
                    "MLflow: uploading checkpoint %s of trial %s failed: %s", path, trial_id, exc
                )
                return None
            record.uploaded_checkpoint = path
            return path
        return None

    def end_trial(self, trial_id: str, *, error: str | None = None) -> TrialRecord:
        """Close the trial's run: FAILED with an ``error`` tag, or FINISHED (``pruned`` tag
        ``true`` when it stopped before its last epoch); upload its best checkpoint."""
        record = self.trials.get(trial_id) or self.start_trial(trial_id, params={})
        record.ended = time.time()
        if error is not None:
            record.status, record.error = STATUS_FAILED, error
        elif record.max_epochs is not None and record.last_epoch < record.max_epochs:
            record.status = STATUS_PRUNED
        else:
            record.status = STATUS_FINISHED
        if record.run_id is None:
            return record
        self.upload_best_checkpoint(trial_id)
        if error is not None:
            self._call(
                "set the error tag",
                self.client.set_tag,
                record.run_id,
                C.TAG_ERROR,
                error[:5000] or "error",
            )
        else:
            pruned = "true" if record.status == STATUS_PRUNED else "false"
            self._call(
                "set the pruned tag", self.client.set_tag, record.run_id, C.TAG_PRUNED, pruned
            )
        self._terminate(record.run_id, _MLFLOW_STATUS[record.status])
        return record

    def kill_open_trials(self) -> list[str]:
        """Mark every trial still running as KILLED; return their ids."""
        killed = []
        for record in self.trials.values():
            if not record.is_open:
                continue
            record.status, record.ended = STATUS_KILLED, time.time()
            killed.append(record.trial_id)
            if record.run_id is not None:
                self.upload_best_checkpoint(record.trial_id)
                self._terminate(record.run_id, "KILLED")
        return killed

    # -- results ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials by status: finished, pruned, failed, killed, running."""
        out = {
            s: 0
            for s in (STATUS_FINISHED, STATUS_PRUNED, STATUS_FAILED, STATUS_KILLED, STATUS_RUNNING)
        }
        for record in self.trials.values():
            out[record.status] += 1
        return out

    def ranked(self) -> list[TrialRecord]:
        """Trials with a metric value (not failed), best first; ties: the earlier start."""
        scored = [
            r
            for r in self.trials.values()
            if r.best_value is not None
            and not math.isnan(r.best_value)
            and r.status != STATUS_FAILED
        ]
        sign = -1.0 if self.mode == "max" else 1.0
        return sorted(scored, key=lambda r: (sign * (r.best_value or 0.0), r.started))

    def best_trial(self) -> TrialRecord | None:
        """The trial with the best value of the metric at any of its epochs, or None."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def finish_search(
        self, *, interrupted: bool = False, summary: Mapping[str, Any] | None = None
    ) -> None:
        """Close open trials (KILLED), tag the parent with the best trial, close the parent
        (FINISHED, or KILLED when ``interrupted``). Safe to call more than once: later calls
        only add the summary artifact."""
        if self.kill_open_trials():
            interrupted = True
        run_id = self.parent_run_id
        if run_id is None:
            return
        if summary is not None:
            self._call(
                "log the search summary",
                self.client.log_dict,
                run_id,
                dict(summary),
                SUMMARY_ARTIFACT,
            )
        if self.parent_status != STATUS_RUNNING:
            return
        best = self.best_trial()
        if best is not None and best.run_id is not None:
            self._call(
                "set the best-trial tag", self.client.set_tag, run_id, C.TAG_BEST_TRIAL, best.run_id
            )
        counts = self.counts()
        values = {f"trials_{k}": float(v) for k, v in counts.items() if k != STATUS_RUNNING}
        if best is not None and best.best_value is not None:
            values[f"best_{self.metric}"] = best.best_value
        self._log_metrics(run_id, values, 0)
        self.parent_status = STATUS_KILLED if interrupted else STATUS_FINISHED
        self._terminate(run_id, "KILLED" if interrupted else "FINISHED")


# --------------------------------------------------------------------------------------------
# The Ray Tune callback


def _exception_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the trainable's exception
    if isinstance(cause, BaseException):
        exc = cause
    short = getattr(exc, "short_message", None)  # ipt_ray.driver.TrialFailed
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


class MlflowSearchTracker(Callback):
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

    def on_trial_complete(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self.tracker.end_trial(trial.trial_id)

    def on_trial_error(
        self, iteration: int, trials: Sequence[Any], trial: Any, **info: Any
    ) -> None:
        self.tracker.end_trial(trial.trial_id, error=_trial_error(trial))

    def on_experiment_end(self, trials: Sequence[Any], **info: Any) -> None:
        short = self.num_samples is not None and len(trials) < self.num_samples
        self.tracker.finish_search(interrupted=short)


__all__ = [
    "CHECKPOINT_ARTIFACT_DIR",
    "SPACE_ARTIFACT",
    "SUMMARY_ARTIFACT",
    "MlflowSearchTracker",
    "SearchTracker",
    "TrackingError",
    "TrialRecord",
    "experiment_artifact_location",
    "is_local_uri",
    "live",
    "local_tracking_uri",
    "register_live",
    "ui_command",
]
