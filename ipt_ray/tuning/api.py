"""The search as a Python call: :func:`search` runs what ``ipt-ray search`` runs.

The keyword arguments are the command's options (``set={"epochs": 1}`` for ``--set
epochs=1``) and the result is the :class:`~ipt_ray.tuning.summary.SearchSummary`, whose
``to_dict()`` is the ``--json`` object. Errors name the settings as keyword arguments
(:class:`~ipt_ray.tuning.options.SettingError`); the CLI words them as flags. Importing this
module imports neither Ray nor MLflow; :func:`search` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.tuning.options import (
    DEFAULT_PLACEMENT_TIMEOUT_S,
    DEFAULT_STALL_TIMEOUT_S,
    SettingError,
    check_settings,
)
from ipt_ray.tuning.space import SearchSpace, load_space, parse_space

if TYPE_CHECKING:
    from ipt_ray.tuning.progress import ProgressFn
    from ipt_ray.tuning.summary import SearchSummary


def prepare_search(
    space: str | Path | SearchSpace,
    *,
    name: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    resume: str | None = None,
    fresh: bool = False,
    num_samples: int | None = None,
    max_concurrent: int | None = None,
    workers_per_trial: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 0,
    worker_failures: int = 0,
    placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    runner: str = "auto",
    set: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Check a search's settings and load its space, before anything starts (what both a
    local search and a Ray Job submission check first).

    ``space`` is a file, a shipped space's name or a parsed space; ``set``, ``num_samples`` and
    ``max_concurrent`` override its ``fixed`` settings and ``search`` section.

    Returns:
        The space with the overrides applied.

    Raises:
        SettingError: contradicting or out-of-range settings (see
            :func:`~ipt_ray.tuning.options.check_settings`).
        ConfigError: a bad space or override.
        UserError: an unknown task, an unusable tracking URI, storage or Ray address.
    """
    from ipt_ray.tuning import preflight

    if resume is not None and fresh:
        raise SettingError("{resume} and {fresh} contradict each other")
    if resume is not None and name is not None and resume != name:
        raise SettingError(f"{{resume}} {resume} and {{name}} {name} name different searches")
    overrides: dict[str, Any] = {f"fixed.{k}": v for k, v in (set or {}).items()}
    if num_samples is not None:
        overrides["num_samples"] = num_samples
    if max_concurrent is not None:
        overrides["max_concurrent"] = max_concurrent
    if isinstance(space, SearchSpace):
        loaded = (
            parse_space(space.source, path=space.path, overrides={**space.overrides, **overrides})
            if overrides
            else space
        )
    else:
        loaded = load_space(space, overrides or None)
    check_settings(
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        workers_per_trial=workers_per_trial,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_failures=max_failures,
        worker_failures=worker_failures,
        runner=runner,
        placement_timeout=placement_timeout,
    )
    if "task" in loaded.fixed:
        preflight.check_task(str(loaded.fixed["task"]))
    if tracking_uri is not None:
        preflight.check_tracking_uri(tracking_uri)
    if storage is not None:
        preflight.check_storage(storage)
    preflight.check_ray_address(address)
    return loaded


def search(
    space: str | Path | SearchSpace,
    *,
    name: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    resume: str | None = None,
    fresh: bool = False,
    num_samples: int | None = None,
    max_concurrent: int | None = None,
    workers_per_trial: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 0,
    worker_failures: int = 0,
    placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
    runner: str = "auto",
    set: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> SearchSummary:
    """Search ``space`` with Ray Tune + Optuna TPE (+ ASHA), tracked in MLflow: ``ipt-ray
    search`` as a call.

    Args:
        space: a space file, a shipped space's name (``"demo"``) or a parsed space.
        name: search name = MLflow experiment (default: the space's name).
        address: Ray: None starts a local Ray; ``auto``, ``HOST:PORT`` or ``ray://...`` runs
            the driver here against that cluster. A dashboard (``http://HEAD:8265``) is for
            job submission (:func:`ipt_ray.cluster.submit.submit_search`), not for this call.
        tracking_uri: MLflow: ``http://HOST:PORT`` or ``sqlite:///PATH`` (default:
            ``./ipt-ray-runs/mlflow.db``).
        storage: Ray results and checkpoints: a path shared by all nodes or an ``s3://`` /
            ``gs://`` URI (default: ``ray/`` beside a sqlite store, else ``./ipt-ray-runs/ray``).
        resume: continue the interrupted search of this name (running the same call again
            does too, unless ``fresh``).
        fresh: start a new search even if one of this name was interrupted.
        num_samples, max_concurrent: trials, and trials at once (default: the space's; then
            what the cluster fits).
        workers_per_trial, cpus_per_worker, gpus_per_worker: DDP workers per trial and their
            resources (``gpus_per_worker=0.5``: two workers per GPU).
        max_failures: re-run a failed trial this often, from its last checkpoint (-1: always).
        worker_failures: restart a trial's workers this often when one dies (-1: always).
        placement_timeout: seconds a trial waits for its Ray Train workers to be placed.
        stall_timeout: seconds with trials running but none started or reported, after which
            the longest-waiting trial is failed; 0: never.
        runner: ``actor``, ``train`` or ``auto`` (see
            :func:`~ipt_ray.tuning.options.resolve_runner`).
        set: fixed settings of the space to override, e.g. ``{"epochs": 1}``.
        progress: called with each :class:`~ipt_ray.tuning.progress.ProgressEvent` (None:
            silent; :class:`~ipt_ray.tuning.progress.LineProgress` prints them).

    Returns:
        The summary; ``summary.to_dict()`` is the ``ipt-ray search --json`` object.

    Raises:
        SettingError: contradicting or out-of-range settings, a dashboard address, nothing to
            resume.
        ConfigError: a bad space or override.
        UserError: an unknown task, an unusable tracking URI, storage or Ray address, an
            unreachable cluster.
    """
    from ipt_ray.tracking.store import default_storage, default_tracking_uri
    from ipt_ray.tuning import preflight
    from ipt_ray.tuning.run import run_search

    loaded = prepare_search(
        space,
        name=name,
        address=address,
        tracking_uri=tracking_uri,
        storage=storage,
        resume=resume,
        fresh=fresh,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        workers_per_trial=workers_per_trial,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_failures=max_failures,
        worker_failures=worker_failures,
        placement_timeout=placement_timeout,
        runner=runner,
        set=set,
    )
    if preflight.is_dashboard_address(address):
        raise SettingError(
            f"{{address}} {address} is a Ray dashboard: submit the search as a Ray Job "
            "(ipt-ray search, or ipt_ray.cluster.submit.submit_search), or give the cluster's "
            "Ray address (auto, HOST:PORT, ray://...)"
        )
    # The defaults the search will use (ipt_ray.tracking.store), checked like given ones: the
    # store's folder writable, room for checkpoints beside it.
    if tracking_uri is None:
        preflight.check_tracking_uri(default_tracking_uri())
    if storage is None:
        preflight.check_storage(str(default_storage(tracking_uri)))
    return run_search(
        loaded,
        name=resume or name,
        resume=True if resume else (False if fresh else None),
        address=address,
        tracking_uri=tracking_uri,
        storage=storage,
        workers_per_trial=workers_per_trial,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_failures=max_failures,
        worker_failures=worker_failures,
        placement_timeout=placement_timeout,
        stall_timeout=stall_timeout,
        runner=runner,
        progress=progress,
    )


__all__ = ["prepare_search", "search"]
