"""Finding, signalling and waiting for a local cluster's processes.

Needs: ``ps`` and POSIX process groups. Provides: :func:`cluster_processes` (every live process
of the cluster or of one node) and the helpers that stop them. Only processes whose ``ray
start`` command line names the cluster's temp dir count as the cluster's, so a recycled pid is
left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ipt_ray.cluster.state import LocalCluster

# Ray processes we started in this interpreter, kept so that they can be reaped (a stopped
# child stays a zombie, i.e. "alive" to kill(pid, 0), until its parent waits for it).
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Proc:
    ppid: int
    pgid: int
    state: str
    args: str

    @property
    def zombie(self) -> bool:
        return self.state.startswith("Z")


def ps_table() -> dict[int, Proc]:
    """pid -> parent, process group, state and command line of every process, from ``ps``."""
    out = subprocess.run(
        [
            "ps",
            "-ww",
            "-A",
            "-o",
            "pid=",
            "-o",
            "ppid=",
            "-o",
            "pgid=",
            "-o",
            "stat=",
            "-o",
            "args=",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    table: dict[int, Proc] = {}
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4 and all(part.isdigit() for part in parts[:3]):
            args = parts[4] if len(parts) > 4 else ""
            table[int(parts[0])] = Proc(int(parts[1]), int(parts[2]), parts[3], args)
    return table


def still_running(pids: Iterable[int]) -> set[int]:
    """The subset of ``pids`` still running (zombies count as gone; children of ours that
    ended are reaped here, or they would stay zombies until this process exits)."""
    pids = list(pids)
    for pid in pids:
        child = CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            CHILDREN.pop(pid, None)
    table = ps_table()
    return {pid for pid in pids if pid in table and not table[pid].zombie}


def descendants(roots: Iterable[int], table: Mapping[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def owned_leaders(cluster: LocalCluster, table: Mapping[int, Proc]) -> list[int]:
    """The leaders that are still *our* ``ray start`` (a recycled pid is left alone)."""
    marker = str(cluster.temp_dir)
    return [
        pid
        for pid in cluster.pids
        if pid in table and "ray" in table[pid].args and marker in table[pid].args
    ]


def cluster_processes(cluster: LocalCluster, node: int | None = None) -> set[int]:
    """Every live process of the cluster (or of node ``node``: 0 is the head): the leaders,
    their process groups and descendants.

    Ray's worker processes start their own process groups, so the group alone is not enough.
    """
    table = ps_table()
    leaders = owned_leaders(cluster, table)
    if node is not None:
        leaders = [pid for pid in leaders if pid == cluster.pids[node]]
    found = set(leaders) | descendants(leaders, table)
    found |= {pid for pid, proc in table.items() if proc.pgid in leaders}
    return {pid for pid in found if pid in table and not table[pid].zombie}


def signal_groups(leaders: Iterable[int], sig: signal.Signals) -> None:
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; return those still running."""
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while True:
        remaining = still_running(remaining)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.2)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


__all__ = [
    "CHILDREN",
    "Proc",
    "cluster_processes",
    "descendants",
    "log_tail",
    "owned_leaders",
    "ps_table",
    "signal_groups",
    "still_running",
    "wait_gone",
]
