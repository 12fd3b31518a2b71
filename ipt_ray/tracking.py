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

Only creating the experiment and the parent run (before any trial starts) raises
:class:`TrackingError`; after that the search never waits on MLflow. Every write goes through
a :class:`~ipt_ray.backlog.CallBacklog`: a call the unreachable store cannot take is kept, in
order, and replayed when it answers again (and, with ``journal=``, written to disk, so that a
resumed search replays what a killed driver left); :meth:`finish_search` waits up to
``flush_timeout`` seconds for it to drain. The calls are data
(:class:`ipt_ray.journal.PendingCall`: an operation name and JSON-able arguments), and
:meth:`SearchTracker._apply` is the one place that turns one into MlflowClient calls.
Replays never duplicate: a trial's run is looked up by its tags before it is created, metric
batches carry the timestamp they were queued with, and a batch that may have reached MLflow
already is checked first.
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
from ipt_ray.backlog import CallBacklog, NoRun, quick_http_requests
from ipt_ray.errors import UserError
from ipt_ray.journal import Journal, PendingCall
from ipt_ray.store import (
    experiment_artifact_location,
    is_local_uri,
    local_tracking_uri,
    ui_command,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ipt_ray.core.config import TrainConfig

logger = logging.getLogger(__name__)

SPACE_ARTIFACT = "search_space.yaml"
SUMMARY_ARTIFACT = "search_summary.json"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
#: Checkpoint files not uploaded: optimizer/scheduler state is for resuming, and the uploaded
#: checkpoint is the best epoch's own (its weights are the best ones).
CHECKPOINT_SKIP_PREFIXES = ("train_state", "best_weights")
#: Metrics that do not change during a trial: logged once, at the first epoch.
STATIC_METRICS = (
    C.TRAINABLE_PARAMS,
    C.BACKBONE_PARAMS,
    C.TRAINABLE_SHARE,
    C.STARTUP_SECONDS,
    C.TORCH_THREADS,
)
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
# The MLflow writes a tracker makes, as the names its pending calls carry (journaled: an
# earlier version's journal must still read, so these names do not change).
#: The ``error`` tag of a trial whose driver died before Tune saved it (not resumed).
TRIAL_LOST = (
    "TrialLost: the search driver died before Ray Tune saved this trial, so the resumed "
    "search could not continue it"
)
OP_CREATE_TRIAL_RUN = "create_trial_run"
OP_LOG_PARAMS = "log_params"
OP_LOG_METRICS = "log_metrics"
OP_SET_TAG = "set_tag"
OP_TAG_BEST_TRIAL = "tag_best_trial"
OP_SET_STATUS = "set_status"
OP_SET_TERMINATED = "set_terminated"
OP_LOG_TEXT = "log_text"
OP_LOG_DICT = "log_dict"
OP_UPLOAD_CHECKPOINT = "upload_checkpoint"
# The argument naming the run a call writes to: its id, or (its creation still pending when
# the call was queued) the trial whose run it is.
ARG_RUN = "run"
ARG_RUN_OF_TRIAL = "run_of_trial"
_OPS = frozenset(
    {
        OP_CREATE_TRIAL_RUN,
        OP_LOG_PARAMS,
        OP_LOG_METRICS,
        OP_SET_TAG,
        OP_TAG_BEST_TRIAL,
        OP_SET_STATUS,
        OP_SET_TERMINATED,
        OP_LOG_TEXT,
        OP_LOG_DICT,
        OP_UPLOAD_CHECKPOINT,
    }
)


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
    # (epoch, checkpoint rank) of the latest result: a checkpoint Tune persists after it
    # (the actor runner) belongs to that epoch.
    last_rank: tuple[int, float | None] | None = None
    uploaded_checkpoint: str | None = None
    run_requested: bool = False  # its run's creation was sent or buffered
    logged_epochs: list[int] = field(default_factory=list)
    error: str | None = None
    node: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None

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


#: Where a tracker writes: a run id, or a trial (whose run id may still be on its way).
Run = str | TrialRecord


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
        retry_interval: seconds between attempts to replay buffered calls.
        flush_timeout: how long :meth:`finish_search` waits for buffered calls to reach an
            unreachable store (default: ``$IPT_RAY_MLFLOW_FLUSH_TIMEOUT`` or 600 s); what is
            still buffered then is counted in ``lost_calls`` and reported as a warning (and,
            with a journal, kept in it for a resume).
        journal: a file that every buffered call is appended to as it is queued (see
            :mod:`ipt_ray.journal`; ``run_search`` puts it in the search's Ray experiment
            folder). Calls an earlier driver left in it are read here and replayed, in
            order, before any new call (at the latest by :meth:`resume_search`). None: the
            backlog lives in memory only and dies with the process.
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
        retry_interval: float = 5.0,
        flush_timeout: float | None = None,
        journal: str | Path | None = None,
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
        # trial id -> why the search itself failed it (the watchdog), for its error tag
        self._failure_reasons: dict[str, str] = {}
        # Run ids of trials whose run a replayed call created (or found): the calls behind it
        # may name the run by its trial, and the trial's record may not exist yet (a resumed
        # search: journaled calls are replayed before Tune restores the records).
        self._trial_runs: dict[str, str] = {}
        self.backlog = CallBacklog(
            self._apply,
            tracking_uri=tracking_uri,
            retry_interval=retry_interval,
            flush_timeout=flush_timeout,
            journal=journal,
            done_fields=self._done_fields,
            runs_of=self._journal_runs,
        )
        self.backlog.load_journal(self._trial_runs.update)

    @property
    def failed_calls(self) -> int:
        """Calls that failed at least once (refused, or kept for the store)."""
        return self.backlog.failed_calls

    @property
    def lost_calls(self) -> int:
        """Calls that never reached MLflow (refused, or given up on)."""
        return self.backlog.lost_calls

    @property
    def pending_calls(self) -> int:
        """Calls kept while the store is unreachable."""
        return len(self.backlog)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`ipt_ray.backlog.CallBacklog.flush`."""
        return self.backlog.flush(timeout)

    @property
    def journal(self) -> Journal | None:
        """The journal of kept calls (None without one, or after it could not be written)."""
        return self.backlog.journal

    # -- what the backlog asks of the tracker ----------------------------------------------
    def _journal_runs(self, calls: Sequence[PendingCall]) -> dict[str, str]:
        """Known run ids of the trials that ``calls`` name by trial (to keep on a rewrite)."""
        refs = [c.args for c in calls] + [c.args["best"] for c in calls if "best" in c.args]
        trials = {ref[ARG_RUN_OF_TRIAL] for ref in refs if ARG_RUN_OF_TRIAL in ref}
        return {t: run_id for t in sorted(trials) if (run_id := self._trial_run_id(t))}

    def _done_fields(self, call: PendingCall) -> tuple[str | None, str | None]:
        """What a journaled call's ``done`` line carries: the trial and run id of a run it
        created (later journaled calls may name that run by its trial only)."""
        trial = call.args.get("trial") if call.op == OP_CREATE_TRIAL_RUN else None
        if not isinstance(trial, str):
            return None, None
        return trial, self._trial_run_id(trial)

    # -- helpers ---------------------------------------------------------------------------
    def _call(self, op: str, what: str, run: Run | None = None, **args: Any) -> None:
        """Do one MLflow write now, or buffer it (see the module docstring); never raises.

        ``op`` and ``args`` are what :meth:`_apply` turns into the client call. ``run`` is a
        run id, or a trial whose run id may not be known yet (its creation is buffered): the
        call then names the trial and finds the id when it is made; a trial run that was
        never created drops the call.
        """
        if run is not None:
            if isinstance(run, str):
                args[ARG_RUN] = run
            elif run.run_id is not None:
                args[ARG_RUN] = run.run_id
            else:
                args[ARG_RUN_OF_TRIAL] = run.trial_id
        self.backlog.submit(PendingCall(op, args, what))

    def _trial_run_id(self, trial_id: str) -> str | None:
        record = self.trials.get(trial_id)
        return (record.run_id if record is not None else None) or self._trial_runs.get(trial_id)

    def _set_trial_run(self, trial_id: str, run_id: str) -> None:
        self._trial_runs[trial_id] = run_id
        record = self.trials.get(trial_id)
        if record is not None:
            record.run_id, record.run_requested = run_id, True

    def _run_id(self, args: Mapping[str, Any]) -> str:
        """The run a call writes to.

        Raises:
            NoRun: it names a trial whose run was never created.
        """
        if ARG_RUN in args:
            return str(args[ARG_RUN])
        trial_id = str(args.get(ARG_RUN_OF_TRIAL))
        run_id = self._trial_run_id(trial_id)
        if run_id is None:
            raise NoRun(f"trial {trial_id} has no MLflow run")
        return run_id

    def _apply(self, call: PendingCall) -> None:
        """Make the MlflowClient call that ``call`` describes: the one place that turns a
        pending call (in memory or journaled) into MLflow writes.

        A call tried before (``attempts > 1``, or the first call of a journal left by a dead
        driver) may have reached MLflow although no answer came: the writes MLflow would
        repeat are checked first (a trial's run is looked up before it is created, a metric
        batch already logged is not logged again); the others (params of the same value,
        tags, statuses, artifacts) are idempotent in MLflow.

        Raises:
            NoRun: the call names a trial whose run was never created.
            ValueError: an unknown operation (a journal from another version).
            Exception: whatever the client raises (see :func:`ipt_ray.backlog.is_transient`).
        """
        from mlflow.entities import Metric, Param

        op, args = call.op, call.args
        if op not in _OPS:
            raise ValueError(f"unknown MLflow call {op!r} (journaled by another version?)")
        maybe_applied = call.attempts > 1
        if op == OP_CREATE_TRIAL_RUN:
            self._create_trial_run(args)
            return
        if op == OP_TAG_BEST_TRIAL:
            # The best trial's run id may itself have been unknown when this was queued.
            best = self._run_id(args["best"])
            self.client.set_tag(self._run_id(args), C.TAG_BEST_TRIAL, best)
            return
        run_id = self._run_id(args)
        if op == OP_LOG_PARAMS:
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in args["params"]])
        elif op == OP_LOG_METRICS:
            step, timestamp = int(args["step"]), int(args["timestamp"])
            metrics = [Metric(k, float(v), timestamp, step) for k, v in args["metrics"].items()]
            if maybe_applied and metrics and self._logged(run_id, metrics[0]):
                return  # the batch reached MLflow before (a log_batch is one transaction)
            self.client.log_batch(run_id, metrics=metrics)
        elif op == OP_SET_TAG:
            self.client.set_tag(run_id, args["key"], args["value"])
        elif op == OP_SET_STATUS:
            self.client.update_run(run_id, status=args["status"])
        elif op == OP_SET_TERMINATED:
            self.client.set_terminated(run_id, args["status"])
        elif op == OP_LOG_TEXT:
            self.client.log_text(run_id, args["text"], args["artifact_file"])
        elif op == OP_LOG_DICT:
            self.client.log_dict(run_id, args["data"], args["artifact_file"])
        elif op == OP_UPLOAD_CHECKPOINT:
            self._upload_checkpoint(run_id, args["trial"], args["paths"])

    def _create_trial_run(self, args: Mapping[str, Any]) -> None:
        """Create a trial's run, unless it exists: a replay (after an answer that never came,
        or by a resumed driver) must not create a second run for the trial."""
        trial_id = str(args["trial"])
        if self._trial_run_id(trial_id) is not None:
            return
        tags = dict(args["tags"])
        run_id = self._find_trial_run(str(args["experiment_id"]), trial_id, tags)
        if run_id is None:
            run = self.client.create_run(
                str(args["experiment_id"]), run_name=args["run_name"], tags=tags
            )
            run_id = run.info.run_id
        self._set_trial_run(trial_id, run_id)

    def _find_trial_run(
        self, experiment_id: str, trial_id: str, tags: Mapping[str, str]
    ) -> str | None:
        """The run of ``trial_id`` (in its search's parent run) already in MLflow, or None."""
        if "'" in trial_id:  # not a Tune trial id; MLflow's filter has no escape for it
            return None
        parts = [f"tags.`{C.TAG_TRIAL_ID}` = '{trial_id}'"]
        parent = tags.get(C.TAG_PARENT_RUN)
        if parent:
            parts.append(f"tags.`{C.TAG_PARENT_RUN}` = '{parent}'")
        found = self.client.search_runs(
            [experiment_id], filter_string=" and ".join(parts), max_results=1
        )
        return str(found[0].info.run_id) if found else None

    def _logged(self, run_id: str, metric: Any) -> bool:
        """Whether ``metric`` (same key, step and timestamp) is in the run's history."""
        history = self.client.get_metric_history(run_id, metric.key)
        return any(m.step == metric.step and m.timestamp == metric.timestamp for m in history)

    def _upload_checkpoint(self, run_id: str, trial_id: str, paths: Sequence[str]) -> None:
        """Upload the first checkpoint of ``paths`` (best first) that still exists."""
        for path in paths:
            with self.resolve_checkpoint(path) as directory:
                if directory is None:
                    continue
                for file in sorted(directory.iterdir()):
                    if file.is_file() and not file.name.startswith(CHECKPOINT_SKIP_PREFIXES):
                        self.client.log_artifact(run_id, str(file), CHECKPOINT_ARTIFACT_DIR)
            record = self.trials.get(trial_id)
            if record is not None:
                record.uploaded_checkpoint = path
            return

    def _log_params(self, run: Run, params: Mapping[str, Any]) -> None:
        items = [[str(k)[:250], _param_value(v)] for k, v in params.items()]
        for start in range(0, len(items), _BATCH_PARAMS):
            self._call(
                OP_LOG_PARAMS, "log params", run, params=items[start : start + _BATCH_PARAMS]
            )

    def _log_metrics(self, run: Run, values: Mapping[str, float], step: int) -> None:
        # The timestamp is fixed now, not at replay: a replayed batch is the same batch.
        now = int(time.time() * 1000)
        items = list(values.items())
        for start in range(0, len(items), _BATCH_METRICS):
            self._call(
                OP_LOG_METRICS,
                f"log metrics (step {step})",
                run,
                metrics=dict(items[start : start + _BATCH_METRICS]),
                step=step,
                timestamp=now,
            )

    def _terminate(self, run: Run, status: str) -> None:
        self._call(OP_SET_TERMINATED, f"set run status {status}", run, status=status)

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
                OP_LOG_TEXT,
                "log the search space",
                self.parent_run_id,
                text=space_text,
                artifact_file=SPACE_ARTIFACT,
            )
        return self.parent_run_id

    def resume_search(self, parent_run_id: str) -> str:
        """Continue an interrupted search: replay the calls its journal holds (what the
        killed driver could not log), then reopen its parent run (no new run is created).

        Raises:
            TrackingError: the parent run cannot be found in the tracking store.
        """
        try:
            run = self.client.get_run(parent_run_id)
            self.experiment_id = run.info.experiment_id
        except Exception as exc:
            raise TrackingError(
                f"cannot resume: parent run {parent_run_id} is not in {self.tracking_uri} "
                f"({type(exc).__name__})"
            ) from exc
        self.parent_run_id = parent_run_id
        self.parent_status = STATUS_RUNNING
        # The journal first: it may close the parent (a driver interrupted during an outage),
        # which the reopening must follow, and the records Tune restores next need the run
        # ids its run creations give.
        self.backlog.drain(force=True)
        if self.backlog:  # the store went away again: the reopening queues behind them
            self._call(OP_SET_STATUS, "reopen the search's run", parent_run_id, status="RUNNING")
            return parent_run_id
        try:
            self.client.update_run(parent_run_id, status="RUNNING")
        except Exception as exc:
            raise TrackingError(
                f"cannot resume: parent run {parent_run_id} cannot be reopened in "
                f"{self.tracking_uri} ({type(exc).__name__})"
            ) from exc
        return parent_run_id

    def state(self) -> dict[str, Any]:
        """What a restored search needs to go on logging into the same runs."""
        return {"trials": {tid: asdict(rec) for tid, rec in self.trials.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back :meth:`state`: trials keep their child runs (no duplicates)."""
        for trial_id, values in state.get("trials", {}).items():
            if trial_id not in self.trials:
                # What was still buffered when the state was saved died with that process: a
                # run creation, or epochs (MLflow says which are logged: see _backfill).
                record = TrialRecord(**values)
                if record.run_id is None:  # its creation was journaled, and replayed since
                    record.run_id = self._trial_runs.get(trial_id)
                record.run_requested = record.run_id is not None
                record.logged_epochs = []
                self.trials[trial_id] = record
        self._close_lost_trials()

    def _close_lost_trials(self) -> None:
        """Close, as KILLED with an ``error`` tag, the runs of trials that the journal knows
        and the restored state does not: Tune saves its state every 10 s or so, so a trial
        started after its last save died with the driver and will not be continued (its run
        would otherwise stay RUNNING, and the search would count it nowhere)."""
        for trial_id, run_id in sorted(self._trial_runs.items()):
            if trial_id in self.trials:
                continue
            record = TrialRecord(
                trial_id,
                run_id=run_id,
                run_requested=True,
                status=STATUS_KILLED,
                error=TRIAL_LOST,
                ended=time.time(),
            )
            self.trials[trial_id] = record
            logger.warning(
                "MLflow: trial %s's run %s closed as KILLED: %s", trial_id, run_id, TRIAL_LOST
            )
            self._call(OP_SET_TAG, "set the error tag", record, key=C.TAG_ERROR, value=TRIAL_LOST)
            self._terminate(record, "KILLED")

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
            reopen = record.status != STATUS_RUNNING and record.has_run
            record.status, record.ended, record.error = STATUS_RUNNING, None, None
            if reopen:
                self._call(OP_SET_STATUS, "reopen a resumed trial's run", record, status="RUNNING")
            if record.has_run:
                return record
            # else: its run was never created (MLflow was down when the driver died): now
        else:
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
        record.run_requested = True
        self._call(
            OP_CREATE_TRIAL_RUN,
            f"create the run of trial {trial_id}",
            trial=trial_id,
            experiment_id=self.experiment_id,
            run_name=f"trial-{trial_id}",
            tags=tags,
        )
        self._log_params(record, record.settings)
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
        first_step = _number(result.get(C.FIRST_STEP_UNIX))
        if first_step is not None and C.STARTUP_SECONDS not in record.metrics:
            # From the trial's start (Tune started its actor) to the first training step.
            values[C.STARTUP_SECONDS] = max(0.0, first_step - record.started)
        record.metrics.update(values)
        record.last_epoch = max(record.last_epoch, epoch)
        score = _number(result.get(self.metric))
        if score is not None and _better(score, record.best_value, self.mode):
            record.best_value, record.best_epoch = score, epoch
            record.best_metrics = dict(values)
        rank = score
        if self.checkpoint_score_key is not None:
            rank = _number(result.get(self.checkpoint_score_key))
        record.last_rank = (epoch, rank)
        if checkpoint:
            record.checkpoints[epoch] = (rank, checkpoint)
        node = result.get(NODE_RESULT_KEY)
        if not record.has_run:
            return
        if isinstance(node, str) and node != record.node:
            record.node = node
            self._call(OP_SET_TAG, "set the node tag", record, key=C.TAG_NODE, value=node)
        if checkpoint and any(e not in record.logged_epochs for e in range(1, epoch)):
            self._backfill(record, checkpoint, epoch)
        if values:
            self._log_metrics(record, values, epoch)
            record.logged_epochs.append(epoch)

    def attach_checkpoint(self, trial_id: str, checkpoint: str) -> None:
        """Record a checkpoint persisted after the trial's latest result (Tune's own
        checkpoints, which arrive after their result: the actor runner)."""
        record = self.trials.get(trial_id)
        if record is None or record.last_rank is None:
            return
        epoch, rank = record.last_rank
        record.checkpoints[epoch] = (rank, checkpoint)
        if record.has_run and any(e not in record.logged_epochs for e in range(1, epoch)):
            self._backfill(record, checkpoint, epoch)

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
        if record.run_id is None or self.backlog:
            return  # no run to read yet: tried again with the next checkpoint
        # MLflow is the truth about what is logged (with the backlog empty, everything this
        # process sent has reached it): a restored tracker's own list may be an older snapshot
        # than what reached the store before the driver died, or name epochs that were still
        # buffered when it died.
        try:
            with quick_http_requests():
                history = self.client.get_metric_history(record.run_id, self.metric)
        except Exception as exc:
            logger.warning("MLflow: reading the logged epochs of %s failed: %s", record.run_id, exc)
            return
        record.logged_epochs = sorted({int(m.step) for m in history})
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
                self._log_metrics(record, values, past)
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

    def upload_best_checkpoint(self, trial_id: str) -> None:
        """Upload (or buffer the upload of) the trial's best checkpoint that still exists, under
        ``checkpoint/``; ``record.uploaded_checkpoint`` is its path once it is uploaded."""
        record = self.trials.get(trial_id)
        if record is None or not record.has_run or record.uploaded_checkpoint:
            return
        paths = self._checkpoint_order(record)
        if not paths:
            return
        self._call(
            OP_UPLOAD_CHECKPOINT,
            f"upload the checkpoint of trial {trial_id}",
            record,
            trial=trial_id,
            paths=paths,
        )

    def explain_failure(self, trial_id: str, reason: str) -> None:
        """Record why the search itself is failing a trial (a one-line reason, such as the
        watchdog's ``TrialStalled: ...``): its run's ``error`` tag says that, not the
        actor death that Tune sees."""
        self._failure_reasons[trial_id] = reason

    def end_trial(self, trial_id: str, *, error: str | None = None) -> TrialRecord:
        """Close the trial's run: FAILED with an ``error`` tag, or FINISHED (``pruned`` tag
        ``true`` when it stopped before its last epoch); upload its best checkpoint."""
        record = self.trials.get(trial_id) or self.start_trial(trial_id, params={})
        record.ended = time.time()
        reason = self._failure_reasons.pop(trial_id, None)
        if error is not None and reason is not None:
            error = reason
        if error is not None:
            record.status, record.error = STATUS_FAILED, error
        elif record.max_epochs is not None and record.last_epoch < record.max_epochs:
            record.status = STATUS_PRUNED
        else:
            record.status = STATUS_FINISHED
        if not record.has_run:
            return record
        self.upload_best_checkpoint(trial_id)
        if error is not None:
            self._call(
                OP_SET_TAG,
                "set the error tag",
                record,
                key=C.TAG_ERROR,
                value=error[:5000] or "error",
            )
        else:
            pruned = "true" if record.status == STATUS_PRUNED else "false"
            self._call(OP_SET_TAG, "set the pruned tag", record, key=C.TAG_PRUNED, value=pruned)
        self._terminate(record, _MLFLOW_STATUS[record.status])
        return record

    def kill_open_trials(self) -> list[str]:
        """Mark every trial still running as KILLED; return their ids."""
        killed = []
        for record in self.trials.values():
            if not record.is_open:
                continue
            record.status, record.ended = STATUS_KILLED, time.time()
            killed.append(record.trial_id)
            if record.has_run:
                self.upload_best_checkpoint(record.trial_id)
                self._terminate(record, "KILLED")
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
        (FINISHED, or KILLED when ``interrupted``), then wait for buffered calls (see
        :meth:`flush`). Safe to call more than once: later calls only add the summary
        artifact."""
        if self.kill_open_trials():
            interrupted = True
        run_id = self.parent_run_id
        if run_id is None:
            return
        if summary is not None:
            self._call(
                OP_LOG_DICT,
                "log the search summary",
                run_id,
                data=dict(summary),
                artifact_file=SUMMARY_ARTIFACT,
            )
        if self.parent_status != STATUS_RUNNING:
            self.flush()
            return
        best = self.best_trial()
        if best is not None and best.has_run:
            best_run = {ARG_RUN: best.run_id} if best.run_id else {ARG_RUN_OF_TRIAL: best.trial_id}
            self._call(OP_TAG_BEST_TRIAL, "set the best-trial tag", run_id, best=best_run)
        counts = self.counts()
        values = {f"trials_{k}": float(v) for k, v in counts.items() if k != STATUS_RUNNING}
        if best is not None and best.best_value is not None:
            values[f"best_{self.metric}"] = best.best_value
        self._log_metrics(run_id, values, 0)
        self.parent_status = STATUS_KILLED if interrupted else STATUS_FINISHED
        self._terminate(run_id, "KILLED" if interrupted else "FINISHED")
        self.flush()


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
