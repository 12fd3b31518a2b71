"""Run a search: Ray Tune + Optuna TPE + ASHA over a :class:`~ipt_ray.search.space.SearchSpace`.

:func:`run_search` is the one entry point. It

1. connects to a Ray cluster (``address``) or starts a local one (and stops it afterwards);
2. opens the MLflow experiment and a parent run (:mod:`ipt_ray.tracking`);
3. runs a :class:`ray.tune.Tuner` whose trials are :func:`ipt_ray.driver.train_driver_fn`
   (one TorchTrainer with ``workers_per_trial`` DDP workers each), sampled by Optuna's TPE
   through ``OptunaSearch(space=space.define_by_run)``, at most ``max_concurrent`` at a time,
   stopped early by ASHA on the ``epoch`` that trials report;
4. returns a :class:`SearchSummary` (best trial, counts, the top trials, where to look).

Paths are absolute everywhere (trials may run on other nodes, in other working directories).
Defaults follow the MLflow store (:func:`ipt_ray.store.runs_dir`): artifacts in
``<store folder>/mlartifacts``, Ray results in ``<store folder>/ray``, where the store folder
is ``DIR`` for ``sqlite:///DIR/mlflow.db`` and ``./ipt-ray-runs`` without a tracking URI (the
store is then ``./ipt-ray-runs/mlflow.db``). On a multi-node cluster, ``storage`` must be
shared by all nodes (NFS, S3, ...) and the tracking URI reachable from the driver.

An interrupted search (Ctrl-C, an exception) leaves no MLflow run RUNNING: open trial runs
and the parent are marked KILLED.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from ipt_ray import constants as C
from ipt_ray.driver import (
    CHECKPOINT_PATH_KEY,
    TrialSetup,
    trainable,
)
from ipt_ray.driver import run_name as train_run_name
from ipt_ray.errors import UserError
from ipt_ray.journal import journal_path
from ipt_ray.runner import DEFAULT_PLACEMENT_TIMEOUT_S, DEFAULT_STALL_TIMEOUT_S, resolve_runner
from ipt_ray.search.space import SearchSpace
from ipt_ray.search_record import (
    FINISHED,
    INTERRUPTED,
    SearchRecord,
    read_record,
    write_record,
)
from ipt_ray.shared_storage import check_shared_storage
from ipt_ray.store import (
    RUNS_DIR,
    absolute_tracking_uri,
    default_artifact_root,
    default_storage,
    default_tracking_uri,
    store_dir,
)
from ipt_ray.tracking import (
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_KILLED,
    STATUS_PRUNED,
    STATUS_RUNNING,
    MlflowSearchTracker,
    SearchTracker,
    TrialRecord,
    experiment_artifact_location,
    live,
    register_live,
    ui_command,
)
from ipt_ray.watchdog import (
    SearchWatchdog,
    current_job_id,
    describe_bundles,
    live_group_ids,
    release_search_groups,
    watchdog_report,
)
from ipt_ray.worker import BEST_PREFIX, CHECKPOINT_SCORE_KEY, remove_scratch_dirs

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Progress


@dataclass(frozen=True)
class ProgressEvent:
    """One line of progress.

    ``kind`` is ``start`` (where things go), ``trial_start``, ``result`` (one epoch),
    ``stalled`` (the watchdog fails a trial), ``warning``, ``trial_end`` (``status``
    finished, pruned or failed) or ``end``. ``message`` is the line ready to print; the
    other fields are for callers that format their own.
    """

    kind: str
    message: str
    trial_id: str | None = None
    status: str | None = None
    epoch: int | None = None
    value: float | None = None


ProgressFn = Callable[[ProgressEvent], None]


class LineProgress:
    """A progress callable that prints each event's message as one line (default: stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: ProgressEvent) -> None:
        print(event.message, file=self.stream or sys.stderr, flush=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _params_text(params: Mapping[str, Any], limit: int = 6) -> str:
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    return " ".join(items[:limit]) + (" ..." if len(items) > limit else "")


class _ProgressCallback(Callback):
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
        text = f"[{trial.trial_id}] started {_params_text(sampled)}".rstrip()
        self._emit(
            ProgressEvent("trial_start", text, trial_id=trial.trial_id, status=STATUS_RUNNING)
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
                f"[{trial.trial_id}] epoch {epoch_i}/{total} {metric}={_fmt(value_f)}",
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
                f"{_fmt(record.best_value)} (epoch {record.best_epoch})"
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


# --------------------------------------------------------------------------------------------
# Summary


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
        )


@dataclass
class SearchSummary:
    """What a search produced and where to find it (:meth:`to_dict` is JSON-ready)."""

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
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Ray


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _ray_session(address: str | None, init_kwargs: Mapping[str, Any]) -> Iterator[str]:
    """Use the Ray of this process, connect to ``address``, or start a local Ray (stopped at
    the end). Yields a description of the cluster."""
    import ray

    if ray.is_initialized():
        yield "the Ray session of this process"
        return
    temp_dir: str | None = None
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
        where = f"Ray cluster at {address}"
    else:
        # A private temp dir isolates this Ray from other Ray instances on the machine.
        # The dashboard stays on: without it (and ray[default]) ASHA-stopped trials leak
        # their workers' resources in Ray 2.60.
        temp_dir = tempfile.mkdtemp(prefix="ipt-ray-")
        # address="local": start a new Ray even when RAY_ADDRESS is exported (e.g. after
        # `ipt-ray cluster up`); connecting is what --address is for.
        kwargs.update(
            address="local", num_cpus=_local_cpus(), _temp_dir=temp_dir, include_dashboard=True
        )
        where = f"local Ray ({kwargs['num_cpus']} CPUs)"
    kwargs.update(init_kwargs)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    try:
        yield where
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Silence Tune's own console output (its experiment banner and tables) and Optuna's
    info logs while the search runs; progress goes through :class:`ProgressEvent`."""
    import optuna

    overrides = {
        # The new output engine prints its banner even at verbose=0; the old one does not.
        "RAY_AIR_NEW_OUTPUT": "0",
        # Tune snapshots the experiment after every checkpoint when num_to_keep is set (the
        # actor runner's checkpoints are Tune's): by design here, so no warning about it.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": os.environ.get(
            "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0"
        ),
    }
    old_env = {key: os.environ.get(key) for key in overrides}
    old_level = optuna.logging.get_verbosity()
    os.environ.update(overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old_level)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_max_concurrent(
    workers_per_trial: int, cpus_per_worker: float, gpus_per_worker: float
) -> int:
    """How many trials fit at once into the connected cluster's CPUs (and GPUs).

    Raises:
        UserError: not even one trial fits.
    """
    import ray

    resources = ray.cluster_resources()
    fits = math.inf
    need_cpu = workers_per_trial * cpus_per_worker
    if need_cpu > 0:
        fits = min(fits, math.floor(resources.get("CPU", 0.0) / need_cpu + 1e-9))
    need_gpu = workers_per_trial * gpus_per_worker
    if need_gpu > 0:
        fits = min(fits, math.floor(resources.get("GPU", 0.0) / need_gpu + 1e-9))
    if fits < 1:
        raise UserError(
            f"a trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({workers_per_trial} "
            f"workers x {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU) but the cluster has "
            f"{resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs; "
            "lower --workers-per-trial or --cpus-per-worker"
        )
    return int(fits) if fits != math.inf else 1


def trial_dirname(trial: Any) -> str:
    """Tune's directory name of a trial: ``trial-<trial id>``."""
    return f"trial-{trial.trial_id}"


def _checkpoint_resolver(storage: str) -> Callable[[str], Any] | None:
    """For remote storage (a URI): download a reported checkpoint into a temporary
    directory. None for local storage (the tracker reads the directory itself)."""
    if "://" not in storage:
        return None

    @contextlib.contextmanager
    def remote(path: str) -> Iterator[Path | None]:
        import pyarrow.fs
        import ray.train

        fs, _ = pyarrow.fs.FileSystem.from_uri(storage)
        checkpoint = ray.train.Checkpoint(path, filesystem=fs)
        with checkpoint.as_directory() as directory:
            yield Path(directory)

    return remote


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "search"


def _abs_storage(storage: str | Path) -> str:
    text = str(storage)
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def _search_params(
    space: SearchSpace,
    *,
    num_samples: int,
    max_concurrent: int,
    setup: TrialSetup,
    address: str | None,
    experiment_path: str,
) -> dict[str, Any]:
    s = space.settings
    out: dict[str, Any] = {
        "space": space.name,
        "space_path": str(space.path.resolve()) if space.path else None,
        "metric": s.metric,
        "mode": s.mode,
        "objectives": ",".join(f"{m}:{d}" for m, d in zip(s.metrics, s.modes, strict=True)),
        "num_samples": num_samples,
        "max_concurrent": max_concurrent,
        "seed": s.seed,
        "scheduler": s.scheduler.type,
        "n_startup_trials": s.n_startup_trials,
        "constant_liar": s.constant_liar,
        "multivariate": s.multivariate,
        "group": s.group,
        "workers_per_trial": setup.workers,
        "runner": setup.runner,
        "shared_backbone_bytes": setup.backbone.nbytes if setup.backbone else 0,
        "cpus_per_worker": setup.cpus_per_worker,
        "gpus_per_worker": setup.gpus_per_worker,
        "ray_address": address or "local",
        "ray_storage_path": experiment_path,
    }
    if s.scheduler.type == "asha":
        out.update(
            grace_period=s.scheduler.grace_period,
            reduction_factor=s.scheduler.reduction_factor,
            max_t=s.scheduler.max_t,
        )
    out.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    return out


# --------------------------------------------------------------------------------------------
# The search


def run_search(
    space: SearchSpace,
    *,
    name: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    storage: str | Path | None = None,
    num_samples: int | None = None,
    max_concurrent: int | None = None,
    workers_per_trial: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 0,
    worker_failures: int = 0,
    runner: str = "auto",
    placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
    share_backbone: bool = True,
    progress: ProgressFn | None = None,
    top_k: int = 10,
    ray_init_kwargs: Mapping[str, Any] | None = None,
    train_fn: Callable[[dict[str, Any]], None] | None = None,
    resume: bool | None = None,
) -> SearchSummary:
    """Search ``space`` with Ray Tune + Optuna TPE (+ ASHA), tracked in MLflow.

    Args:
        space: the validated search space.
        name: search name = MLflow experiment (default: the space's name, else its file name).
        address: Ray cluster address (``auto``, ``ray://...``, ``host:port``); None starts a
            local Ray for the search (unless this process already runs one).
        tracking_uri: MLflow tracking URI; default ``sqlite:///<abs>/ipt-ray-runs/mlflow.db``.
        artifact_root: artifact root of a new experiment; default ``mlartifacts`` beside a
            local store (``DIR/mlartifacts`` for ``sqlite:///DIR/mlflow.db``), the server's
            for a server (see :meth:`SearchLocations.resolve`).
        storage: Ray results and checkpoints (path or URI); default ``ray`` beside a local
            store, ``<abs>/ipt-ray-runs/ray`` with a server. Must be shared by all nodes of a
            multi-node cluster.
        num_samples, max_concurrent: override the space's ``search`` settings; the default
            ``max_concurrent`` fills the cluster: CPUs / (workers x CPUs per worker).
        workers_per_trial, cpus_per_worker, gpus_per_worker: DDP workers of each trial.
        max_failures: Tune restarts a failed trial this often (resuming its last checkpoint).
        worker_failures: Ray Train restarts a trial's failed workers this often.
        placement_timeout: seconds a ``train`` trial waits for its workers to be placed
            before it fails (and ``max_failures`` retries it).
        stall_timeout: seconds after which, when no RUNNING trial has started or reported, the
            longest-waiting trial is failed (:mod:`ipt_ray.watchdog`); 0 or less: never.
        runner: how a trial trains: ``actor`` (in Tune's trial process, reused by the next
            trial), ``train`` (a Ray Train TorchTrainer with ``workers_per_trial`` DDP
            workers) or ``auto`` (see :func:`ipt_ray.runner.resolve_runner`).
        share_backbone: put the backbone into Ray's object store once, so that every trial
            process of a node maps the same weights (when every trial uses one backbone).
        progress: called with a :class:`ProgressEvent` per trial event (None: silent).
        top_k: trials listed in :attr:`SearchSummary.top`.
        ray_init_kwargs: extra ``ray.init`` arguments (local Ray or connection).
        train_fn: the per-worker function (tests); default
            :func:`ipt_ray.worker.train_fn_per_worker`.
        resume: True continues the interrupted search of this name (error if there is none);
            None (default) continues it when there is one and starts a new search otherwise;
            False always starts a new one. Continuing reuses the MLflow parent and child
            runs, skips finished trials, resumes interrupted ones from their last checkpoint
            and keeps the Optuna searcher's history.

    Raises:
        UserError: bad resources, an unreachable cluster or tracking store.
    """
    started = time.time()
    settings = space.settings
    search_name = name or space.name or (space.path.stem if space.path else "search")
    num_samples = num_samples or settings.num_samples
    if workers_per_trial < 1:
        raise UserError(f"workers per trial must be at least 1, got {workers_per_trial}")
    if cpus_per_worker < 0 or gpus_per_worker < 0:
        raise UserError("CPUs and GPUs per worker cannot be negative")
    if not placement_timeout > 0:
        raise UserError(f"placement timeout must be more than 0 s, got {placement_timeout:g}")
    runner = resolve_runner(runner, workers_per_trial, worker_failures)
    where = SearchLocations.resolve(
        search_name, tracking_uri=tracking_uri, artifact_root=artifact_root, storage=storage
    )
    record = _record_to_resume(search_name, where, resume)
    resumed = record is not None
    if record is not None:
        where = replace(
            where,
            experiment_dir=record.experiment_dir,
            experiment_path=f"{where.storage_path}/{record.experiment_dir}",
        )
    emit: ProgressFn = progress or (lambda event: None)
    # Before Ray starts: a backbone that does not load is one line, and nothing is written.
    loaded = _load_shared_backbone(space) if share_backbone else None
    with _ray_session(address, ray_init_kwargs or {}) as cluster:
        check_shared_storage(where.storage_path)
        shared = None
        if loaded is not None:
            from ipt_ray.shared_backbone import publish_backbone

            shared = publish_backbone(loaded[0], model=loaded[1], revision=loaded[2])
            del loaded
        # Only now (Ray is up, the storage fits it) is the MLflow store opened.
        tracker = SearchTracker(
            where.tracking_uri,
            search_name,
            metric=settings.metric,
            mode=settings.mode,
            artifact_location=where.artifact_location,
            resolve_checkpoint=_checkpoint_resolver(where.storage_path),
            checkpoint_score_key=CHECKPOINT_SCORE_KEY,
            journal=journal_path(where.experiment_path),
        )
        concurrency = (
            max_concurrent
            or settings.max_concurrent
            or default_max_concurrent(workers_per_trial, cpus_per_worker, gpus_per_worker)
        )
        concurrency = max(1, min(concurrency, num_samples))
        setup = TrialSetup(
            space=space,
            storage_path=f"{where.experiment_path}/train",
            workers=workers_per_trial,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            worker_failures=worker_failures,
            runner=runner,
            placement_timeout=placement_timeout,
            backbone=shared,
            **({"train_fn": train_fn} if train_fn is not None else {}),
        )
        key = where.experiment_dir
        register_live(key, tracker, emit)
        report = watchdog_report(key)
        job_id = current_job_id()
        existing_groups = live_group_ids(job_id)  # the caller's own, if any: never touched

        def on_stall(trial_id: str, message: str) -> None:
            tracker.explain_failure(trial_id, message)
            emit(ProgressEvent("stalled", f"trial {trial_id}: {message}", trial_id=trial_id))

        report.on_stall = on_stall
        if record is not None:
            parent = tracker.resume_search(record.parent_run_id)
        else:
            parent = tracker.start_search(
                run_name=where.experiment_dir,
                params=_search_params(
                    space,
                    num_samples=num_samples,
                    max_concurrent=concurrency,
                    setup=setup,
                    address=address,
                    experiment_path=where.experiment_path,
                ),
                space_text=space.source,
            )
        record = SearchRecord(
            _safe_name(search_name), where.experiment_dir, parent, where.tracking_uri
        )
        write_record(where.storage_path, record)
        try:
            emit(
                ProgressEvent(
                    "start",
                    "\n".join(
                        [
                            ("resuming interrupted search" if resumed else "search")
                            + f" {search_name!r}: {num_samples} trials, {concurrency} at a time, "
                            f"{workers_per_trial} worker(s) per trial, on {cluster}",
                            f"  MLflow: {where.tracking_uri} (experiment {search_name!r}, "
                            f"parent run {parent})",
                            "  artifacts: "
                            + (where.artifact_location or "served by the tracking server"),
                            f"  Ray results: {where.experiment_path}",
                        ]
                    ),
                )
            )
            with _quiet_tune():
                if resumed:
                    import ray.tune

                    tuner = ray.tune.Tuner.restore(
                        where.experiment_path,
                        trainable=trainable(setup),
                        resume_unfinished=True,
                        resume_errored=False,
                    )
                else:
                    tuner = _build_tuner(
                        space,
                        setup,
                        tracker,
                        emit,
                        where,
                        key=key,
                        num_samples=num_samples,
                        concurrency=concurrency,
                        max_failures=max_failures,
                        stall_timeout=stall_timeout,
                    )
                tuner.fit()
            left = _release_placement_groups(key, job_id, existing_groups, emit)
        except BaseException:
            tracker.finish_search(interrupted=True)
            record.status = INTERRUPTED
            write_record(where.storage_path, record)
            raise
        finally:
            tracker.finish_search()  # a no-op when the Tune callback closed everything
            for trial_id in tracker.trials:  # what killed workers left on this machine
                remove_scratch_dirs(train_run_name(trial_id))
    summary = _summarize(tracker, where, top_k, time.time() - started)
    summary.placement_groups_reaped = len(report.reaped)
    summary.placement_groups_left = left
    summary.trials_stalled = len(report.stalled)
    tracker.finish_search(summary=summary.to_dict())
    _log_plots(tracker)
    record.status = INTERRUPTED if summary.interrupted else FINISHED
    write_record(where.storage_path, record)
    emit(ProgressEvent("end", _end_line(summary)))
    return summary


@dataclass(frozen=True)
class SearchLocations:
    """Where a search writes: absolute paths and URIs (trials may run on other nodes)."""

    tracking_uri: str
    artifact_location: str | None  # of a new MLflow experiment; None: the server's default
    storage_path: str  # Ray Tune's storage (path or URI)
    experiment_dir: str  # <search name>-<timestamp>: Tune's experiment and the parent run
    experiment_path: str  # storage_path/experiment_dir

    @classmethod
    def resolve(
        cls,
        search_name: str,
        *,
        tracking_uri: str | None,
        artifact_root: str | Path | None,
        storage: str | Path | None,
    ) -> SearchLocations:
        """Apply the defaults and make every path absolute; create the store's folder.

        Defaults follow the store (:mod:`ipt_ray.store`), whichever folder this runs in:

        - ``sqlite:///DIR/mlflow.db``: artifacts in ``DIR/mlartifacts``, Ray results in
          ``DIR/ray`` (a relative DIR counts from the current folder and is made absolute);
        - no tracking URI: the store ``./ipt-ray-runs/mlflow.db``, so ``./ipt-ray-runs``
          holds all three, as before;
        - a tracking server: the server keeps the artifacts; Ray results in
          ``./ipt-ray-runs/ray`` (the server has no folder here to put them beside).

        What is given wins: an explicit ``artifact_root`` or ``storage`` replaces its default
        only. ``storage`` alone does not move the store: without a tracking URI it stays
        ``./ipt-ray-runs/mlflow.db`` with its artifacts in ``./ipt-ray-runs/mlartifacts``.

        Raises:
            OSError: the store's folder cannot be created.
        """
        tracking_uri = absolute_tracking_uri(tracking_uri or default_tracking_uri())
        folder = store_dir(tracking_uri)
        if folder is not None:  # SQLite creates the database file, not its folder
            folder.mkdir(parents=True, exist_ok=True)
        if artifact_root is None:
            artifact_root = default_artifact_root(tracking_uri)
        artifact_location = None
        if artifact_root is not None and "://" in str(artifact_root):
            artifact_location = f"{str(artifact_root).rstrip('/')}/{_safe_name(search_name)}"
        elif artifact_root is not None:
            artifact_location = experiment_artifact_location(artifact_root, search_name)
        storage_path = _abs_storage(
            storage if storage is not None else default_storage(tracking_uri)
        )
        experiment_dir = f"{_safe_name(search_name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        return cls(
            tracking_uri,
            artifact_location,
            storage_path,
            experiment_dir,
            f"{storage_path}/{experiment_dir}",
        )


