"""A search submitted to a real 2-node Ray cluster on loopback, tracked by a real MLflow
server, then browsed and exported from that server (the clusters issue's end-to-end test)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipt_ray.cluster import LocalCluster, start_local_cluster, stop_local_cluster
from ipt_ray.testing import FAST_RAY_REPORTS, mlflow_server, run_cli

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix="iptc-"))  # short: Ray's socket paths are limited
    started = start_local_cluster(
        2,
        root=root,
        cpus_per_node=1,
        memory_per_node="3GB",
        object_store_memory="300MB",
        timeout=120,
    )
    try:
        yield started
    finally:
        stop_local_cluster(started)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def test_submitted_search_runs_on_both_nodes_and_is_browsable(
    cluster: LocalCluster,
    server: str,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    tmp_path: Path,
) -> None:
    env = {**cluster.client_env(), **FAST_RAY_REPORTS}
    storage = tmp_path / "shared-storage"
    proc = run_cli(
        "search",
        "smoke",
        "--address",
        cluster.dashboard_url,
        "--tracking-uri",
        server,
        "--storage",
        str(storage),
        "--name",
        "on-cluster",
        "--num-samples",
        "2",
        "--max-concurrent",
        "2",
        "--set",
        f"model={tiny_models['bert']}",
        "--set",
        f"task={toy_csv}",
        "--set",
        "max_samples=null",
        # Trials of several seconds (batch 1): a trial that ends before the other node has
        # started the second trial's process hands its own warm process to that trial (Tune's
        # actor reuse), and both would run on one node.
        "--set",
        "batch_size=1",
        "--set",
        "epochs=4",
        "--json",
        env=env,
        inherit=False,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "submitted Ray job" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["experiment"] == "on-cluster"
    assert summary["counts"]["trials"] == 2 and summary["counts"]["failed"] == 0
    assert summary["tracking_calls_lost"] == 0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server)
    children = client.search_runs(
        [summary["experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
    )
    assert len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    nodes = {c.data.tags["node"] for c in children}
    assert len(nodes) == 2, f"both trials on one node: {nodes}"

    best = run_cli(
        "best",
        "--tracking-uri",
        server,
        "--experiment",
        "on-cluster",
        "--json",
        env=env,
        inherit=False,
        timeout=120,
    )
    assert best.returncode == 0, best.stderr
    rows = json.loads(best.stdout.strip().splitlines()[-1])["trials"]
    assert rows[0]["run_id"] == summary["best"]["run_id"]

    out = tmp_path / "bundle"
    exported = run_cli(
        "export",
        "--tracking-uri",
        server,
        "--experiment",
        "on-cluster",
        "--out",
        str(out),
        env=env,
        inherit=False,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    assert (out / "prompt.safetensors").exists() and (out / "checksums.json").exists()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://127.0.0.1:9", "cannot reach a Ray dashboard"),
        ("SERVER", "does not look like a Ray dashboard"),
    ],
    ids=["unreachable", "not-a-dashboard"],
)
def test_bad_cluster_addresses_are_one_line_errors(
    address: str, expected: str, server: str, tmp_path: Path, cluster: LocalCluster
) -> None:
    env = cluster.client_env()
    proc = run_cli(
        "search",
        "smoke",
        "--address",
        server if address == "SERVER" else address,
        "--tracking-uri",
        server,
        "--storage",
        str(tmp_path),
        env=env,
        inherit=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("ipt-ray: error: ")
    assert expected in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_token_is_a_one_line_error(
    cluster: LocalCluster, server: str, tmp_path: Path
) -> None:
    env = cluster.client_env()
    for key in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    proc = run_cli(
        "search",
        "smoke",
        "--address",
        cluster.dashboard_url,
        "--tracking-uri",
        server,
        "--storage",
        str(tmp_path),
        env=env,
        inherit=False,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "token" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_submission_without_tracking_uri_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    proc = run_cli(
        "search",
        "smoke",
        "--address",
        cluster.dashboard_url,
        "--storage",
        str(tmp_path),
        env=cluster.client_env(),
        inherit=False,
        timeout=120,
    )
    assert proc.returncode == 2 and "--tracking-uri" in proc.stderr
