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
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ipt_ray.errors import UserError

__all__ = [
    "DEFAULT_NODE_IP",
    "DEFAULT_ROOT",
    "STATE_FILE",
    "LocalCluster",
    "LocalClusterError",
    "LocalClusterStatus",
    "add_worker_node",
    "cluster_processes",
    "local_cluster_status",
    "parse_bytes",
    "read_state",
    "start_local_cluster",
    "stop_local_cluster",
    "write_state",
]

DEFAULT_ROOT = Path("ipt-ray-runs") / "cluster"
"""Where ``ipt-ray cluster up`` keeps the token, the state file and the nodes' logs."""

STATE_FILE = "cluster.json"
"""Name of the state file inside ``root``."""

TOKEN_FILE = "auth_token"
"""Name of the token file inside ``root`` (mode 0600)."""

# Ray rewrites 127.0.0.1 / localhost given to --node-ip-address into the routable address
# (ray._private.services.resolve_ip_for_localhost); any other loopback address is kept.
# macOS only configures 127.0.0.1 (and Ray supports multi-node there only experimentally).
DEFAULT_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else "127.0.0.1"

DASHBOARD_HOST = "127.0.0.1"

# A Unix socket path holds at most 107 bytes; Ray puts its sockets at
# <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/<name> (~70 bytes after <temp-dir>).
_MAX_TEMP_DIR_CHARS = 36

# Fixed ports come from here: above Ray's default worker-port range (10002-19999) and below
# the kernel's ephemeral range, from which every port-0 bind of Ray's processes is served.
_PORT_RANGE = (20000, 32767)

_STATE_VERSION = 1
_GiB = 1 << 30

# Ray processes we started in this interpreter, kept so that they can be reaped (a stopped
# child stays a zombie, i.e. "alive" to kill(pid, 0), until its parent waits for it).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalClusterError(UserError):
    """The local cluster could not be started, reached or stopped (the message says why)."""


@dataclass
class LocalCluster:
    """A running local multi-node Ray cluster (what ``write_state`` stores).

    Attributes:
        head_address: GCS address ``"<node ip>:<port>"`` for ``ray.init(address=...)``,
            ``ray status --address`` and ``ray start --address``.
        dashboard_url: ``"http://127.0.0.1:<port>"`` for ``ray job submit --address`` and a
            browser (which asks for the token once).
        temp_dir: parent of the nodes' Ray temporary directories (``n0`` = head, ``n1``...).
        token_file: file holding the cluster's token, or None if authentication is off.
        pids: process-group leaders (one ``ray start --block`` per node, head first).
        root: directory of the state file, the token file and ``logs/node-<i>.log``.
        node_ip: the loopback address every node advertises.
        nodes: number of nodes (head included).
        node_args: the ``ray start`` options every node shares (CPUs, GPUs, memory, object
            store, address, worker ports), reused by :func:`add_worker_node`.
    """

    head_address: str
    dashboard_url: str
    temp_dir: Path
    token_file: Path | None
    pids: list[int]
    root: Path = field(default_factory=Path)
    node_ip: str = DEFAULT_NODE_IP
    nodes: int = 0
    node_args: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment variables a client needs (a driver, ``ray status``, ``ray job``).

        ``RAY_ADDRESS`` lets ``ray.init()`` and ``--address auto`` find the GCS,
        ``RAY_API_SERVER_ADDRESS`` lets ``ray job`` find the dashboard, and ``RAY_AUTH_MODE`` +
        ``RAY_AUTH_TOKEN_PATH`` carry the token by reference. A ``RAY_AUTH_TOKEN`` already in the
        environment would override the file: :meth:`client_env` removes it,
        :meth:`shell_exports` unsets it.
        """
        values = {"RAY_ADDRESS": self.head_address, "RAY_API_SERVER_ADDRESS": self.dashboard_url}
        if self.token_file is not None:
            values["RAY_AUTH_MODE"] = "token"
            values["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        return values

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A full environment for a client subprocess: ``base`` (default ``os.environ``) with
        :meth:`env` applied and ``RAY_AUTH_TOKEN`` removed."""
        merged = dict(os.environ if base is None else base)
        merged.pop("RAY_AUTH_TOKEN", None)
        merged.update(self.env())
        return merged

    def shell_exports(self) -> str:
        """POSIX shell lines that point a shell at this cluster (no secret in them)."""
        lines = ["unset RAY_AUTH_TOKEN"]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env().items()]
        return "\n".join(lines)

    @property
    def state_file(self) -> Path:
        """``<root>/cluster.json``."""
        return self.root / STATE_FILE


