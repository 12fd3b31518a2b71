"""Starting a local cluster's nodes (``ray start --block``) and asking Ray about them.

Needs: Ray's command line (run as ``python -m ray.scripts.scripts``, so this module imports no
Ray). Provides: the environment, token, temp dirs and options a node starts with; one
worker node's start; probes (TCP, HTTP, ``ray status``) and :func:`wait_until`, which fails
early when a node exits. Why each setting is what it is: :mod:`ipt_ray.cluster.local`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from ipt_ray.cluster.processes import CHILDREN, log_tail
from ipt_ray.cluster.state import LocalCluster, LocalClusterError

# A Unix socket path holds at most 107 bytes; Ray puts its sockets at
# <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/<name> (~70 bytes after <temp-dir>).
_MAX_TEMP_DIR_CHARS = 36


def node_env(token_file: Path | None) -> dict[str, str]:
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


def write_token(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    os.chmod(path, 0o600)


def make_temp_base(root: Path) -> Path:
    """A fresh, short directory for the nodes' Ray temp dirs (``<base>/n<i>``)."""
    candidate = root / "ray"
    if len(str(candidate / "n00")) <= _MAX_TEMP_DIR_CHARS:
        if candidate.exists():
            shutil.rmtree(candidate, ignore_errors=True)
        candidate.mkdir(parents=True)
        return candidate
    short_parent = "/tmp" if Path("/tmp").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="iptr-", dir=short_parent))


def ray_start(args: list[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
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
    CHILDREN[proc.pid] = proc
    return proc


def shared_node_args(node_ip: str, cpus: int, gpus: int, memory: int, store: int) -> list[str]:
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


def start_worker_node(
    cluster: LocalCluster, index: int, agent_port: int, env: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """``ray start --address <head>`` for node ``index`` (temp dir ``n<index>``, log
    ``logs/node-<index>.log``); returns the process and its log."""
    log = cluster.root / "logs" / f"node-{index}.log"
    log.write_bytes(b"")
    proc = ray_start(
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


def tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def http_answers(url: str) -> bool:
    """True once anything answers HTTP at ``url`` (401 included: auth is on)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def wait_until(
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
                    f"for {what}; its log {logs[i]} ends with:\n{log_tail(logs[i], 8)}"
                )
        if check():
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {log}\n{log_tail(log, 4)}" for log in logs)
            raise LocalClusterError(f"timed out waiting for {what}; node logs:\n{tails}")
        time.sleep(0.5)


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


def ray_status(cluster: LocalCluster, timeout: float = 30.0) -> tuple[int | None, str]:
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


__all__ = [
    "http_answers",
    "make_temp_base",
    "node_env",
    "ray_start",
    "ray_status",
    "shared_node_args",
    "start_worker_node",
    "tcp_open",
    "wait_until",
    "write_token",
]
