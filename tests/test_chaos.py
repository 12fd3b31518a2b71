"""The chaos soak (``benchmarks/chaos.py``) in small: one round of one runner, with trial
processes, and maybe the worker node, SIGKILLed under the search; and ``add_worker_node``
bringing a 2-node loopback cluster back to 2 nodes after its worker node is killed.

Slow (several minutes) and not in the default suite. Each test starts Ray: on a shared machine
run it under the Ray lock, ``flock /tmp/ipt-ray-ray.lock .venv/bin/python -m pytest
tests/test_chaos.py -m slow``, without ``IPT_RAY_LOCK`` set (the round takes no lock here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from ipt_ray.cluster import (
    add_worker_node,
    cluster_processes,
    local_cluster_status,
    read_state,
    start_local_cluster,
    stop_local_cluster,
)
from ipt_ray.testing import write_toy_csv

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def load_chaos() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "chaos.py"
    spec = importlib.util.spec_from_file_location("chaos_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_killed_worker_node_is_replaced() -> None:
    """Every process of the worker node SIGKILLed, then ``add_worker_node``: the dead leader
    leaves ``pids``, the new node registers (the GCS counts 2 live nodes again), the state file
    says so, and stopping the cluster ends every process of it."""
    root = Path(tempfile.mkdtemp(prefix="iptn-"))
    cluster = start_local_cluster(
        2, root=root, cpus_per_node=1, memory_per_node="2GB", object_store_memory="200MB"
    )
    try:
        old = cluster.pids[1]
        for pid in cluster_processes(cluster, 1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        new = add_worker_node(cluster)
        assert cluster.pids == [cluster.pids[0], new] and old not in cluster.pids
        assert cluster.nodes == 2 and read_state(root) == cluster
        assert cluster_processes(cluster, 1), "the new node runs"
        assert (root / "logs" / "node-2.log").exists()
        status = local_cluster_status(cluster)
        for _ in range(60):  # the GCS marks the dead node dead after its health checks fail
            if status.running:
                break
            status = local_cluster_status(cluster)
        assert status.running, status.ray_status
    finally:
        stop_local_cluster(cluster)
    assert not cluster_processes(cluster)


def test_one_chaos_round_of_the_actor_runner_meets_the_goals(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """12 trials under the killer: the search completes, every trial's epochs are in MLflow
    exactly once and in order, nothing is left RUNNING, no placement group leaks and no MLflow
    call is lost."""
    chaos = load_chaos()
    task = write_toy_csv(tmp_path / "toy.csv", n=3000)
    record = chaos.run_round("actor", 0, 0, tiny_models["bert"], task, tmp_path / "logs")
    assert chaos.problems(record) == [], record
    assert record["trials"] == chaos.TRIALS
    assert sum(record["kills"].values()) >= 1, record
    assert record["nodes_at_end"] == 2, record
