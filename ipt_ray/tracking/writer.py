"""The MLflow writes of a search's tracker, as data: :class:`RunWriter`.

Every write is a :class:`~ipt_ray.tracking.journal.PendingCall` (an operation name and
JSON-able arguments) submitted to a :class:`~ipt_ray.tracking.backlog.CallBacklog`: a call the
unreachable store cannot take is kept, in order, and replayed when it answers again (and,
with a journal, written to disk, so that a resumed search replays what a killed driver
left). :meth:`RunWriter._apply` is the one place that turns a call into MlflowClient calls.
Replays never duplicate: a trial's run is looked up by its tags before it is created, metric
batches carry the timestamp they were queued with, and a batch that may have reached MLflow
already is checked first.

:class:`~ipt_ray.tracking.tracker.SearchTracker` builds on it; MLflow is imported only when a
call is applied.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.tracking import schema as S
from ipt_ray.tracking.background import BackgroundBacklog
from ipt_ray.tracking.backlog import CallBacklog, NoRun
from ipt_ray.tracking.journal import Journal, PendingCall
from ipt_ray.tracking.ops import (
    ARG_ONCE_FOR,
    ARG_RUN,
    ARG_RUN_OF_TRIAL,
    OP_CREATE_TRIAL_RUN,
    OP_LOG_DATASET,
    OP_LOG_DICT,
    OP_LOG_METRICS,
    OP_LOG_PARAMS,
    OP_LOG_TEXT,
    OP_SET_STATUS,
    OP_SET_TAG,
    OP_SET_TERMINATED,
    OP_TAG_BEST_TRIAL,
    OP_UPLOAD_CHECKPOINT,
    OPS,
    RUN_ID_TOKEN,
)
from ipt_ray.tracking.record import Run, TrialRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Checkpoint files not uploaded: optimizer/scheduler state is for resuming, and the uploaded
#: checkpoint is the best epoch's own (its weights are the best ones).
CHECKPOINT_SKIP_PREFIXES = ("train_state", "best_weights")
_PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a param value
_BATCH_PARAMS = 100  # MLflow's limit on params per log_batch call
_BATCH_METRICS = 1000
#: MLflow keeps a dataset's digest in 36 characters.
DATASET_DIGEST_CHARS = 36


def _param_value(value: Any) -> str:
    text = "None" if value is None else str(getattr(value, "value", value))
    return text[:_PARAM_VALUE_LIMIT]


@contextlib.contextmanager
def _local_dir(path: str) -> Iterator[Path | None]:
    """The default checkpoint resolver: a directory on this machine, or None."""
    directory = Path(path)
    yield directory if directory.is_dir() else None


#: Turns a reported checkpoint path into a local directory (a context manager yielding None
#: when it is gone).
CheckpointResolver = Callable[[str], contextlib.AbstractContextManager[Path | None]]


class RunWriter:
    """Writes to a search's MLflow runs through a backlog (see the module docstring).

    Args:
        client: the MlflowClient to write with.
        tracking_uri: its tracking URI (the backlog's error messages name it).
        resolve_checkpoint: see :data:`CheckpointResolver`; default: local paths only.
        retry_interval, flush_timeout, journal: see
            :class:`~ipt_ray.tracking.backlog.CallBacklog`.
        background: make the calls from a writer thread
            (:class:`~ipt_ray.tracking.background.BackgroundBacklog`), not from the thread
            that logs; :meth:`flush` waits for them.
    """

    def __init__(
        self,
        client: MlflowClient,
        tracking_uri: str,
        *,
        resolve_checkpoint: CheckpointResolver | None = None,
        retry_interval: float = 5.0,
        flush_timeout: float | None = None,
        journal: str | Path | None = None,
        background: bool = False,
    ) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self.resolve_checkpoint: CheckpointResolver = resolve_checkpoint or _local_dir
        self.trials: dict[str, TrialRecord] = {}
        # Run ids of trials whose run a replayed call created (or found): the calls behind it
        # may name the run by its trial, and the trial's record may not exist yet (a resumed
        # search: journaled calls are replayed before Tune restores the records).
        self._trial_runs: dict[str, str] = {}
        backlog = BackgroundBacklog if background else CallBacklog
        self.backlog = backlog(
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
    def call_stats(self) -> dict[str, float]:
        """MLflow calls tried, the seconds spent in them (by the writer thread, in the
        background), the logging thread's seconds handing them over (``caller_seconds``: the
        Tune loop's share), and the most kept (in the background: waiting) at once."""
        backlog = self.backlog
        return {
            "calls": backlog.attempts,
            "seconds": backlog.seconds,
            "caller_seconds": backlog.caller_seconds,
            "backlog_peak": backlog.peak,
        }

    @property
    def pending_calls(self) -> int:
        """Calls kept while the store is unreachable."""
        return len(self.backlog)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`ipt_ray.tracking.backlog.CallBacklog.flush`."""
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
            Exception: whatever the client raises (see
                :func:`ipt_ray.tracking.backlog.is_transient`).
        """
        from mlflow.entities import Param

        op, args = call.op, call.args
        if op not in OPS:
            raise ValueError(f"unknown MLflow call {op!r} (journaled by another version?)")
        maybe_applied = call.attempts > 1
        if op == OP_CREATE_TRIAL_RUN:
            self._create_trial_run(args)
            return
        if op == OP_TAG_BEST_TRIAL:
            # The best trial's run id may itself have been unknown when this was queued.
            best = self._run_id(args["best"])
            self.client.set_tag(self._run_id(args), S.TAG_BEST_TRIAL, best)
            return
        run_id = self._run_id(args)
        if op == OP_LOG_PARAMS:
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in args["params"]])
        elif op == OP_LOG_METRICS:
            self._log_batch(run_id, args, maybe_applied=maybe_applied)
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
        elif op == OP_LOG_DATASET:
            self._log_dataset(run_id, args["dataset"])

    def _log_batch(self, run_id: str, args: Mapping[str, Any], *, maybe_applied: bool) -> None:
        """One result's metrics at its step, with its params and tags (one ``log_batch``,
        one transaction: its first metric says whether a batch tried before landed).

        A batch ``once_for`` a restored trial (see :data:`ARG_ONCE_FOR`) keeps only the
        metrics the run lacks at this step and the params it lacks (MLflow refuses a param
        whose value changes): a read per metric, for the few epochs a resumed trial runs
        again.
        """
        from mlflow.entities import Metric, Param, RunTag

        step, timestamp = int(args["step"]), int(args["timestamp"])
        metrics = [Metric(k, float(v), timestamp, step) for k, v in args["metrics"].items()]
        params = [Param(k, v) for k, v in args.get("params", [])]
        tags = [RunTag(k, v.replace(RUN_ID_TOKEN, run_id)) for k, v in args.get("tags", [])]
        once_for = args.get(ARG_ONCE_FOR)
        if once_for:
            new = [m for m in metrics if not self._logged(run_id, m, any_time=True)]
            record = self.trials.get(str(once_for))
            if metrics and len(new) == len(metrics) and record is not None:
                record.check_logged = False  # a new epoch: the ones after it are new too
            metrics = new
            if params:  # (tags may change: the later value wins)
                logged = self.client.get_run(run_id).data.params
                params = [p for p in params if p.key not in logged]
        elif maybe_applied and metrics and self._logged(run_id, metrics[0]):
            return  # the batch reached MLflow before
        if metrics or params or tags:
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def _log_dataset(self, run_id: str, described: Mapping[str, Any]) -> None:
        """The trial's task as the run's training dataset input (the runs table's dataset
        column): ``described`` is :meth:`ipt_ray.data.TaskData.describe`. MLflow keeps one
        input per (name, digest) of a run, so a replay adds nothing."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        name = str(described["name"])
        sizes = {k: described[k] for k in ("train", "validation", "test") if k in described}
        dataset = Dataset(
            name=name,
            digest=str(described["digest"])[:DATASET_DIGEST_CHARS],
            source_type="ipt-ray",
            source=json.dumps({"task": name}),
            profile=json.dumps(sizes),
        )
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, "train")]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=tags)])

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
        parts = [f"tags.`{S.TAG_TRIAL_ID}` = '{trial_id}'"]
        parent = tags.get(S.TAG_PARENT_RUN)
        if parent:
            parts.append(f"tags.`{S.TAG_PARENT_RUN}` = '{parent}'")
        found = self.client.search_runs(
            [experiment_id], filter_string=" and ".join(parts), max_results=1
        )
        return str(found[0].info.run_id) if found else None

    def _logged(self, run_id: str, metric: Any, *, any_time: bool = False) -> bool:
        """Whether ``metric``'s key and step (and timestamp, unless ``any_time``: the same
        epoch logged by an earlier run of it) are in the run's history."""
        history = self.client.get_metric_history(run_id, metric.key)
        return any(
            m.step == metric.step and (any_time or m.timestamp == metric.timestamp) for m in history
        )

    def _upload_checkpoint(self, run_id: str, trial_id: str, paths: Sequence[str]) -> None:
        """Upload the first checkpoint of ``paths`` (best first) that still exists."""
        for path in paths:
            with self.resolve_checkpoint(path) as directory:
                if directory is None:
                    continue
                for file in sorted(directory.iterdir()):
                    if file.is_file() and not file.name.startswith(CHECKPOINT_SKIP_PREFIXES):
                        self.client.log_artifact(run_id, str(file), S.CHECKPOINT_ARTIFACT_DIR)
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

    def _log_metrics(
        self,
        run: Run,
        values: Mapping[str, float],
        step: int,
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        once: bool = False,
    ) -> None:
        """Log ``values`` at ``step``, with ``params`` and ``tags`` in the same batch; with
        ``once`` (``run`` is a trial's record), only what the run lacks (see
        :meth:`_log_batch`)."""
        # The timestamp is fixed now, not at replay: a replayed batch is the same batch.
        now = int(time.time() * 1000)
        items = list(values.items())
        extra: dict[str, Any] = {}
        if once and isinstance(run, TrialRecord):
            extra[ARG_ONCE_FOR] = run.trial_id
        if params:
            extra["params"] = [[str(k)[:250], _param_value(v)] for k, v in params.items()]
        if tags:
            extra["tags"] = [[k, v] for k, v in tags.items()]
        for start in range(0, max(len(items), 1), _BATCH_METRICS):
            self._call(
                OP_LOG_METRICS,
                f"log metrics (step {step})",
                run,
                metrics=dict(items[start : start + _BATCH_METRICS]),
                step=step,
                timestamp=now,
                **(extra if start == 0 else {}),
            )

    def _terminate(self, run: Run, status: str) -> None:
        self._call(OP_SET_TERMINATED, f"set run status {status}", run, status=status)
