"""``ipt-ray jobs`` (Ray Jobs on a cluster: :mod:`ipt_ray.cluster.submit`) and ``ipt-ray
cluster`` (a local multi-node cluster: :mod:`ipt_ray.cluster.local`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ipt_ray.cli.format import Command, Group, user_errors
from ipt_ray.errors import UserError

jobs_app = typer.Typer(
    help="Ray Jobs on a cluster: list, status, logs, stop.", no_args_is_help=True, cls=Group
)

JobAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="the cluster's dashboard, http://HEAD:8265 "
        "(default: $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265)",
    ),
]


def _client(address: str | None) -> tuple[Any, str]:
    from ipt_ray.cluster.submit import default_address, job_client

    where = address or default_address()
    return job_client(where), where


def _job_call(address: str | None, method: str, *args: Any) -> Any:
    """Call ``JobSubmissionClient.<method>(*args)``; its errors become one line (UserError)."""
    from ipt_ray.cluster.submit import explain_job_error

    client, where = _client(address)
    try:
        return getattr(client, method)(*args)
    except Exception as exc:
        raise UserError(explain_job_error(where, exc)) from None


@jobs_app.command("list", cls=Command)
@user_errors
def jobs_list(address: JobAddressOpt = None) -> None:
    """Jobs on the cluster, newest last: id, status, entrypoint."""
    jobs = _job_call(address, "list_jobs")
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        status = str(job.status).rsplit(".", 1)[-1]
        print(f"{job.submission_id or job.job_id}  {status:9s}  {job.entrypoint[:100]}")


@jobs_app.command("status", cls=Command)
@user_errors
def jobs_status(job_id: str, address: JobAddressOpt = None) -> None:
    """A job's status (exit status 0 if it succeeded or runs, 1 if it failed or stopped)."""
    info = _job_call(address, "get_job_info", job_id)
    status = str(info.status).rsplit(".", 1)[-1]
    print(f"{job_id}: {status}" + (f" ({info.message})" if info.message else ""))
    raise SystemExit(0 if status in ("SUCCEEDED", "RUNNING", "PENDING") else 1)


@jobs_app.command("logs", cls=Command)
@user_errors
def jobs_logs(
    job_id: str,
    address: JobAddressOpt = None,
    follow: Annotated[bool, typer.Option(help="keep printing until the job ends")] = False,
) -> None:
    """A job's output."""
    if not follow:
        print(_job_call(address, "get_job_logs", job_id), end="")
        return
    from ipt_ray.cluster.submit import explain_job_error, follow_logs

    client, where = _client(address)
    try:
        follow_logs(client, job_id)
    except Exception as exc:
        raise UserError(explain_job_error(where, exc)) from None


@jobs_app.command("stop", cls=Command)
@user_errors
def jobs_stop(job_id: str, address: JobAddressOpt = None) -> None:
    """Stop a running job (its search marks running trials KILLED in MLflow)."""
    stopped = _job_call(address, "stop_job", job_id)
    print(f"{job_id}: {'stop requested' if stopped else 'not running'}")


cluster_app = typer.Typer(
    help="A local multi-node Ray cluster on this machine (loopback, token auth on).",
    no_args_is_help=True,
    cls=Group,
)

RootOpt = Annotated[Path, typer.Option(help="folder for the cluster's state, token and logs")]


@cluster_app.command("up", cls=Command)
@user_errors
def cluster_up(
    nodes: Annotated[int, typer.Option(help="nodes: a head and NODES-1 workers")] = 2,
    cpus_per_node: Annotated[int, typer.Option(help="CPUs each node offers")] = 1,
    memory_per_node: Annotated[
        str, typer.Option(help="memory each node offers (4GB, 2GiB)")
    ] = "4GB",
    object_store_memory: Annotated[
        str | None, typer.Option(help="object store per node (default: Ray's share)")
    ] = None,
    root: RootOpt = Path("ipt-ray-runs/cluster"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for every node")] = 90.0,
) -> None:
    """Start a head and NODES-1 worker nodes on 127.0.0.2, each with its own temp dir."""
    from ipt_ray.cluster import start_local_cluster

    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, got {nodes}")
    cluster = start_local_cluster(
        nodes,
        root=root.resolve(),
        cpus_per_node=cpus_per_node,
        memory_per_node=memory_per_node,
        object_store_memory=object_store_memory,
        timeout=timeout,
    )
    print(
        f"{cluster.nodes} nodes up; GCS {cluster.head_address}; dashboard {cluster.dashboard_url}"
    )
    print(f"token file: {cluster.token_file} (the dashboard asks for it once)")
    print("to submit to it from this shell:")
    print(cluster.shell_exports())
    print(f"stop it with: ipt-ray cluster down --root {root}")


@cluster_app.command("down", cls=Command)
@user_errors
def cluster_down(root: RootOpt = Path("ipt-ray-runs/cluster")) -> None:
    """Stop every process of the local cluster started with `cluster up`."""
    from ipt_ray.cluster import stop_local_cluster

    stop_local_cluster(root.resolve())
    print("local cluster stopped")


@cluster_app.command("status", cls=Command)
@user_errors
def cluster_status(root: RootOpt = Path("ipt-ray-runs/cluster")) -> None:
    """Whether the local cluster runs, and Ray's own status."""
    from ipt_ray.cluster import local_cluster_status

    status = local_cluster_status(root.resolve())
    if status.cluster is None:
        print(f"no local cluster under {root}")
        raise SystemExit(1)
    state = "running" if status.running else "degraded"
    print(
        f"{state}: {len(status.alive_pids)}/{len(status.cluster.pids)} node processes, "
        f"{status.nodes_alive} nodes registered; dashboard {status.cluster.dashboard_url}"
    )
    if status.ray_status:
        print(status.ray_status)
