"""A search's own settings, checked before anything starts: the runner a trial trains with,
resources per trial, failures, and how long a search waits for a trial (the defaults the CLI
shows and the Ray layer applies).

Runners: ``actor`` trains in Tune's trial process, reused by the next trial; ``train`` is a
Ray Train TorchTrainer with DDP workers (see :mod:`ipt_ray.tuning.trial`). Errors name the
settings as keyword arguments (:class:`SettingError`); the CLI words them as flags. No Ray
import here (the CLI checks the settings before it starts anything).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ipt_ray.errors import UserError, unknown_choice

#: How a trial trains (see the module docstring); ``auto`` picks one.
RUNNERS = ("auto", "actor", "train")
#: Seconds a ``train`` trial waits for its workers to be placed before it fails.
DEFAULT_PLACEMENT_TIMEOUT_S = 180.0
#: Seconds with RUNNING trials of which none started or reported, after which the search's
#: watchdog fails the longest-waiting one (longer than any epoch measured here).
DEFAULT_STALL_TIMEOUT_S = 1800.0


#: The settings an error may name: the keyword arguments of :func:`ipt_ray.tuning.api.search`.
SETTING_NAMES = (
    "name",
    "address",
    "tracking_uri",
    "storage",
    "resume",
    "fresh",
    "num_samples",
    "max_concurrent",
    "workers_per_trial",
    "cpus_per_worker",
    "gpus_per_worker",
    "max_failures",
    "worker_failures",
    "placement_timeout",
    "stall_timeout",
    "runner",
    "set",
)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(SETTING_NAMES) + r")\}")


class SettingError(UserError):
    """A search setting out of range. The message names settings as ``{name}`` placeholders:
    ``str(error)`` shows them as keyword arguments (``workers_per_trial``), and
    :meth:`render` as anything else (the CLI: ``--workers-per-trial``)."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render(lambda name: name))

    def render(self, show: Callable[[str], str]) -> str:
        """The message with each ``{name}`` replaced by ``show(name)``."""
        return _PLACEHOLDER.sub(lambda m: show(m.group(1)), self.template)

    def __reduce__(self) -> tuple[type[SettingError], tuple[str]]:  # picklable across Ray
        return (type(self), (self.template,))


def resolve_runner(runner: str, workers: int, worker_failures: int) -> str:
    """``actor`` or ``train`` for a search's settings.

    ``auto`` is ``actor`` for one worker per trial and ``train`` when a trial has several
    workers or ``worker_failures`` asks Ray Train to restart them.

    Raises:
        ConfigError: an unknown runner.
        SettingError: ``actor`` with settings only ``train`` has.
    """
    if runner not in RUNNERS:
        raise unknown_choice("runner", runner, RUNNERS)
    if runner == "auto":
        return "actor" if workers == 1 and worker_failures == 0 else "train"
    if runner == "actor" and workers > 1:
        raise SettingError(
            f"{{runner}} actor trains each trial in one process, but {{workers_per_trial}} is "
            f"{workers}; use {{runner}} train (Ray Train DDP) or auto"
        )
    if runner == "actor" and worker_failures != 0:
        raise SettingError(
            "{worker_failures} restarts Ray Train workers, which {runner} actor has none of; "
            "use {max_failures} (Tune restarts the trial from its last checkpoint) or "
            "{runner} train"
        )
    return runner


def check_settings(
    *,
    num_samples: int | None = None,
    max_concurrent: int | None = None,
    workers_per_trial: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 0,
    worker_failures: int = 0,
    runner: str = "auto",
    placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT_S,
) -> str:
    """Check a search's resource, failure and runner settings; the one place that does.

    ``num_samples``/``max_concurrent`` None mean the space's own; ``max_failures`` and
    ``worker_failures`` -1 mean no limit.

    Returns:
        The runner the search uses (``actor`` or ``train``, see :func:`resolve_runner`).

    Raises:
        SettingError: a count below 1, failures below -1, negative CPUs or GPUs per worker, a
            placement timeout of 0 s or less, or ``actor`` with settings only ``train`` has.
        ConfigError: an unknown runner.
    """
    for key, value in (
        ("num_samples", num_samples),
        ("max_concurrent", max_concurrent),
        ("workers_per_trial", workers_per_trial),
    ):
        if value is not None and value < 1:
            raise SettingError(f"{{{key}}} must be at least 1, got {value}")
    for key, value in (("max_failures", max_failures), ("worker_failures", worker_failures)):
        if value < -1:
            raise SettingError(f"{{{key}}} must be -1 (no limit) or more, got {value}")
    if cpus_per_worker < 0 or gpus_per_worker < 0:
        raise SettingError(
            "{cpus_per_worker} and {gpus_per_worker} cannot be negative, got "
            f"{cpus_per_worker:g} and {gpus_per_worker:g}"
        )
    runner = resolve_runner(runner, workers_per_trial, worker_failures)
    if not placement_timeout > 0:
        raise SettingError(
            f"{{placement_timeout}} must be more than 0 seconds, got {placement_timeout:g}"
        )
    return runner


__all__ = [
    "DEFAULT_PLACEMENT_TIMEOUT_S",
    "DEFAULT_STALL_TIMEOUT_S",
    "RUNNERS",
    "SETTING_NAMES",
    "SettingError",
    "check_settings",
    "resolve_runner",
]
