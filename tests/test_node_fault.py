"""A 2-node local cluster: storage only the driver sees is refused, and a worker node killed
mid-search leaves the search to finish on the head (issues "Clusters" and "Reliability and
security", fault 3). A module of its own: no other Ray instance may run on the machine
meanwhile (Ray's internal helpers on the cluster's nodes find "the" cluster by address
"auto", and two instances make that ambiguous: placement groups of dead trials then leak)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipt_ray.cluster import (
    LocalCluster,
    cluster_processes,
    start_local_cluster,
    stop_local_cluster,
)
from ipt_ray.testing import (
    FAST_RAY_REPORTS,
    assert_one_line_error,
    cli_command,
    evidence_text,
    metric_steps,
    ray_evidence,
    write_toy_csv,
)

pytestmark = pytest.mark.ray

#: A search here takes about 2 minutes; past this it hangs (evidence then fits the timeout).
SEARCH_DEADLINE_S = 330


@pytest.fixture(scope="module")
def slow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy task big enough that an epoch takes a few seconds."""
    return write_toy_csv(tmp_path_factory.mktemp("slow") / "slow.csv", n=3000)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Head and one worker node, 1 CPU each (the last test of the module kills the worker)."""
    root = Path(tempfile.mkdtemp(prefix="iptf-"))  # short: Ray's socket paths are limited
    started = start_local_cluster(
        2, root=root, cpus_per_node=1, memory_per_node="3GB", object_store_memory="300MB"
    )
    try:
        yield started
    finally:
        stop_local_cluster(started)


def search_args(cluster: LocalCluster, uri: str, storage: Path, *extra: str) -> list[str]:
    return cli_command(
        "search", "smoke", "--address", cluster.head_address, "--tracking-uri", uri,
        "--storage", storage, *extra,
    )  # fmt: skip


def test_storage_that_only_the_driver_sees_is_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The driver runs in a mount namespace of its own where ``--storage`` is a tmpfs: the
    worker node sees the empty folder underneath (as a node of a real cluster sees its own
    disk), so the probe finds no marker there and the search stops before any MLflow work."""
    storage = tmp_path / "driver-only"
    storage.mkdir()
    db = tmp_path / "store" / "mlflow.db"
    args = " ".join(shlex.quote(a) for a in search_args(cluster, f"sqlite:///{db}", storage))
    script = f"mount -t tmpfs tmpfs {shlex.quote(str(storage))} && exec {args}"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=cluster.client_env(),
        timeout=300,
    )
    assert_one_line_error(proc, prefix=f"storage {storage} is not shared by all 2 nodes")
    assert not db.exists(), "no MLflow store was opened"
    assert list(storage.iterdir()) == [], "the worker node's view stayed empty"


def test_a_killed_worker_node_leaves_the_search_to_finish_on_the_head(
    cluster: LocalCluster, tiny_models: dict[str, Path], slow_csv: Path, tmp_path: Path
) -> None:
    """A 2-node local cluster (1 CPU each), the driver on the head (``--address HOST:PORT``),
    2 trials at a time: once the first epoch is reported, every process of the worker node
    is SIGKILLed. Trials there are restarted on the head (from their last checkpoint), and
    the search completes with every trial finished, nothing RUNNING and no placement group
    left. (Before the watchdog reaped orphaned placement groups, this hung about one run in
    two: a dead controller's group kept the head's only CPU.)"""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**cluster.client_env(), **FAST_RAY_REPORTS}
    head_processes = cluster_processes(cluster) - cluster_processes(cluster, 1)
    fixed = {
        "model": tiny_models["bert"],
        "task": slow_csv,
        "max_samples": 600,
        "epochs": 3,
        "batch_size": 8,
    }
    extra = ["--num-samples", "4", "--max-concurrent", "2", "--max-failures", "2"]
    extra += ["--worker-failures", "2", "--json"]
    for key, value in fixed.items():
        extra += ["--set", f"{key}={value}"]
    proc = subprocess.Popen(
        search_args(cluster, uri, tmp_path / "storage", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    killed = threading.Event()

    def read_and_kill() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not killed.is_set() and "epoch 1/" in line:
                for pid in cluster_processes(cluster, 1):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed.set()

    reader = threading.Thread(target=read_and_kill, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=SEARCH_DEADLINE_S)
    except subprocess.TimeoutExpired:
        # A hang must leave evidence: what the cluster reserves, waits for and runs.
        evidence = ray_evidence(cluster)
        (tmp_path / "evidence.json").write_text(json.dumps(evidence, indent=1))
        proc.kill()
        pytest.fail(
            f"the search hung ({SEARCH_DEADLINE_S} s):\n{''.join(lines)[-4000:]}\n"
            f"{evidence_text(evidence)}"
        )
    reader.join(timeout=30)
    output = "".join(lines)
    assert killed.is_set(), output[-3000:]
    assert code == 0, output[-3000:]
    assert not cluster_processes(cluster, 1), "the worker node is gone"
    assert head_processes & cluster_processes(cluster), "the head survived"
    summary = json.loads(lines[-1])
    assert summary["counts"]["trials"] == 4, output[-3000:]
    assert summary["counts"]["failed"] == 0, output[-3000:]
    assert summary["tracking_calls_lost"] == 0, output[-3000:]
    # What the dead node's trials held was given back: nothing of the search still reserves
    # or waits for resources (their orphaned placement groups, if any, were reaped).
    assert summary["placement_groups_left"] == 0, output[-3000:]
    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri=uri).search_runs([summary["experiment_id"]])
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        if run.info.run_id != summary["parent_run_id"]:
            steps = metric_steps(uri, run.info.run_id, "val_accuracy")
            assert steps == list(range(1, len(steps) + 1)), steps
