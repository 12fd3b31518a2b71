"""Run a search: Ray Tune + Optuna TPE + ASHA over a :class:`~ipt_ray.tuning.space.SearchSpace`.

:func:`run_search` is the one entry point. It

1. connects to a Ray cluster (``address``) or starts a local one (and stops it afterwards);
2. opens the MLflow experiment and a parent run (:mod:`ipt_ray.tracking`);
3. runs a :class:`ray.tune.Tuner` whose trials are :func:`ipt_ray.tuning.trial.train_driver_fn`
   (one TorchTrainer with ``workers_per_trial`` DDP workers each), sampled by Optuna's TPE
   through ``OptunaSearch(space=space.define_by_run)``, at most ``max_concurrent`` at a time,
   stopped early by ASHA on the ``epoch`` that trials report;
4. returns a :class:`SearchSummary` (best trial, counts, the top trials, where to look).

Paths are absolute everywhere (trials may run on other nodes, in other working directories).
Defaults follow the MLflow store (:func:`ipt_ray.tracking.store.runs_dir`): artifacts in
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
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ipt_ray.errors import SettingError
from ipt_ray.tracking import (
    SearchTracker,
    register_live,
)
from ipt_ray.tracking.journal import journal_path
from ipt_ray.tuning.locations import SearchLocations, safe_name
from ipt_ray.tuning.options import SearchOptions
from ipt_ray.tuning.plan import (
    build_tuner,
    default_max_concurrent,
    load_shared_backbone,
    search_params,
)
from ipt_ray.tuning.progress import ProgressEvent, ProgressFn
from ipt_ray.tuning.ray_session import quiet_tune, ray_session
from ipt_ray.tuning.record import (
    FINISHED,
    INTERRUPTED,
    SearchRecord,
    read_record,
    write_record,
)
from ipt_ray.tuning.relay import pack_prefix, stop_packs
from ipt_ray.tuning.shared_storage import check_shared_storage
from ipt_ray.tuning.space import SearchSpace
from ipt_ray.tuning.summary import SearchSummary, end_line, summarize
from ipt_ray.tuning.trial import (
    TrialSetup,
    trainable,
)
from ipt_ray.tuning.trial_io import remove_scratch_dirs
from ipt_ray.tuning.trial_io import run_name as train_run_name
from ipt_ray.tuning.watchdog import (
    current_job_id,
    describe_bundles,
    live_group_ids,
    release_search_groups,
    watchdog_report,
)
from ipt_ray.tuning.worker import CHECKPOINT_SCORE_KEY

logger = logging.getLogger(__name__)


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


def run_search(
    space: SearchSpace,
    options: SearchOptions | None = None,
    *,
    artifact_root: str | Path | None = None,
    share_backbone: bool = True,
    progress: ProgressFn | None = None,
    top_k: int = 10,
    ray_init_kwargs: Mapping[str, Any] | None = None,
    train_fn: Callable[[dict[str, Any]], None] | None = None,
    **settings: Any,
) -> SearchSummary:
    """Search ``space`` with Ray Tune + Optuna TPE (+ ASHA), tracked in MLflow.

    Args:
        space: the validated search space.
        options: the search's options (:class:`~ipt_ray.tuning.options.SearchOptions`, their
            meaning in its help); ``**settings`` are the same as keyword arguments, applied
            on top. ``num_samples``/``max_concurrent`` override the space's ``search``
            settings; the default ``max_concurrent`` fills the cluster: CPUs / (workers x
            CPUs per worker). ``address`` None starts a local Ray for the search (unless this
            process already runs one). Without ``tracking_uri`` the store is
            ``sqlite:///<abs>/ipt-ray-runs/mlflow.db``; ``storage`` defaults to ``ray`` beside
            a local store, ``<abs>/ipt-ray-runs/ray`` with a server, and must be shared by all
            nodes of a multi-node cluster. ``resume`` continues the interrupted search of that
            name (an error if there is none); without it an interrupted search of the name is
            continued, unless ``fresh``. Continuing reuses the MLflow parent and child runs,
            skips finished trials, resumes interrupted ones from their last checkpoint and
            keeps the Optuna searcher's history.
        artifact_root: artifact root of a new experiment; default ``mlartifacts`` beside a
            local store (``DIR/mlartifacts`` for ``sqlite:///DIR/mlflow.db``), the server's
            for a server (see :meth:`SearchLocations.resolve`).
        share_backbone: put the backbone into Ray's object store once, so that every trial
            process of a node maps the same weights (when every trial uses one backbone).
        progress: called with a :class:`ProgressEvent` per trial event (None: silent).
        top_k: trials listed in :attr:`SearchSummary.top`.
        ray_init_kwargs: extra ``ray.init`` arguments (local Ray or connection).
        train_fn: the per-worker function (tests); default
            :func:`ipt_ray.tuning.worker.train_fn_per_worker`.

    Raises:
        SettingError: a setting out of range (:meth:`SearchOptions.check`), or nothing to
            resume.
        ConfigError: an unknown option in ``settings``.
        UserError: an unreachable cluster or tracking store.
    """
    started = time.time()
    options = (
        SearchOptions.from_keywords(settings) if options is None else replace(options, **settings)
    )
    space_settings = space.settings
    runner = options.check(space_settings.runner, space_settings.pack_size)
    pack_size = options.resolved_pack_size(space_settings.pack_size) if runner == "packed" else 1
    search_name = options.search_name or space.name or (space.path.stem if space.path else "search")
    num_samples = options.num_samples or space_settings.num_samples
    workers_per_trial = options.workers_per_trial
    cpus_per_worker, gpus_per_worker = options.cpus_per_worker, options.gpus_per_worker
    tracking_uri, storage, address = options.tracking_uri, options.storage, options.address
    where = SearchLocations.resolve(
        search_name, tracking_uri=tracking_uri, artifact_root=artifact_root, storage=storage
    )
    record = _record_to_resume(search_name, where, options.resume_mode)
    resumed = record is not None
    if record is not None:
        where = replace(
            where,
            experiment_dir=record.experiment_dir,
            experiment_path=f"{where.storage_path}/{record.experiment_dir}",
        )
    emit: ProgressFn = progress or (lambda event: None)
    # Before Ray starts: a backbone that does not load is one line, and nothing is written.
    loaded = load_shared_backbone(space) if share_backbone else None
    with ray_session(address, ray_init_kwargs or {}) as cluster:
        check_shared_storage(where.storage_path)
        shared = None
        if loaded is not None:
            from ipt_ray.tuning.shared_backbone import publish_backbone

            shared = publish_backbone(loaded[0], model=loaded[1], revision=loaded[2])
            del loaded
        # Only now (Ray is up, the storage fits it) is the MLflow store opened.
        tracker = SearchTracker(
            where.tracking_uri,
            search_name,
            metric=space_settings.metric,
            mode=space_settings.mode,
            artifact_location=where.artifact_location,
            resolve_checkpoint=_checkpoint_resolver(where.storage_path),
            checkpoint_score_key=CHECKPOINT_SCORE_KEY,
            journal=journal_path(where.experiment_path),
            background=True,
        )
        concurrency = (
            options.max_concurrent
            or space_settings.max_concurrent
            or default_max_concurrent(
                workers_per_trial, cpus_per_worker / pack_size, gpus_per_worker / pack_size
            )
        )
        concurrency = max(1, min(concurrency, num_samples))
        setup = TrialSetup(
            space=space,
            storage_path=f"{where.experiment_path}/train",
            workers=workers_per_trial,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            worker_failures=options.worker_failures,
            runner=runner,
            pack_size=pack_size,
            pack_recompute=options.pack_recompute,
            placement_timeout=options.placement_timeout,
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
                params=search_params(
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
            safe_name(search_name), where.experiment_dir, parent, where.tracking_uri
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
                    total=num_samples,
                    metric=tracker.metric,
                    mode=tracker.mode,
                )
            )
            with quiet_tune():
                if resumed:
                    import ray.tune

                    tuner = ray.tune.Tuner.restore(
                        where.experiment_path,
                        trainable=trainable(setup),
                        resume_unfinished=True,
                        resume_errored=False,
                    )
                else:
                    tuner = build_tuner(
                        space,
                        setup,
                        tracker,
                        emit,
                        where,
                        key=key,
                        num_samples=num_samples,
                        concurrency=concurrency,
                        max_failures=options.max_failures,
                        stall_timeout=options.stall_timeout,
                    )
                tuner.fit()
            left = _release_placement_groups(key, job_id, existing_groups, emit)
        except BaseException:
            tracker.finish_search(interrupted=True)
            record.status = INTERRUPTED
            write_record(where.storage_path, record)
            raise
        finally:
            if runner == "packed":  # their members' trials are over, in every case
                stop_packs(pack_prefix(setup.storage_path))
            tracker.finish_search()  # a no-op when the Tune callback closed everything
            for trial_id in tracker.trials:  # what killed workers left on this machine
                remove_scratch_dirs(train_run_name(trial_id))
    summary = summarize(tracker, where, top_k, time.time() - started)
    summary.placement_groups_reaped = len(report.reaped)
    summary.placement_groups_left = left
    summary.trials_stalled = len(report.stalled)
    tracker.finish_search(summary=summary.to_artifact())
    _log_plots(tracker)
    record.status = INTERRUPTED if summary.interrupted else FINISHED
    write_record(where.storage_path, record)
    emit(ProgressEvent("end", end_line(summary)))
    return summary


def _log_plots(tracker: SearchTracker) -> None:
    """The search's plots under ``plots/`` of its parent run (a convenience: a finished search
    never fails on them)."""
    if tracker.parent_run_id is None:
        return
    try:
        from ipt_ray.tracking.plots import log_search_plots
        from ipt_ray.tracking.query import find_search, trial_rows

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
    record = read_record(where.storage_path, safe_name(search_name))
    if record is None or not record.unfinished:
        if resume:
            state = "finished" if record is not None else "no search"
            raise SettingError(
                f"nothing to resume: {state} named {search_name!r} under {where.storage_path}"
                + ("; start a new one without {resume}" if record is not None else "")
            )
        return None
    if record.tracking_uri != where.tracking_uri:
        raise SettingError(
            f"search {search_name!r} was tracked in {record.tracking_uri}; resume it with "
            f"{{tracking_uri}} {record.tracking_uri}"
        )
    import ray.tune

    if not ray.tune.Tuner.can_restore(f"{where.storage_path}/{record.experiment_dir}"):
        if resume:
            raise SettingError(
                f"search {search_name!r} stopped before Ray saved any state; "
                "start it again (with a new {name} to keep the old runs apart)"
            )
        return None
    return record


def _release_placement_groups(key: str, job_id: str, existing: set[str], emit: ProgressFn) -> int:
    """Give back what the search's placement groups still hold once Tune returned
    (:func:`ipt_ray.tuning.watchdog.release_search_groups`); warn about each one that stays.

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