@dataclass
class LocalClusterStatus:
    """What ``local_cluster_status`` found.

    Attributes:
        cluster: the cluster from the state file, or None if there is none.
        alive_pids: process-group leaders still running.
        nodes_alive: nodes the GCS reports active (None if it could not be asked).
        ray_status: output of ``ray status`` (or its error), empty if not asked.
    """

    cluster: LocalCluster | None
    alive_pids: list[int]
    nodes_alive: int | None
    ray_status: str

    @property
    def running(self) -> bool:
        """True if every node the cluster was started with is alive and registered."""
        return (
            self.cluster is not None
            and len(self.alive_pids) == len(self.cluster.pids)
            and self.nodes_alive == self.cluster.nodes
        )


# --------------------------------------------------------------------------- sizes and ports


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_bytes(value: str | int, *, what: str = "memory") -> int:
    """``4GB`` (10^9), ``4GiB`` / ``4G`` ... (2^30), ``512MB``, ``1.5GiB`` or an int -> bytes.

    A bare unit letter (``4G``) means the binary unit, as ``docker`` and ``ulimit`` read it.

    Raises:
        LocalClusterError: the text is not a size, or it is not positive.
    """
    if isinstance(value, bool):
        raise LocalClusterError(f"{what} must be a size such as 4GB, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise LocalClusterError(
                f"{what} must be a size such as 4GB, 4GiB, 512MB or a number of bytes, "
                f"got {value!r}"
            )
        number, unit, binary = match.groups()
        power = "kmgt".find(unit.lower()) + 1 if unit else 0
        has_b = str(value).strip().lower().endswith("b")
        base = 1024 if (binary or (unit and not has_b)) else 1000
        size = int(float(number) * base**power)
    if size <= 0:
        raise LocalClusterError(f"{what} must be positive, got {value!r}")
    return size


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    # Ray's GCS and gRPC servers bind every interface, so probe the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _pick_ports(count: int, taken: Iterable[int] = ()) -> list[int]:
    """``count`` distinct free TCP ports from below the ephemeral range (see ``_PORT_RANGE``)."""
    low, high = _PORT_RANGE[0], min(_PORT_RANGE[1], _ephemeral_low() - 1)
    used = set(taken)
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(2000):
        if len(chosen) == count:
            return chosen
        port = rng.randint(low, high)
        if port not in used and _port_is_free(port):
            used.add(port)
            chosen.append(port)
    raise LocalClusterError(f"no free TCP port found between {low} and {high}")


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _Proc:
    ppid: int
    pgid: int
    state: str
    args: str

    @property
    def zombie(self) -> bool:
        return self.state.startswith("Z")


def _ps_table() -> dict[int, _Proc]:
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
    table: dict[int, _Proc] = {}
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4 and all(part.isdigit() for part in parts[:3]):
            args = parts[4] if len(parts) > 4 else ""
            table[int(parts[0])] = _Proc(int(parts[1]), int(parts[2]), parts[3], args)
    return table


def _alive(pids: Iterable[int]) -> set[int]:
    """The subset of ``pids`` still running (zombies count as gone; children of ours that
    ended are reaped here, or they would stay zombies until this process exits)."""
    pids = list(pids)
    for pid in pids:
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(pid, None)
    table = _ps_table()
    return {pid for pid in pids if pid in table and not table[pid].zombie}


def _descendants(roots: Iterable[int], table: Mapping[int, _Proc]) -> set[int]:
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


def _owned_leaders(cluster: LocalCluster, table: Mapping[int, _Proc]) -> list[int]:
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
    table = _ps_table()
    leaders = _owned_leaders(cluster, table)
    if node is not None:
        leaders = [pid for pid in leaders if pid == cluster.pids[node]]
    found = set(leaders) | _descendants(leaders, table)
    found |= {pid for pid, proc in table.items() if proc.pgid in leaders}
    return {pid for pid in found if pid in table and not table[pid].zombie}


