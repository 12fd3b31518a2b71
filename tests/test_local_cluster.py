"""The local multi-node launcher against real Ray processes on loopback.

One 2-node cluster (1 CPU and 2 GB each) serves the module; a finalizer stops it even when a
test fails, and the last test stops it itself and checks that no process of it survives. A
driver and ``ray job submit`` run as subprocesses with the cluster's client environment, so this
test process never joins a Ray cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ipt_ray.cluster.local as cluster_local
from ipt_ray.cluster import (
    LocalCluster,
    LocalClusterError,
    cluster_processes,
    local_cluster_status,
    parse_bytes,
    read_state,
    start_local_cluster,
    stop_local_cluster,
    write_state,
)

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    state = stat.stdout.strip()
    return bool(state) and not state.startswith("Z")


def _no_auth_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no Ray token anywhere (HOME points away from ~/.ray/auth_token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("cluster")
    started = start_local_cluster(
        2,
        root=root,
        cpus_per_node=1,
        memory_per_node="2GB",
        object_store_memory="200MB",
        timeout=90,
    )
    try:
        yield started
    finally:
        stop_local_cluster(started)


# ----------------------------------------------------------------------------- no Ray needed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("2GiB", 2 << 30),
        ("2G", 2 << 30),
        ("512MB", 512 * 10**6),
        ("1.5GiB", 3 << 29),
        (1234, 1234),
        ("1000", 1000),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", "0", "4 parsecs", True])
def test_parse_bytes_rejects(bad: object) -> None:
    with pytest.raises(LocalClusterError, match="memory"):
        parse_bytes(bad)  # type: ignore[arg-type]


def test_state_round_trip_and_env(tmp_path: Path) -> None:
    cluster = LocalCluster(
        head_address="127.0.0.2:23456",
        dashboard_url="http://127.0.0.1:23457",
        temp_dir=tmp_path / "ray",
        token_file=tmp_path / "auth_token",
        pids=[11, 12],
        root=tmp_path,
        nodes=2,
    )
    path = write_state(cluster)
    assert path == tmp_path / "cluster.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_state(tmp_path) == cluster
    assert "auth_token" not in json.loads(path.read_text()).get("token", "")
    env = cluster.client_env({"RAY_AUTH_TOKEN": "someone-elses", "PATH": "/bin"})
    assert "RAY_AUTH_TOKEN" not in env
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "auth_token")
    assert env["RAY_ADDRESS"] == "127.0.0.2:23456"
    exports = cluster.shell_exports()
    assert exports.splitlines()[0] == "unset RAY_AUTH_TOKEN"
    assert "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:23457" in exports


def test_stop_without_state_is_a_no_op(tmp_path: Path) -> None:
    stop_local_cluster(tmp_path)
    stop_local_cluster(tmp_path / "cluster.json")
    (tmp_path / "cluster.json").write_text("{}")
    with pytest.raises(LocalClusterError, match="not an ipt-ray local cluster state file"):
        stop_local_cluster(tmp_path)


def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="nodes must be at least 1"):
        start_local_cluster(0, root=tmp_path)
    with pytest.raises(LocalClusterError, match="memory_per_node"):
        start_local_cluster(2, root=tmp_path, memory_per_node="plenty")
    assert not (tmp_path / "cluster.json").exists()


# ----------------------------------------------------------------------------- real Ray


@pytest.mark.ray
def test_cluster_is_up_on_loopback_with_a_private_token(cluster: LocalCluster) -> None:
    assert cluster.head_address.startswith(("127.", "[::1]"))
    assert cluster.dashboard_url.startswith("http://127.0.0.1:")
    assert cluster.token_file is not None
    assert cluster.token_file.parent == cluster.root
    assert cluster.token_file.stat().st_mode & 0o777 == 0o600
    assert len(cluster.token_file.read_text()) == 64
    # Ray's sockets live under the temp dir: its path must stay short (107-byte limit).
    assert len(str(cluster.temp_dir)) <= 36
    assert read_state(cluster.root) == cluster
    status = local_cluster_status(cluster.root)
    assert status.running, status.ray_status
    assert status.nodes_alive == 2


@pytest.mark.ray
def test_a_driver_with_the_token_runs_tasks_on_both_nodes(cluster: LocalCluster) -> None:
    script = (
        "import ray, time\n"
        "ray.init(log_to_driver=False)\n"  # RAY_ADDRESS comes from the client environment
        "@ray.remote(num_cpus=1)\n"
        "def where():\n"
        "    time.sleep(1.0)\n"
        "    return ray.get_runtime_context().get_node_id()\n"
        "print(sorted(set(ray.get([where.remote(), where.remote()]))))\n"
        "print(len([n for n in ray.nodes() if n['Alive']]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=cluster.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    node_ids_line, alive_line = done.stdout.strip().splitlines()[-2:]
    assert len(eval(node_ids_line)) == 2  # one task per 1-CPU node
    assert alive_line == "2"


@pytest.mark.ray
def test_token_auth_is_really_on(cluster: LocalCluster, tmp_path: Path) -> None:
    no_token = subprocess.run(
        [*RAY, "status", "--address", cluster.head_address],
        env=_no_auth_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_token.returncode != 0
    assert "Authentication" in no_token.stdout + no_token.stderr

    url = cluster.dashboard_url + "/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    assert cluster.token_file is not None
    token = cluster.token_file.read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.ray
def test_ray_job_submit_with_the_token(cluster: LocalCluster, tmp_path: Path) -> None:
    entry = [sys.executable, "-c", "print('job-ran-' + str(6 * 7))"]  # Ray shell-quotes it
    submit = [*RAY, "job", "submit", "--address", cluster.dashboard_url, "--", *entry]
    done = subprocess.run(
        submit, env=cluster.client_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "job-ran-42" in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    refused = subprocess.run(
        submit, env=_no_auth_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0


@pytest.mark.ray
def test_down_from_the_state_file_leaves_no_process(cluster: LocalCluster) -> None:
    processes = cluster_processes(cluster)
    assert set(cluster.pids) <= processes
    assert len(processes) > len(cluster.pids)  # GCS, raylets, dashboard, agents, ...
    started = time.monotonic()
    stop_local_cluster(cluster.state_file)  # as `ipt-ray cluster down` does, from the file
    assert time.monotonic() - started < 30
    survivors = [pid for pid in processes if _pid_alive(pid)]
    assert survivors == []
    assert not cluster.state_file.exists()
    assert not cluster.temp_dir.exists()
    assert not local_cluster_status(cluster.root).running
    stop_local_cluster(cluster.root)  # idempotent


def _short_root() -> Path:
    # A short root keeps the nodes' temp dirs inside it, so their command lines name it.
    return Path(tempfile.mkdtemp(prefix="ipt", dir="/tmp" if Path("/tmp").is_dir() else None))


def _assert_nothing_left(root: Path) -> None:
    """No live process names ``root``, no state file, and the head's log is kept."""
    leftovers = subprocess.run(
        ["ps", "-ww", "-A", "-o", "stat=,args="], capture_output=True, text=True
    ).stdout
    mine = [
        line
        for line in leftovers.splitlines()
        if str(root) in line and not line.lstrip().startswith("Z")
    ]
    assert mine == []
    assert not (root / "cluster.json").exists()
    assert "node-0.log" in os.listdir(root / "logs")


