"""MLflow tracking of a search: a parent run per search, a child run per trial.

Everything is logged from the Tune driver process with :class:`mlflow.MlflowClient`, never
from the trials: a trial that is killed (ASHA, Ctrl-C, a lost node) cannot leave a run
``RUNNING``, and workers need no access to the tracking server.

:class:`SearchTracker` holds the MLflow logic and knows nothing of Ray (tests drive it with
plain dicts). :class:`~ipt_ray.tracking.callback.TrackingCallback` is the thin Ray Tune
callback that feeds it.

What lands in MLflow (experiment = the search name, artifact location explicit):

- parent run (tag ``ipt_ray.kind=search``): the search settings as params, the space file as
  the artifact ``search_space.yaml``; at the end the tag ``best_trial_run_id``, the metric
  ``best_<metric>``, the tags ``trials_finished``/``trials_pruned``/``trials_failed``/
  ``trials_killed`` and the artifact ``search_summary.json``;
- one child run per trial (tags ``mlflow.parentRunId``, ``ray.trial_id``,
  ``ipt_ray.kind=trial``, ``node``): params are the trial's :meth:`TrainConfig.flat_params`
  plus the sampled params; every reported numeric metric with ``step = epoch``, except the
  values that do not change over a trial (the parameter counts as params, ``best_*`` and what
  its process measured once as tags: :func:`~ipt_ray.tracking.schema.logged_where`); the
  best checkpoint's files (weights + config, no optimizer state) under ``checkpoint/``;
  status FINISHED (tag ``pruned=true`` when stopped before its last epoch without an error),
  FAILED (tag ``error``) or KILLED (the search was interrupted).

Only creating the experiment and the parent run (before any trial starts) raises
:class:`TrackingError`; after that the search never waits on MLflow. Every write goes through
the retrying backlog of :class:`~ipt_ray.tracking.writer.RunWriter`: a call the unreachable
store cannot take is kept, in order, and replayed when it answers again (and, with
``journal=``, written to disk, so that a resumed search replays what a killed driver left);
:meth:`SearchTracker.finish_search` waits up to ``flush_timeout`` seconds for it to drain.

The classes build on one another: :class:`~ipt_ray.tracking.writer.RunWriter` (the writes as
data, and the one place they become MlflowClient calls) <-
:class:`~ipt_ray.tracking.trials.TrialLog` (a child run per trial) <- :class:`SearchTracker`
(the experiment, the parent run, resuming, the results).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.errors import UserError
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.notes import search_note
from ipt_ray.tracking.ops import (
    ARG_RUN,
    ARG_RUN_OF_TRIAL,
    OP_LOG_DICT,
    OP_LOG_TEXT,
    OP_SET_STATUS,
    OP_SET_TAG,
    OP_TAG_BEST_TRIAL,
)
from ipt_ray.tracking.record import TrialRecord
from ipt_ray.tracking.trials import TrialLog
from ipt_ray.tracking.writer import CheckpointResolver

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

#: The ``error`` tag of a trial whose driver died before Tune saved it (not resumed).
TRIAL_LOST = (
    "TrialLost: the search driver died before Ray Tune saved this trial, so the resumed "
    "search could not continue it"
)


class TrackingError(UserError):
    """The tracking server or store cannot be used (raised before any trial starts)."""


class SearchTracker(TrialLog):
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
            :mod:`ipt_ray.tracking.journal`; ``run_search`` puts it in the search's Ray experiment
            folder). Calls an earlier driver left in it are read here and replayed, in
            order, before any new call (at the latest by :meth:`resume_search`). None: the
            backlog lives in memory only and dies with the process.
        background: make the MLflow calls from a writer thread, so that the caller (Tune's
            event loop) never waits on the store (see :mod:`ipt_ray.tracking.background`;
            every call is then journaled before it is queued).
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
        background: bool = False,
    ) -> None:
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.metric, self.mode = metric, mode
        self.checkpoint_score_key = checkpoint_score_key
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.parent_status: str | None = None
        self.space_name: str | None = None  # the parent's "space" param (its description)
        self._failure_reasons = {}
        self.resumed = False
        super().__init__(
            client,
            tracking_uri,
            resolve_checkpoint=resolve_checkpoint,
            retry_interval=retry_interval,
            flush_timeout=flush_timeout,
            journal=journal,
            background=background,
        )

    # -- the search ------------------------------------------------------------------------
    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return str(
                self.client.create_experiment(
                    self.experiment_name,
                    artifact_location=self.artifact_location,
                    tags={S.TAG_EXPERIMENT_KIND: S.EXPERIMENT_KIND},
                )
            )
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.experiment_name!r} is deleted (but its name is still "
                "taken); restore it, remove it for good with `mlflow gc`, or choose another "
                "search name"
            )
        if S.TAG_EXPERIMENT_KIND not in experiment.tags:  # made before ipt-ray set it
            self.client.set_experiment_tag(
                experiment.experiment_id, S.TAG_EXPERIMENT_KIND, S.EXPERIMENT_KIND
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
                tags={S.TAG_KIND: S.KIND_SEARCH, **(tags or {})},
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
        self.parent_status = S.STATUS_RUNNING
        if params:
            self._log_params(self.parent_run_id, params)
            self.space_name = None if params.get("space") is None else str(params["space"])
        if space_text is not None:
            self._call(
                OP_LOG_TEXT,
                "log the search space",
                self.parent_run_id,
                text=space_text,
                artifact_file=S.SPACE_ARTIFACT,
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
            self.space_name = run.data.params.get("space")
        except Exception as exc:
            raise TrackingError(
                f"cannot resume: parent run {parent_run_id} is not in {self.tracking_uri} "
                f"({type(exc).__name__})"
            ) from exc
        self.parent_run_id = parent_run_id
        self.parent_status = S.STATUS_RUNNING
        self.resumed = True
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
        """What a restored search needs to go on logging into the same runs.

        Tune asks for it with every experiment snapshot, and forces one whenever a trial has
        saved ``num_to_keep`` checkpoints: with short trials, once per trial. So it is
        :meth:`TrialRecord.state` (shallow copies), not ``dataclasses.asdict`` (a deep copy
        of every record), which took a fifth of a 2,000-trial search's driver time.
        """
        return {"trials": {tid: rec.state() for tid, rec in self.trials.items()}}

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
                # Tune restarts it from the checkpoint of this save, which may be older than
                # epochs that reached MLflow (or the journal) since: it reports them again.
                record.logged_epochs, record.last_steps, record.check_logged = [], {}, True
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
                status=S.STATUS_KILLED,
                error=TRIAL_LOST,
                ended=time.time(),
            )
            self.trials[trial_id] = record
            logger.warning(
                "MLflow: trial %s's run %s closed as KILLED: %s", trial_id, run_id, TRIAL_LOST
            )
            self._close_run(record, {S.TAG_ERROR: TRIAL_LOST})

    # -- results ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials by status: finished, pruned, failed, killed, running."""
        out = dict.fromkeys(S.STATUSES, 0)
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
            and r.status != S.STATUS_FAILED
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
                artifact_file=S.SUMMARY_ARTIFACT,
            )
        if self.parent_status != S.STATUS_RUNNING:
            self.flush()
            return
        best = self.best_trial()
        if best is not None and best.has_run:
            best_run = {ARG_RUN: best.run_id} if best.run_id else {ARG_RUN_OF_TRIAL: best.trial_id}
            self._call(OP_TAG_BEST_TRIAL, "set the best-trial tag", run_id, best=best_run)
        counts = self.counts()
        note = search_note(
            search=self.experiment_name,
            space=self.space_name,
            metric=self.metric,
            mode=self.mode,
            counts=counts,
            best=best,
        )
        self._call(OP_SET_TAG, "describe the search", run_id, key=S.TAG_NOTE, value=note)
        # The counts are tags (a resumed search counts again); the best value is a metric at
        # the epoch it was reached: the trials log step = epoch, so MLflow's chart of
        # best_<metric> puts the search's best where the trials' curves have it.
        count_tags = {
            S.COUNT_PREFIX + k: str(v) for k, v in counts.items() if k != S.STATUS_RUNNING
        }
        best_values, step = {}, 0
        if best is not None and best.best_value is not None:
            best_values, step = {S.BEST_PREFIX + self.metric: best.best_value}, best.best_epoch or 0
        self._log_metrics(run_id, best_values, step, tags=count_tags)
        self.parent_status = S.STATUS_KILLED if interrupted else S.STATUS_FINISHED
        self._terminate(run_id, S.MLFLOW_STATUS[self.parent_status])
        self.flush()