def _signal_groups(leaders: Iterable[int], sig: signal.Signals) -> None:
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def _wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; return those still running."""
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while True:
        remaining = _alive(remaining)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.2)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- state file


def write_state(cluster: LocalCluster, path: str | Path | None = None) -> Path:
    """Write ``cluster`` as JSON (default ``<root>/cluster.json``, mode 0600); return the path."""
    target = Path(path) if path is not None else cluster.state_file
    data = asdict(cluster)
    for key in ("temp_dir", "token_file", "root"):
        data[key] = None if data[key] is None else str(Path(data[key]).resolve())
    data["version"] = _STATE_VERSION
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, target)
    return target


def read_state(path: str | Path) -> LocalCluster:
    """Read a state file written by :func:`write_state` (or the ``root`` directory holding one).

    Raises:
        LocalClusterError: no such file, or it is not a state file of this version.
    """
    target = Path(path)
    if target.is_dir():
        target = target / STATE_FILE
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError:
        raise LocalClusterError(f"no local cluster state at {target}") from None
    except (OSError, ValueError) as exc:
        raise LocalClusterError(f"cannot read cluster state {target}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        raise LocalClusterError(f"{target} is not an ipt-ray local cluster state file")
    try:
        return LocalCluster(
            head_address=str(data["head_address"]),
            dashboard_url=str(data["dashboard_url"]),
            temp_dir=Path(data["temp_dir"]),
            token_file=None if data["token_file"] is None else Path(data["token_file"]),
            pids=[int(pid) for pid in data["pids"]],
            root=Path(data["root"]),
            node_ip=str(data["node_ip"]),
            nodes=int(data["nodes"]),
            node_args=[str(arg) for arg in data.get("node_args", [])],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LocalClusterError(f"{target} is missing or has a bad field: {exc}") from None


# --------------------------------------------------------------------------- start


def _node_env(token_file: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    # Our own settings win; a RAY_ADDRESS of another cluster must not leak into `ray start`.
    for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(key, None)
    if token_file is not None:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    # Ray 2.60 drains a node for up to 30 s on SIGTERM (made for Serve on Kubernetes); a local
    # cluster has nothing to drain, and the drain RPC hangs once the head is gone.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Jobs run `python` from the nodes' PATH: make it this interpreter (and its ipt-ray), as a
    # cluster whose image has ipt-ray installed would.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [bin_dir, *[p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]]
    )
    return env


def _write_token(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    os.chmod(path, 0o600)


def _make_temp_base(root: Path) -> Path:
    """A fresh, short directory for the nodes' Ray temp dirs (``<base>/n<i>``)."""
    candidate = root / "ray"
    if len(str(candidate / "n00")) <= _MAX_TEMP_DIR_CHARS:
        if candidate.exists():
            shutil.rmtree(candidate, ignore_errors=True)
        candidate.mkdir(parents=True)
        return candidate
    short_parent = "/tmp" if Path("/tmp").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="iptr-", dir=short_parent))