def _load_shared_backbone(space: SearchSpace) -> tuple[Any, str, str | None] | None:
    """(backbone, model, revision) to publish for the search, or None when its trials use
    several backbones or one with remote code (each trial then loads its own).

    Raises:
        UserError: the backbone cannot be loaded.
    """
    from ipt_ray.backbone import load_backbone

    backbone = space.fixed_backbone()
    if backbone is None or backbone[2]:
        return None
    model, revision, _ = backbone
    net, _ = load_backbone(model, revision=revision)
    return net, model, revision


def _log_plots(tracker: SearchTracker) -> None:
    """The search's plots under ``plots/`` of its parent run (a convenience: a finished search
    never fails on them)."""
    if tracker.parent_run_id is None:
        return
    try:
        from ipt_ray.best import find_search, trial_rows
        from ipt_ray.plots import log_search_plots

        found = find_search(tracker.client, search=tracker.parent_run_id)
        log_search_plots(tracker.client, found, trial_rows(tracker.client, found))
    except Exception as exc:
        logger.warning("search plots not logged: %s", exc)


def _record_to_resume(
    search_name: str, where: SearchLocations, resume: bool | None
) -> SearchRecord | None:
    """The interrupted search to continue, or None to start a new one (see ``resume``)."""
    if resume is False:
        return None
    record = read_record(where.storage_path, _safe_name(search_name))
    if record is None or not record.unfinished:
        if resume:
            state = "finished" if record is not None else "no search"
            raise UserError(
                f"nothing to resume: {state} named {search_name!r} under {where.storage_path}"
                + ("; start a new one without --resume" if record is not None else "")
            )
        return None
    if record.tracking_uri != where.tracking_uri:
        raise UserError(
            f"search {search_name!r} was tracked in {record.tracking_uri}; resume it with "
            f"--tracking-uri {record.tracking_uri}"
        )
    import ray.tune

    if not ray.tune.Tuner.can_restore(f"{where.storage_path}/{record.experiment_dir}"):
        if resume:
            raise UserError(
                f"search {search_name!r} stopped before Ray saved any state; "
                "start it again (with a new --name to keep the old runs apart)"
            )
        return None
    return record