@pytest.mark.ray
def test_a_start_that_times_out_tears_down_what_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # How far the head gets in 2 s depends on the machine's load (under CI's load its
    # `ray start` had not even made its temp dir), so the test watches what was spawned
    # rather than asserting how far it got.
    started: list[subprocess.Popen[bytes]] = []

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real_ray_start(*args, **kwargs)
        started.append(proc)
        return proc

    real_ray_start = cluster_local.ray_start
    monkeypatch.setattr(cluster_local, "ray_start", spy)
    root = _short_root()
    try:
        with pytest.raises(LocalClusterError, match="timed out waiting"):
            start_local_cluster(2, root=root, memory_per_node="1GB", timeout=2)
        assert started  # the head's `ray start` was spawned ...
        assert [proc.pid for proc in started if proc.poll() is None] == []  # ... and ended
        _assert_nothing_left(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.ray
def test_a_worker_node_that_dies_at_start_tears_down_the_running_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Worker nodes start only once the head's GCS answers, so the head and its GCS (and the
    # session dir made before it) certainly exist when the worker's `ray start` is killed, as
    # the OOM killer would; whether the head's raylet is up yet depends on timing.
    def dying(*args: Any, **kwargs: Any) -> tuple[subprocess.Popen[bytes], Path]:
        proc, log = real_start_worker_node(*args, **kwargs)
        proc.kill()
        return proc, log

    real_start_worker_node = cluster_local.start_worker_node
    monkeypatch.setattr(cluster_local, "start_worker_node", dying)
    root = _short_root()
    try:
        with pytest.raises(LocalClusterError, match=r"node 1 \(`ray start`\) exited"):
            start_local_cluster(2, root=root, memory_per_node="1GB")
        assert (root / "ray" / "n0").is_dir()  # the head got as far as its session dir
        _assert_nothing_left(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
