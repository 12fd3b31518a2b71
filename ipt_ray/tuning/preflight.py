"""Checks that run before a search starts any Ray or MLflow work: the search's checklist (the
store's own checks live with the store, :mod:`ipt_ray.tracking.store`).

Each raises :class:`~ipt_ray.errors.UserError` with one line naming the problem, so that bad
input never leaves a stray experiment, run or results folder behind.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from ipt_ray.errors import ConfigError, UserError, did_you_mean
from ipt_ray.fs import check_writable_dir
from ipt_ray.tracking.store import check_sqlite_file, check_tracking_uri

#: Below this much free space a storage path is refused up front (checkpoints of a search).
MIN_FREE_BYTES = 200 * 1024 * 1024


def check_task(spec: str) -> None:
    """A catalog name must exist; a path must exist. (Reading it happens in the trials.)"""
    from ipt_ray.data import canonical_task_name, task_names

    if canonical_task_name(spec) is not None or Path(spec).expanduser().exists():
        return
    if "/" in spec or "." in Path(spec).name:
        raise UserError(f"task file {spec!r} does not exist")
    raise ConfigError(
        f"unknown task {spec!r}{did_you_mean(spec, task_names())}; allowed: a catalog name "
        f"({', '.join(task_names())}) or a CSV/JSONL/Parquet path"
    )


def check_storage(storage: str) -> None:
    """A local storage path must be writable with room for checkpoints (URIs pass through)."""
    if "://" in storage:
        return
    check_writable_dir(Path(storage), "storage", min_free=MIN_FREE_BYTES)


def check_ray_address(address: str | None, *, timeout: float = 5.0) -> None:
    """A cluster address ``HOST:PORT`` or ``ray://HOST:PORT`` must accept a TCP connection.

    ``ray.init`` retries an unreachable GCS for minutes; this answers in seconds. None, ``auto``,
    ``local`` and dashboard URLs (checked by the job client) pass through.
    """
    if not address or address in ("auto", "local") or is_dashboard_address(address):
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:  # a port that is not a number
        raise UserError(
            f"Ray address {address!r} is not HOST:PORT; allowed: auto, HOST:PORT (the GCS), "
            "ray://HOST:PORT or http://HEAD:8265 (the dashboard)"
        ) from None
    if not host or port is None:
        return  # Ray's own defaults apply (e.g. ray://HOST means port 10001)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}; start one "
            "(ray start --head, ipt-ray cluster up) or pass its dashboard as http://HEAD:8265"
        ) from None


def is_dashboard_address(address: str | None) -> bool:
    """``http(s)://HEAD:8265``: submit the search as a Ray Job (else: run the driver here)."""
    return bool(address) and urlparse(address or "").scheme in ("http", "https")


__all__ = [
    "MIN_FREE_BYTES",
    "check_ray_address",
    "check_sqlite_file",
    "check_storage",
    "check_task",
    "check_tracking_uri",
    "check_writable_dir",
    "is_dashboard_address",
]