def build_search_alg(space: SearchSpace, concurrency: int) -> Any:
    """The space's searcher: OptunaSearch (TPE, define-by-run; several objectives when the
    space names them) behind a ConcurrencyLimiter of ``concurrency`` trials."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    settings = space.settings
    multi = settings.objectives is not None and len(settings.objectives) > 1
    searcher = OptunaSearch(
        space=space.define_by_run,
        metric=settings.metrics if multi else settings.metric,
        mode=settings.modes if multi else settings.mode,
        sampler=settings.tpe_sampler(),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=concurrency)


def build_scheduler(space: SearchSpace) -> Any:
    """ASHA on the reported ``epoch`` as the space configures it, or None (``scheduler:
    none``)."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = space.settings.scheduler
    if scheduler.type != "asha":
        return None
    return ASHAScheduler(
        time_attr=C.EPOCH,
        max_t=scheduler.max_t,
        grace_period=scheduler.grace_period,
        reduction_factor=scheduler.reduction_factor,
    )


def _build_tuner(
    space: SearchSpace,
    setup: TrialSetup,
    tracker: SearchTracker,
    emit: ProgressFn,
    where: SearchLocations,
    *,
    key: str,
    num_samples: int,
    concurrency: int,
    max_failures: int,
    stall_timeout: float,
) -> Any:
    """The Tuner: :func:`build_search_alg`, :func:`build_scheduler`, the MLflow, progress and
    watchdog callbacks."""
    import ray.tune

    settings = space.settings
    callbacks = [  # the tracker first: the progress lines read its records
        MlflowSearchTracker(
            tracker,
            to_train_config=space.to_train_config,
            fixed=space.fixed,
            num_samples=num_samples,
            checkpoint_key=CHECKPOINT_PATH_KEY,
            key=key,
        ),
        _ProgressCallback(emit, tracker, settings.scheduler.max_t, key=key),
        SearchWatchdog(key, stall_timeout),
    ]
    return ray.tune.Tuner(
        trainable(setup),
        tune_config=ray.tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=num_samples,
            search_alg=build_search_alg(space, concurrency),
            scheduler=build_scheduler(space),
            trial_name_creator=trial_dirname,
            trial_dirname_creator=trial_dirname,
            # The actor runner trains in the trial's process: reusing it is what makes the
            # next trial cheap. Not with the train runner: Tune keeps the actor of an
            # ASHA-stopped trial for reuse while its TorchTrainer still holds the workers'
            # resources, and later trials wait forever.
            reuse_actors=setup.runner == "actor",
        ),
        run_config=ray.tune.RunConfig(
            name=where.experiment_dir,
            storage_path=where.storage_path,
            callbacks=callbacks,
            failure_config=ray.tune.FailureConfig(max_failures=max_failures),
            # The actor runner's checkpoints are Tune's: keep the latest (to resume) and the
            # best epoch's, as Ray Train does for the train runner.
            checkpoint_config=ray.tune.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=CHECKPOINT_SCORE_KEY,
                checkpoint_score_order="max",
            ),
            verbose=0,
        ),
    )


