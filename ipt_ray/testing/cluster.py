"""Ray for tests: live actors, what a hung cluster looks like, a worker that never reports,
and the lock that keeps one Ray on a shared machine."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

#: Environment for processes that start Ray: Ray Train's controller polls its workers every
#: 2 s and forwards one report per poll; 0.25 s lets tiny epochs reach Tune without waiting.
#: Read by Ray processes started while it is set.
FAST_RAY_REPORTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


def alive_actor_pids(class_name: str) -> list[int]:
    """PIDs of the live Ray actors whose class name contains ``class_name`` (needs the Ray
    dashboard's state API: ``ray[default]``). Tune's trial actors are ``ImplicitFunc``, Ray
    Train's workers ``RayTrainWorker``."""
    import ray
    from ray.util.state import list_actors

    # This process's Ray, also when another Ray runs on the machine ("auto" finds both).
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True)
    return [int(a.pid) for a in actors if a.pid is not None and class_name in (a.class_name or "")]


def ray_evidence(cluster: Any) -> dict[str, str]:
    """What a hung search's cluster looks like, for the failure report: ``ray status`` and
    the state API's placement groups and actors (each actor with its placement group), as
    ``ray`` prints them. ``cluster`` is a :class:`ipt_ray.cluster.LocalCluster`."""
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    kw: dict[str, Any] = {"env": cluster.client_env(), "capture_output": True, "text": True}
    commands = {
        "ray_status": ["status", "--address", cluster.head_address],
        "placement_groups": ["list", "placement-groups", "--format=json", "--detail"],
        "actors": ["list", "actors", "--format=json", "--detail", "--limit", "1000"],
    }
    runs = {key: [*ray, *args] for key, args in commands.items()}
    # The GCS table: each group's creator actor, and whether Ray thinks it dead (what the
    # watchdog reaps by), beside what the actor table says of that actor.
    runs["gcs_placement_groups"] = [
        sys.executable,
        "-c",
        _GCS_GROUPS_SCRIPT,
        cluster.head_address,
    ]
    evidence = {}
    for key, args in runs.items():
        try:
            done = subprocess.run(args, timeout=60, **kw)
            evidence[key] = done.stdout + done.stderr[-2000:]
        except subprocess.TimeoutExpired:
            evidence[key] = "(no answer in 60 s)"
    return evidence


_GCS_GROUPS_SCRIPT = """
import dataclasses, json, sys
import ray
from ray._private.state import state
from ipt_ray.tuning.watchdog import placement_groups
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
out = []
for group in placement_groups() or []:
    row = dataclasses.asdict(group)
    if group.live and group.creator_actor_id:
        info = state.actor_table(group.creator_actor_id) or {}
        row["creator"] = {k: info.get(k) for k in ("ActorClassName", "State", "Pid", "EndTime")}
    out.append(row)
print(json.dumps(out))
"""


def evidence_text(evidence: dict[str, str], limit: int = 60) -> str:
    """:func:`ray_evidence` in a few lines for a failure message: ``ray status``, then each
    placement group not REMOVED and each actor not DEAD (at most ``limit`` of each)."""
    out = [evidence.get("ray_status", "").strip()]
    tables = {
        "placement_groups": ("placement_group_id", "state", "creator_job_id", "bundles"),
        "actors": ("class_name", "state", "pid", "node_id", "placement_group_id"),
        "gcs_placement_groups": ("id", "state", "bundles", "creator_actor_dead", "creator"),
    }
    for key, fields in tables.items():
        try:
            rows = json.loads(evidence.get(key) or "[]")
        except json.JSONDecodeError:
            out.append(f"{key}: {evidence.get(key, '')[:2000]}")
            continue
        live = [r for r in rows if r.get("state") not in ("REMOVED", "DEAD")]
        out.append(f"{key}: {len(live)} of {len(rows)} not removed/dead")
        out += ["  " + " ".join(f"{f}={r.get(f)}" for f in fields) for r in live[:limit]]
    return "\n".join(out)


def stalled_worker(config: dict[str, Any]) -> None:
    """A Ray Train per-worker function that never reports (a hung collective, say): what the
    search watchdog must notice. Sleeps for an hour, in short naps so a kill lands at once."""
    import time

    for _ in range(36_000):
        time.sleep(0.1)


#: The lock file that keeps one Ray on a shared machine (tests, benchmarks, docs scripts).
LOCK_ENV = "IPT_RAY_LOCK"


@contextlib.contextmanager
def machine_lock(path: str | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (default ``$IPT_RAY_LOCK``; nothing when
    neither is set) for the block: one Ray at a time on a shared machine."""
    path = path if path is not None else os.environ.get(LOCK_ENV)
    with contextlib.ExitStack() as stack:
        if path:
            fcntl.flock(stack.enter_context(open(path, "a")), fcntl.LOCK_EX)
        yield