def _ray_start(args: list[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args]
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # own session => own process group
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _node_args(node_ip: str, cpus: int, gpus: int, memory: int, store: int) -> list[str]:
    """The ``ray start`` options every node of a local cluster shares."""
    return [
        "--node-ip-address",
        node_ip,
        "--num-cpus",
        str(cpus),
        "--num-gpus",
        str(gpus),
        "--memory",
        str(memory),
        "--object-store-memory",
        str(store),
        # Several raylets on one machine must not hand out the same worker ports.
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
        "--disable-usage-stats",
    ]


def _start_worker_node(
    cluster: LocalCluster, index: int, agent_port: int, env: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """``ray start --address <head>`` for node ``index`` (temp dir ``n<index>``, log
    ``logs/node-<index>.log``); returns the process and its log."""
    log = cluster.root / "logs" / f"node-{index}.log"
    log.write_bytes(b"")
    proc = _ray_start(
        [
            "--address",
            cluster.head_address,
            "--dashboard-agent-listen-port",
            str(agent_port),
            "--temp-dir",
            str(cluster.temp_dir / f"n{index}"),
            *cluster.node_args,
        ],
        env=env,
        log=log,
    )
    return proc, log


def _tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _http_answers(url: str) -> bool:
    """True once anything answers HTTP at ``url`` (401 included: auth is on)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _active_nodes(status_text: str) -> int:
    """Count the ``<n> node_<id>`` lines of the ``Active:`` block of ``ray status``."""
    count = 0
    in_active = False
    for line in status_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Active:"):
            in_active = True
            continue
        if in_active:
            match = re.match(r"^(\d+)\s+node_[0-9a-f]+", stripped)
            if match:
                count += int(match.group(1))
            elif stripped.endswith(":") or not stripped:
                break
    return count


def _ray_status(cluster: LocalCluster, timeout: float = 30.0) -> tuple[int | None, str]:
    """(active nodes or None, text) from ``ray status`` run with the cluster's token."""
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "status",
        "--address",
        cluster.head_address,
    ]
    try:
        done = subprocess.run(
            command,
            env=cluster.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"`ray status` did not answer within {timeout:.0f} s"
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return None, text
    return _active_nodes(done.stdout), text


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
    fixed = _pick_ports(3 + nodes, taken=wanted)
    gcs_port = port if port is not None else fixed[0]
    dash_port = dashboard_port if dashboard_port is not None else fixed[1]
    client_port, agent_ports = fixed[2], fixed[3:]
    for what, value in (("port", gcs_port), ("dashboard_port", dash_port)):
        if not _port_is_free(value):
            raise LocalClusterError(f"{what} {value} is already in use")

    token_file = root / TOKEN_FILE
    _write_token(token_file)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    temp_base = _make_temp_base(root)
    cluster = LocalCluster(
        head_address=f"{node_ip}:{gcs_port}",
        dashboard_url=f"http://{DASHBOARD_HOST}:{dash_port}",
        temp_dir=temp_base,
        token_file=token_file,
        pids=[],
        root=root,
        node_ip=node_ip,
        nodes=nodes,
        node_args=_node_args(node_ip, cpus_per_node, gpus_per_node, memory, store),
    )
    env = _node_env(token_file)
    node_logs = [logs / "node-0.log"]
    node_logs[0].write_bytes(b"")
    deadline = time.monotonic() + timeout
    try:
        head = _ray_start(
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
        _wait_until(
            lambda: _tcp_open(node_ip, gcs_port),
            deadline,
            procs,
            node_logs,
            what=f"the head's GCS on {cluster.head_address}",
        )
        for i in range(1, nodes):
            proc, log = _start_worker_node(cluster, i, agent_ports[i], env)
            cluster.pids.append(proc.pid)
            procs.append(proc)
            node_logs.append(log)
        write_state(cluster)

        def all_registered() -> bool:
            count, _ = _ray_status(cluster, timeout=max(5.0, deadline - time.monotonic()))
            return count == nodes

        _wait_until(
            all_registered,
            deadline,
            procs,
            node_logs,
            what=f"{nodes} nodes to register with the head",
        )
        _wait_until(
            lambda: _http_answers(cluster.dashboard_url + "/api/version"),
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
    table = _ps_table()
    alive = _owned_leaders(cluster, table)
    if not cluster.pids or cluster.pids[0] not in alive:
        raise LocalClusterError(f"the head of the cluster at {cluster.head_address} is not running")
    if not cluster.node_args:
        raise LocalClusterError("the cluster's state has no node options: restart it")
    index = 1
    while (cluster.temp_dir / f"n{index}").exists() or (
        cluster.root / "logs" / f"node-{index}.log"
    ).exists():
        index += 1
    (agent_port,) = _pick_ports(1)
    proc, log = _start_worker_node(cluster, index, agent_port, _node_env(cluster.token_file))
    cluster.pids = [pid for pid in cluster.pids if pid in alive] + [proc.pid]
    cluster.nodes = len(cluster.pids)
    write_state(cluster)
    try:
        _wait_until(
            lambda: "Ray runtime started." in log.read_text(errors="replace"),
            time.monotonic() + timeout,
            [proc],
            [log],
            what=f"node {index} to register with the head",
        )
    except BaseException:
        doomed = {proc.pid} | _descendants([proc.pid], _ps_table())
        _signal_groups([proc.pid], signal.SIGTERM)  # `ray start --block` stops its node
        for pid in _wait_gone(doomed, 10.0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        cluster.pids.remove(proc.pid)
        cluster.nodes = len(cluster.pids)
        write_state(cluster)
        raise
    return proc.pid


def _wait_until(
    check: Callable[[], bool],
    deadline: float,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    *,
    what: str,
) -> None:
    """Poll ``check()`` until true; fail early if a node process exits, or at ``deadline``."""
    while True:
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                raise LocalClusterError(
                    f"node {i} (`ray start`) exited with status {proc.returncode} while waiting "
                    f"for {what}; its log {logs[i]} ends with:\n{_log_tail(logs[i], 8)}"
                )
        if check():
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {log}\n{_log_tail(log, 4)}" for log in logs)
            raise LocalClusterError(f"timed out waiting for {what}; node logs:\n{tails}")
        time.sleep(0.5)


# --------------------------------------------------------------------------- stop and status


def _as_cluster(target: LocalCluster | str | Path) -> LocalCluster | None:
    """The cluster itself, or the one a state file (or a root holding one) describes; None if
    there is no state file."""
    if isinstance(target, LocalCluster):
        return target
    path = Path(target)
    state = path / STATE_FILE if path.is_dir() else path
    return read_state(state) if state.exists() else None


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
    cluster = _as_cluster(target)
    if cluster is None:
        return
    procs = cluster_processes(cluster)
    table = _ps_table()
    leaders = _owned_leaders(cluster, table)
    for pid in reversed(leaders):  # workers first, then the head
        _signal_groups([pid], signal.SIGTERM)
        time.sleep(0.1)
    left = _wait_gone(procs, timeout)
    if left or cluster_processes(cluster):
        _signal_groups(leaders, signal.SIGKILL)
        for pid in left | cluster_processes(cluster):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        left = _wait_gone(left | procs, 5.0)
    for pid in cluster.pids:
        child = _CHILDREN.pop(pid, None)
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
    cluster = _as_cluster(target)
    if cluster is None:
        return LocalClusterStatus(None, [], None, "")
    leaders = _owned_leaders(cluster, _ps_table())
    alive = [pid for pid in leaders if pid in _alive(leaders)]
    if not ask_ray or not alive:
        return LocalClusterStatus(cluster, alive, None if alive else 0, "")
    count, text = _ray_status(cluster, timeout=timeout)
    return LocalClusterStatus(cluster, alive, count, text)
