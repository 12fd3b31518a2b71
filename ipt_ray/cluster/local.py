"""A real multi-node Ray cluster on this machine, reachable only through loopback addresses.

``start_local_cluster`` runs one ``ray start --head --block`` and ``nodes - 1`` joining
``ray start --address ... --block`` processes, each in its own session (so its process group
holds exactly that node's processes), with token authentication on, a fixed share of CPUs and
memory per node and a private temporary directory. It is the rehearsal for a real cluster: the
search runs with ``--address``, Ray Train spreads workers over nodes, and everything that needs
the token (drivers, ``ray status``, ``ray job``, the dashboard's HTTP API) is exercised.
``stop_local_cluster`` ends exactly those processes (never ``ray stop``, which kills every Ray
process of the user on the machine).

How Ray 2.60 authenticates here (read from ``ray/scripts/scripts.py`` and
``ray/_private/authentication/``, and checked by ``tests/test_local_cluster.py``):

* ``RAY_AUTH_MODE=token`` turns authentication on; every node and every client must set it.
  ``ray start`` never writes a token (only a local ``ray.init()`` does, at ``~/.ray/auth_token``);
  a head started without ``RAY_AUTH_MODE`` turns token mode on only if some token already
  exists, else it starts *without* authentication and says so in a warning.
* The token is read from ``RAY_AUTH_TOKEN`` (the value), else the file named by
  ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``, in that order. This launcher writes a fresh
  random token (256 bits, mode 0600) to ``<root>/auth_token`` and hands every node and client
  ``RAY_AUTH_TOKEN_PATH``: the user's ``~/.ray`` is neither read nor written, and the secret
  never appears in a command line or an ``export`` line. ``RAY_AUTH_TOKEN`` is removed from the
  environments we build because it would take precedence over the file.
* The GCS and every other gRPC endpoint reject calls without the token; the dashboard answers
  401 unless the request carries ``Authorization: Bearer <token>``.

Networking: Ray replaces ``--node-ip-address 127.0.0.1`` (and ``localhost``) with the machine's
routable address, so on Linux the nodes use another loopback address, ``127.0.0.2`` (all of
127.0.0.0/8 is loopback there); the dashboard binds 127.0.0.1. Ray's gRPC servers (GCS, raylets,
object managers) still *listen* on every interface whatever ``--node-ip-address`` says, and the
metrics exporter binds 0.0.0.0: on a machine exposed to a network, the token is what protects
them. Fixed ports (GCS, dashboard, client server, dashboard agents) are picked below the
kernel's ephemeral range, so they never collide with the ports Ray's processes let the kernel
choose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ipt_ray.cluster.nodes import (
    http_answers,
    make_temp_base,
    node_env,
    ray_start,
    ray_status,
    shared_node_args,
    start_worker_node,
    tcp_open,
    wait_until,
    write_token,
)
from ipt_ray.cluster.processes import (
    CHILDREN,
    cluster_processes,
    descendants,
    owned_leaders,
    ps_table,
    signal_groups,
    still_running,
    wait_gone,
)
from ipt_ray.cluster.resources import parse_bytes, pick_ports, port_is_free
from ipt_ray.cluster.state import (
    DASHBOARD_HOST,
    DEFAULT_NODE_IP,
    STATE_FILE,
    TOKEN_FILE,
    LocalCluster,
    LocalClusterError,
    LocalClusterStatus,
    as_cluster,
    read_state,
    write_state,
)


def start_local_cluster(
    nodes: int = 2,
    *,
    root: str | Path,
    cpus_per_node: int = 1,
    gpus_per_node: int = 0,
    memory_per_node: str | int = "4GB",
    object_store_memory: str | int | None = None,
    port: int | None = None,
    dashboard_port: int | None = None,
    node_ip: str = DEFAULT_NODE_IP,
    timeout: float = 90.0,
) -> LocalCluster:
    """Start a head and ``nodes - 1`` worker nodes on this machine and wait until all are up.

    Each node is ``ray start --block`` in its own session with ``--num-cpus cpus_per_node``,
    ``--num-gpus gpus_per_node`` (0 by default: nodes sharing a machine would otherwise all
    claim the same GPUs), ``--memory`` / ``--object-store-memory`` and its own temp dir. The
    state is written to ``<root>/cluster.json`` so that another process can stop the cluster.

    Args:
        nodes: number of nodes, head included (>= 1).
        root: directory for the token, the state file and the nodes' logs (created).
        cpus_per_node: logical CPUs each node offers (>= 1).
        gpus_per_node: GPUs each node offers (>= 0).
        memory_per_node: heap memory each node offers to tasks (``4GB``, ``2GiB``, bytes).
        object_store_memory: object store per node; default a quarter of ``memory_per_node``,
            at least 100 MB.
        port: GCS port of the head; default a free port.
        dashboard_port: dashboard port (bound to 127.0.0.1); default a free port.
        node_ip: loopback address the nodes advertise (see the module docstring).
        timeout: seconds to wait for every node to register.

    Returns:
        The running cluster.

    Raises:
        LocalClusterError: bad arguments, a cluster already running under ``root``, or a node
            that failed or did not register in time; everything started is stopped first.
    """
    if nodes < 1:
        raise LocalClusterError(f"nodes must be at least 1, got {nodes}")
    if cpus_per_node < 1:
        raise LocalClusterError(f"cpus_per_node must be at least 1, got {cpus_per_node}")
    if gpus_per_node < 0:
        raise LocalClusterError(f"gpus_per_node must be at least 0, got {gpus_per_node}")
    memory = parse_bytes(memory_per_node, what="memory_per_node")
    store = (
        max(memory // 4, 100 * 1000**2)
        if object_store_memory is None
        else parse_bytes(object_store_memory, what="object_store_memory")
    )
    if store < 80 * 1000**2:  # Ray refuses object stores below 75 MiB
        raise LocalClusterError(f"object_store_memory must be at least 80MB, got {store} bytes")

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state_file = root / STATE_FILE
    if state_file.exists():
        previous = read_state(state_file)
        if cluster_processes(previous):
            raise LocalClusterError(
                f"a local cluster is already running under {root} (head {previous.head_address}); "
                f"stop it first with `ipt-ray cluster down --root {root}`"
            )
        stop_local_cluster(previous)  # leftovers of a crashed run: state and temp dir

    wanted = [p for p in (port, dashboard_port) if p is not None]
    fixed = pick_ports(3 + nodes, taken=wanted)
    gcs_port = port if port is not None else fixed[0]
    dash_port = dashboard_port if dashboard_port is not None else fixed[1]
    client_port, agent_ports = fixed[2], fixed[3:]
    for what, value in (("port", gcs_port), ("dashboard_port", dash_port)):
        if not port_is_free(value):
            raise LocalClusterError(f"{what} {value} is already in use")

    token_file = root / TOKEN_FILE
    write_token(token_file)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    temp_base = make_temp_base(root)
    cluster = LocalCluster(
        head_address=f"{node_ip}:{gcs_port}",
        dashboard_url=f"http://{DASHBOARD_HOST}:{dash_port}",
        temp_dir=temp_base,
        token_file=token_file,
        pids=[],
        root=root,
        node_ip=node_ip,
        nodes=nodes,
        node_args=shared_node_args(node_ip, cpus_per_node, gpus_per_node, memory, store),
    )
    env = node_env(token_file)
    node_logs = [logs / "node-0.log"]
    node_logs[0].write_bytes(b"")
    deadline = time.monotonic() + timeout
    try:
        head = ray_start(
            [
                "--head",
                "--port",
                str(gcs_port),
                "--dashboard-host",
                DASHBOARD_HOST,
                "--dashboard-port",
                str(dash_port),
                "--ray-client-server-port",
                str(client_port),
                "--dashboard-agent-listen-port",
                str(agent_ports[0]),
                "--temp-dir",
                str(temp_base / "n0"),
                *cluster.node_args,
            ],
            env=env,
            log=node_logs[0],
        )
        cluster.pids.append(head.pid)
        write_state(cluster)  # from here on `ipt-ray cluster down` can clean up
        procs = [head]
        wait_until(
            lambda: tcp_open(node_ip, gcs_port),
            deadline,
            procs,
            node_logs,
            what=f"the head's GCS on {cluster.head_address}",
        )
        for i in range(1, nodes):
            proc, log = start_worker_node(cluster, i, agent_ports[i], env)
            cluster.pids.append(proc.pid)
            procs.append(proc)
            node_logs.append(log)
        write_state(cluster)

        def all_registered() -> bool:
            count, _ = ray_status(cluster, timeout=max(5.0, deadline - time.monotonic()))
            return count == nodes

        wait_until(
            all_registered,
            deadline,
            procs,
            node_logs,
            what=f"{nodes} nodes to register with the head",
        )
        wait_until(
            lambda: http_answers(cluster.dashboard_url + "/api/version"),
            deadline,
            procs,
            node_logs,
            what=f"the dashboard at {cluster.dashboard_url}",
        )
    except BaseException:
        # Keep Ray's session logs when they sit under root; don't litter /tmp otherwise.
        stop_local_cluster(cluster, remove_temp_dir=not temp_base.is_relative_to(root))
        raise
    return cluster


def add_worker_node(cluster: LocalCluster, *, timeout: float = 90.0) -> int:
    """Start one more worker node for ``cluster`` (the replacement of a lost one, say) with the
    options its nodes were started with, and wait until it has registered with the head.

    Leaders that are no longer running are dropped from ``cluster.pids`` first, so afterwards
    ``cluster.pids`` and ``cluster.nodes`` describe the live nodes (the new one last); the state
    file is rewritten. The node gets a temp dir and log of its own (``n<i>``, ``node-<i>.log``,
    ``i`` never used before under this cluster).

    Returns:
        The pid of the new node's ``ray start --block`` (its process-group leader).

    Raises:
        LocalClusterError: the head is gone, the cluster predates ``node_args``, or the node
            exited or did not register within ``timeout`` seconds (it is stopped then).
    """
    table = ps_table()
    alive = owned_leaders(cluster, table)
    if not cluster.pids or cluster.pids[0] not in alive:
        raise LocalClusterError(f"the head of the cluster at {cluster.head_address} is not running")
    if not cluster.node_args:
        raise LocalClusterError("the cluster's state has no node options: restart it")
    index = 1
    while (cluster.temp_dir / f"n{index}").exists() or (
        cluster.root / "logs" / f"node-{index}.log"
    ).exists():
        index += 1
    (agent_port,) = pick_ports(1)
    proc, log = start_worker_node(cluster, index, agent_port, node_env(cluster.token_file))
    cluster.pids = [pid for pid in cluster.pids if pid in alive] + [proc.pid]
    cluster.nodes = len(cluster.pids)
    write_state(cluster)
    try:
        wait_until(
            lambda: "Ray runtime started." in log.read_text(errors="replace"),
            time.monotonic() + timeout,
            [proc],
            [log],
            what=f"node {index} to register with the head",
        )
    except BaseException:
        doomed = {proc.pid} | descendants([proc.pid], ps_table())
        signal_groups([proc.pid], signal.SIGTERM)  # `ray start --block` stops its node
        for pid in wait_gone(doomed, 10.0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        cluster.pids.remove(proc.pid)
        cluster.nodes = len(cluster.pids)
        write_state(cluster)
        raise
    return proc.pid


def stop_local_cluster(
    target: LocalCluster | str | Path, *, timeout: float = 20.0, remove_temp_dir: bool = True
) -> None:
    """Stop every process of a local cluster and remove its state file; a no-op if none.

    Worker nodes get SIGTERM before the head (each ``ray start --block`` then stops its own
    node's processes); whatever is left after ``timeout`` seconds, including Ray worker
    processes that sit in process groups of their own, gets SIGKILL. Only processes whose
    ``ray start`` command line names this cluster's temp dir are touched, so a recycled pid
    is left alone.

    Args:
        target: the cluster, its state file, or the ``root`` directory holding ``cluster.json``.
        timeout: seconds to wait for a clean exit before SIGKILL.
        remove_temp_dir: also delete the nodes' Ray temp dirs (session logs); the ``ray start``
            logs under ``<root>/logs`` stay.

    Raises:
        LocalClusterError: the state file exists but cannot be read, or processes survived
            SIGKILL.
    """
    cluster = as_cluster(target)
    if cluster is None:
        return
    procs = cluster_processes(cluster)
    table = ps_table()
    leaders = owned_leaders(cluster, table)
    for pid in reversed(leaders):  # workers first, then the head
        signal_groups([pid], signal.SIGTERM)
        time.sleep(0.1)
    left = wait_gone(procs, timeout)
    if left or cluster_processes(cluster):
        signal_groups(leaders, signal.SIGKILL)
        for pid in left | cluster_processes(cluster):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        left = wait_gone(left | procs, 5.0)
    for pid in cluster.pids:
        child = CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
    if left:
        raise LocalClusterError(f"processes {sorted(left)} of the local cluster survived SIGKILL")
    with contextlib.suppress(FileNotFoundError):
        cluster.state_file.unlink()
    if remove_temp_dir:
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def local_cluster_status(
    target: LocalCluster | str | Path, *, ask_ray: bool = True, timeout: float = 30.0
) -> LocalClusterStatus:
    """Which nodes of a local cluster run, and what ``ray status`` (with the token) says.

    Args:
        target: the cluster, its state file, or the ``root`` directory holding ``cluster.json``.
        ask_ray: also run ``ray status`` (about 2 s); otherwise only the processes are checked.
        timeout: seconds ``ray status`` may take.
    """
    cluster = as_cluster(target)
    if cluster is None:
        return LocalClusterStatus(None, [], None, "")
    leaders = owned_leaders(cluster, ps_table())
    alive = [pid for pid in leaders if pid in still_running(leaders)]
    if not ask_ray or not alive:
        return LocalClusterStatus(cluster, alive, None if alive else 0, "")
    count, text = ray_status(cluster, timeout=timeout)
    return LocalClusterStatus(cluster, alive, count, text)


__all__ = [
    "add_worker_node",
    "local_cluster_status",
    "start_local_cluster",
    "stop_local_cluster",
]