def _release_placement_groups(key: str, job_id: str, existing: set[str], emit: ProgressFn) -> int:
    """Give back what the search's placement groups still hold once Tune returned
    (:func:`ipt_ray.watchdog.release_search_groups`); warn about each one that stays.

    Returns:
        How many stayed live (the summary's ``placement_groups_left``).
    """
    removed, left = release_search_groups(job_id, existing)
    watchdog_report(key).reaped += removed
    for group in left:
        creator = group.creator_actor_id or "the driver"
        emit(
            ProgressEvent(
                "warning",
                f"warning: placement group {group.id} ({describe_bundles(group.bundles)}) is "
                f"still {group.state} after the search (created by {creator})",
            )
        )
    return len(left)


def _summarize(
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
    )


def _end_line(summary: SearchSummary) -> str:
    c = summary.counts
    text = (
        f"search {summary.name!r} {'interrupted' if summary.interrupted else 'done'} in "
        f"{summary.seconds:.0f} s: {c.get(STATUS_FINISHED, 0)} finished, "
        f"{c.get(STATUS_PRUNED, 0)} pruned, {c.get(STATUS_FAILED, 0)} failed"
    )
    if summary.best is not None:
        text += (
            f"; best {summary.metric}={_fmt(summary.best.value)} "
            f"(trial {summary.best.trial_id}, run {summary.best.run_id})"
        )
    if summary.tracking_calls_lost:
        text += (
            f"\n  warning: {summary.tracking_calls_lost} MLflow call(s) did not reach "
            f"{summary.tracking_uri} (see the warnings above)"
        )
    return text + f"\n  {summary.ui_command}"


__all__ = [
    "RUNS_DIR",
    "LineProgress",
    "ProgressEvent",
    "ProgressFn",
    "SearchLocations",
    "SearchSummary",
    "TrialSummary",
    "build_scheduler",
    "build_search_alg",
    "default_max_concurrent",
    "run_search",
    "trial_dirname",
]
