"""The search as a Python call: :func:`search` runs what ``ipt-ray search`` runs.

The keyword arguments are the command's options, the fields of
:class:`~ipt_ray.tuning.options.SearchOptions` (``set={"epochs": 1}`` for ``--set
epochs=1``), and the result is the :class:`~ipt_ray.tuning.summary.SearchSummary`, whose
``to_dict()`` is the ``--json`` object. Errors name the settings as keyword arguments
(:class:`~ipt_ray.errors.SettingError`); the CLI words them as flags. Importing this module
imports neither Ray nor MLflow; :func:`search` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.errors import SettingError
from ipt_ray.tuning.options import SearchOptions
from ipt_ray.tuning.space import SearchSpace, load_space, parse_space

if TYPE_CHECKING:
    from ipt_ray.tuning.progress import ProgressFn
    from ipt_ray.tuning.summary import SearchSummary


def prepare_search(space: str | Path | SearchSpace, options: SearchOptions) -> SearchSpace:
    """Check a search's options and load its space, before anything starts (what both a
    local search and a Ray Job submission check first).

    ``space`` is a file, a shipped space's name or a parsed space; ``options.set``,
    ``num_samples`` and ``max_concurrent`` override its ``fixed`` settings and ``search``
    section.

    Returns:
        The space with the overrides applied.

    Raises:
        SettingError: contradicting or out-of-range options (see
            :meth:`~ipt_ray.tuning.options.SearchOptions.check`).
        ConfigError: a bad space or override.
        UserError: an unknown task, an unusable tracking URI, storage or Ray address.
    """
    from ipt_ray.tuning import preflight

    overrides: dict[str, Any] = {f"fixed.{k}": v for k, v in options.set.items()}
    if options.num_samples is not None:
        overrides["num_samples"] = options.num_samples
    if options.max_concurrent is not None:
        overrides["max_concurrent"] = options.max_concurrent
    if isinstance(space, SearchSpace):
        loaded = (
            parse_space(space.source, path=space.path, overrides={**space.overrides, **overrides})
            if overrides
            else space
        )
    else:
        loaded = load_space(space, overrides or None)
    # After the space: an override out of range is named as the space's setting it replaces.
    options.check(loaded.settings.runner, loaded.settings.pack_size)
    if "task" in loaded.fixed:
        preflight.check_task(str(loaded.fixed["task"]))
    if options.tracking_uri is not None:
        preflight.check_tracking_uri(options.tracking_uri)
    if options.storage is not None:
        preflight.check_storage(options.storage)
    preflight.check_ray_address(options.address)
    return loaded


def search(
    space: str | Path | SearchSpace, *, progress: ProgressFn | None = None, **options: Any
) -> SearchSummary:
    """Search ``space`` with Ray Tune + Optuna TPE (+ ASHA), tracked in MLflow: ``ipt-ray
    search`` as a call.

    Args:
        space: a space file, a shipped space's name (``"demo"``) or a parsed space.
        progress: called with each :class:`~ipt_ray.tuning.progress.ProgressEvent` (None:
            silent; :class:`~ipt_ray.tuning.progress.LineProgress` prints them).
        **options: the fields of :class:`~ipt_ray.tuning.options.SearchOptions` (the flags of
            ``ipt-ray search``), e.g. ``name="s", num_samples=4, set={"epochs": 1}``. An
            ``address`` is a Ray cluster (``auto``, ``HOST:PORT``, ``ray://...``); a
            dashboard (``http://HEAD:8265``) is for job submission
            (:func:`ipt_ray.cluster.submit.submit_search`), not for this call.

    Returns:
        The summary; ``summary.to_dict()`` is the ``ipt-ray search --json`` object.

    Raises:
        SettingError: contradicting or out-of-range options, a dashboard address, nothing to
            resume.
        ConfigError: a bad space or override, an unknown option.
        UserError: an unknown task, an unusable tracking URI, storage or Ray address, an
            unreachable cluster.
    """
    from ipt_ray.tracking.store import default_storage, default_tracking_uri
    from ipt_ray.tuning import preflight
    from ipt_ray.tuning.run import run_search

    settings = SearchOptions.from_keywords(options)
    loaded = prepare_search(space, settings)
    if preflight.is_dashboard_address(settings.address):
        raise SettingError(
            f"{{address}} {settings.address} is a Ray dashboard: submit the search as a Ray "
            "Job (ipt-ray search, or ipt_ray.cluster.submit.submit_search), or give the "
            "cluster's Ray address (auto, HOST:PORT, ray://...)"
        )
    # The defaults the search will use (ipt_ray.tracking.store), checked like given ones: the
    # store's folder writable, room for checkpoints beside it.
    if settings.tracking_uri is None:
        preflight.check_tracking_uri(default_tracking_uri())
    if settings.storage is None:
        preflight.check_storage(str(default_storage(settings.tracking_uri)))
    return run_search(loaded, settings, progress=progress)


__all__ = ["prepare_search", "search"]
