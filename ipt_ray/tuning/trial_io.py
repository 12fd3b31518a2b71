"""What a trial process needs without torch: its node's name, its scratch folders, its name
as a Ray Train run, and its report to Tune.

Imported by every runner; the ``packed`` runner's relays (:mod:`ipt_ray.tuning.relay`) import
nothing heavier, so a relay process holds Ray and Tune but not torch.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import ray
import ray.tune


def run_name(trial_id: str) -> str:
    """The run name of a trial (its Ray Train run, its scratch folders): stable across
    restarts of the trial."""
    return f"trial-{trial_id}"


def node_name() -> str:
    """``hostname (ip, node 1a2b3c4d)`` of this process's Ray node.

    The short Ray node id tells apart nodes that share a host and an address (a local
    multi-node cluster on one machine).
    """
    if not ray.is_initialized():  # outside Ray (asking would start one)
        return f"{socket.gethostname()} (?, node ?)"
    try:
        ip = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # outside a Ray worker
        ip, node_id = "?", "?"
    return f"{socket.gethostname()} ({ip}, node {node_id})"


def scratch_dir(run_name: str, rank: int) -> Path:
    """Where a worker writes checkpoints before Ray Train copies them to storage.

    One fixed directory per trial and rank (not a fresh ``mkdtemp``), so that what a killed
    worker leaves behind (an ASHA stop, Ctrl-C) is bounded, removed when the trial restarts,
    and found by :func:`remove_scratch_dirs` at the end of a search.
    """
    return Path(tempfile.gettempdir()) / f"ipt-ray-ckpt-{run_name}-rank{rank}"


def remove_scratch_dirs(run_name: str) -> None:
    """Remove the scratch directories of every rank of a trial on this machine."""
    for path in Path(tempfile.gettempdir()).glob(f"ipt-ray-ckpt-{run_name}-rank*"):
        shutil.rmtree(path, ignore_errors=True)


def report_to_tune(metrics: dict[str, Any], directory: str | None, epoch: int) -> None:
    """Report to Tune from inside a trial (Tune persists the checkpoint in the trial's dir)."""
    checkpoint = ray.tune.Checkpoint.from_directory(directory) if directory else None
    ray.tune.report(metrics, checkpoint=checkpoint)


__all__ = ["node_name", "remove_scratch_dirs", "report_to_tune", "run_name", "scratch_dir"]
