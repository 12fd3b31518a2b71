"""The trials of a search in MLflow: :class:`TrialLog`, a child run per trial.

A trial's run (tags ``mlflow.parentRunId``, ``ray.trial_id``, ``ipt_ray.kind=trial``,
``node``) logs as params the trial's :meth:`TrainConfig.flat_params` plus the sampled params;
every reported numeric metric with ``step = epoch`` (the values that do not change over a
trial as params or tags, once: :func:`~ipt_ray.tracking.schema.logged_where`); the best
checkpoint's files (weights + config, no optimizer state) under ``checkpoint/``; status
FINISHED (tag ``pruned=true`` when stopped before its last epoch without an error), FAILED
(tag ``error``) or KILLED (the search was interrupted).

No Ray here: :class:`~ipt_ray.tracking.callback.TrackingCallback` feeds it from Tune.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from ipt_ray import constants as C
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.backlog import quick_http_requests
from ipt_ray.tracking.notes import trial_note
from ipt_ray.tracking.ops import (
    OP_CREATE_TRIAL_RUN,
    OP_LOG_DATASET,
    OP_SET_STATUS,
    OP_SET_TAG,
    OP_UPLOAD_CHECKPOINT,
)
from ipt_ray.tracking.record import (
    NON_METRIC_KEYS,
    TrialRecord,
    as_number,
    better,
    checkpoint_order,
)
from ipt_ray.tracking.writer import RunWriter

logger = logging.getLogger(__name__)

#: How long a backfill (a resumed trial's checkpoint, rare) waits for the calls before it to
#: be made, so that MLflow's history it reads is complete (seconds).
_SETTLE_S = 10.0


def _dataset(value: Any) -> dict[str, Any] | None:
    """A reported :data:`~ipt_ray.constants.DATASET` (JSON) with a name and a digest."""
    if not isinstance(value, str):
        return None
    try:
        described = json.loads(value)
    except ValueError:
        return None
    if isinstance(described, dict) and {"name", "digest"} <= set(described):
        return described
    return None


class TrialLog(RunWriter):
    """A :class:`~ipt_ray.tracking.writer.RunWriter` that logs the trials of one search.

    :class:`~ipt_ray.tracking.tracker.SearchTracker` sets the attributes declared here.
    """

    metric: str
    mode: str
    experiment_name: str
    checkpoint_score_key: str | None
    experiment_id: str | None
    parent_run_id: str | None
    # trial id -> why the search itself failed it (the watchdog), for its error tag
    _failure_reasons: dict[str, str]
    # This search continues an interrupted one: a trial it (re)starts may have a run that
    # holds epochs already (Tune's last save may predate them, or the trial's start).
    resumed: bool

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
            record.check_logged = record.check_logged or self.resumed
            reopen = record.status != S.STATUS_RUNNING and record.has_run
            record.status, record.ended, record.error = S.STATUS_RUNNING, None, None
            if reopen:
                self._call(OP_SET_STATUS, "reopen a resumed trial's run", record, status="RUNNING")
            if record.has_run:
                return record
            # else: its run was never created (MLflow was down when the driver died): now
        else:
            record = TrialRecord(
                trial_id, params=dict(params), sampled=dict(sampled or {}), max_epochs=max_epochs
            )
            # Pending in Tune's last save, it starts from scratch: its run (found, not made
            # again) may hold the epochs it reports.
            record.check_logged = self.resumed
            self.trials[trial_id] = record
        tags = {
            S.TAG_KIND: S.KIND_TRIAL,
            S.TAG_TRIAL_ID: trial_id,
            S.TAG_NOTE: trial_note(record, search=self.experiment_name, metric=self.metric),
        }
        if self.parent_run_id is not None:
            tags[S.TAG_PARENT_RUN] = self.parent_run_id
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
            run_name=S.trial_run_name(trial_id, record.settings),
            tags=tags,
        )
        self._log_params(record, record.settings)
        return record

    def log_result(
        self, trial_id: str, result: Mapping[str, Any], *, checkpoint: str | None = None
    ) -> None:
        """Log one reported result: numeric values as metrics at ``step = result['epoch']``,
        except those that do not change over the trial (sizes as params; ``best_*`` and what
        its process measured once as tags: see :func:`~ipt_ray.tracking.schema.logged_where`),
        logged the first time they are reported.

        ``checkpoint`` is the path of the checkpoint reported with it (if any).
        """
        record = self.trials.get(trial_id) or self.start_trial(trial_id, params={})
        epoch_value = as_number(result.get(C.EPOCH))
        epoch = int(epoch_value) if epoch_value is not None else record.last_epoch + 1
        values: dict[str, float] = {}
        for key, value in result.items():
            number = as_number(value)
            if number is None or key in NON_METRIC_KEYS or key == self.checkpoint_score_key:
                continue
            if S.logged_where(key) != S.WHERE_METRIC and key in record.metrics:
                continue  # logged once
            values[key] = number
        first_step = as_number(result.get(C.FIRST_STEP_UNIX))
        if first_step is not None and C.STARTUP_SECONDS not in record.metrics:
            # From the trial's start (Tune started its actor) to the first training step.
            values[C.STARTUP_SECONDS] = max(0.0, first_step - record.started)
        record.metrics.update(values)
        record.last_epoch = max(record.last_epoch, epoch)
        score = as_number(result.get(self.metric))
        if score is not None and better(score, record.best_value, self.mode):
            record.best_value, record.best_epoch = score, epoch
            record.best_metrics = dict(values)
        rank = score
        if self.checkpoint_score_key is not None:
            rank = as_number(result.get(self.checkpoint_score_key))
        record.last_rank = (epoch, rank)
        if checkpoint:
            record.checkpoints[epoch] = (rank, checkpoint)
        node = result.get(S.NODE_RESULT_KEY)
        if not record.has_run:
            return
        dataset = _dataset(result.get(C.DATASET))
        if dataset is not None and not record.dataset_logged:
            record.dataset_logged = True
            self._call(OP_LOG_DATASET, "log the trial's dataset", record, dataset=dataset)
        if isinstance(node, str) and node != record.node:
            record.node = node
            self._call(OP_SET_TAG, "set the node tag", record, key=S.TAG_NODE, value=node)
        if checkpoint and any(e not in record.logged_epochs for e in range(1, epoch)):
            self._backfill(record, checkpoint, epoch)
        where = {k: S.logged_where(k) for k in values}
        params = {k: S.number_text(v) for k, v in values.items() if where[k] == S.WHERE_PARAM}
        tags = {k: S.number_text(v) for k, v in values.items() if where[k] == S.WHERE_TAG}
        # Metrics not logged at this epoch yet: a second result of an epoch (its test metrics)
        # or an epoch run again (restarted from an older checkpoint) repeats no point.
        fresh = {
            k: v
            for k, v in values.items()
            if where[k] == S.WHERE_METRIC and record.last_steps.get(k, 0) < epoch
        }
        if fresh or params or tags:
            self._log_metrics(
                record, fresh, epoch, params=params, tags=tags, once=record.check_logged
            )
            record.last_steps.update(dict.fromkeys(fresh, epoch))
            if fresh and epoch not in record.logged_epochs:
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
        if not self.backlog.settled(_SETTLE_S) or record.run_id is None:
            return  # no run to read yet: tried again with the next checkpoint
        # MLflow is the truth about what is logged (with the backlog settled, everything this
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
                    if as_number(v) is not None
                    and k not in NON_METRIC_KEYS
                    and S.logged_where(k) == S.WHERE_METRIC
                }
                self._log_metrics(record, values, past)
                record.logged_epochs.append(past)

    def _checkpoint_order(self, record: TrialRecord) -> list[str]:
        """Checkpoint paths, best first (by the checkpoint score, else by the metric; ties:
        the earlier epoch)."""
        descending = self.checkpoint_score_key is not None or self.mode == "max"
        return checkpoint_order(record, descending=descending)

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
            record.status, record.error = S.STATUS_FAILED, error
        elif record.max_epochs is not None and record.last_epoch < record.max_epochs:
            record.status = S.STATUS_PRUNED
        else:
            record.status = S.STATUS_FINISHED
        if not record.has_run:
            return record
        self.upload_best_checkpoint(trial_id)
        tags = {}
        if error is not None:
            tags[S.TAG_ERROR] = error[:5000] or "error"
        else:
            tags[S.TAG_PRUNED] = "true" if record.status == S.STATUS_PRUNED else "false"
        if record.status == S.STATUS_PRUNED:  # the runs table shows the name, not the tag
            tags[S.TAG_RUN_NAME] = S.trial_run_name(trial_id, record.settings) + S.PRUNED_SUFFIX
        self._close_run(record, tags)
        return record

    def _close_run(self, record: TrialRecord, tags: Mapping[str, str] | None = None) -> None:
        """Close the trial's run with the MLflow status of ``record.status``, after one batch
        of ``tags`` and: its description (how it ended; it said "Running."), and its best value
        of the search metric and epoch when it did not report them (a pruned, failed or killed
        trial), so that ``best`` needs no metric history to rank it."""
        out = dict(tags or {})
        out[S.TAG_NOTE] = trial_note(record, search=self.experiment_name, metric=self.metric)
        best_key, epoch_key = S.BEST_PREFIX + self.metric, S.BEST_PREFIX + C.EPOCH
        if record.best_value is not None and best_key not in record.metrics:
            out[best_key] = S.number_text(record.best_value)
            if epoch_key not in record.metrics:
                out[epoch_key] = str(record.best_epoch)
        self._log_metrics(record, {}, record.last_epoch, tags=out)
        self._terminate(record, S.MLFLOW_STATUS[record.status])

    def kill_open_trials(self) -> list[str]:
        """Mark every trial still running as KILLED; return their ids."""
        killed = []
        for record in self.trials.values():
            if not record.is_open:
                continue
            record.status, record.ended = S.STATUS_KILLED, time.time()
            killed.append(record.trial_id)
            if record.has_run:
                self.upload_best_checkpoint(record.trial_id)
                self._close_run(record)
        return killed
