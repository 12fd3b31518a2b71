"""The runners a trial can train with, which one a search's settings get, and how long a
search waits for a trial (the defaults the CLI shows and the Ray layer applies).

``actor``: in Tune's trial process, reused by the next trial; ``train``: a Ray Train
TorchTrainer with DDP workers. See :mod:`ipt_ray.driver`. No Ray import here (the CLI checks
the choice before it starts anything).
"""

from __future__ import annotations

from ipt_ray.errors import UserError, unknown_choice

#: How a trial trains (see the module docstring); ``auto`` picks one.
RUNNERS = ("auto", "actor", "train")
#: Seconds a ``train`` trial waits for its workers to be placed before it fails.
DEFAULT_PLACEMENT_TIMEOUT_S = 180.0
#: Seconds with RUNNING trials of which none started or reported, after which the search's
#: watchdog fails the longest-waiting one (longer than any epoch measured here).
DEFAULT_STALL_TIMEOUT_S = 1800.0


def resolve_runner(runner: str, workers: int, worker_failures: int) -> str:
    """``actor`` or ``train`` for a search's settings.

    ``auto`` is ``actor`` for one worker per trial and ``train`` when a trial has several
    workers or ``worker_failures`` asks Ray Train to restart them.

    Raises:
        UserError: an unknown runner, or ``actor`` with settings only ``train`` has.
    """
    if runner not in RUNNERS:
        raise unknown_choice("runner", runner, RUNNERS)
    if runner == "auto":
        return "actor" if workers == 1 and worker_failures == 0 else "train"
    if runner == "actor" and workers > 1:
        raise UserError(
            f"--runner actor trains each trial in one process, but --workers-per-trial is "
            f"{workers}; use --runner train (Ray Train DDP) or auto"
        )
    if runner == "actor" and worker_failures != 0:
        raise UserError(
            "--worker-failures restarts Ray Train workers, which --runner actor has none of; "
            "use --max-failures (Tune restarts the trial from its last checkpoint) or "
            "--runner train"
        )
    return runner


__all__ = ["RUNNERS", "resolve_runner"]
