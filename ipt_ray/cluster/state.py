"""A local cluster's description and its state file (what ``ipt-ray cluster down`` reads).

Needs: nothing but the standard library. Provides: :class:`LocalCluster` (addresses, token
file, process-group leaders, node options), :class:`LocalClusterStatus`, and
:func:`write_state` / :func:`read_state` for ``<root>/cluster.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ipt_ray.errors import UserError

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

_STATE_VERSION = 1


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


def as_cluster(target: LocalCluster | str | Path) -> LocalCluster | None:
    """The cluster itself, or the one a state file (or a root holding one) describes; None if
    there is no state file."""
    if isinstance(target, LocalCluster):
        return target
    path = Path(target)
    state = path / STATE_FILE if path.is_dir() else path
    return read_state(state) if state.exists() else None


__all__ = [
    "DASHBOARD_HOST",
    "DEFAULT_NODE_IP",
    "DEFAULT_ROOT",
    "STATE_FILE",
    "TOKEN_FILE",
    "LocalCluster",
    "LocalClusterError",
    "LocalClusterStatus",
    "as_cluster",
    "read_state",
    "write_state",
]
