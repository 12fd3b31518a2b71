"""Checks that run before a search starts any Ray or MLflow work.

Each raises :class:`~ipt_ray.errors.UserError` with one line naming the problem, so that bad
input never leaves a stray experiment, run or results folder behind.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ipt_ray.errors import ConfigError, UserError, did_you_mean
from ipt_ray.tracking.store import sqlite_path, store_dir

#: Below this much free space a storage path is refused up front (checkpoints of a search).
MIN_FREE_BYTES = 200 * 1024 * 1024

#: The first bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


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


def check_tracking_uri(uri: str, *, timeout: float = 5.0) -> None:
    """An HTTP tracking server must answer ``/health``; a SQLite store's folder be writable."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read(64)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return  # a server with auth on: reachable; credentials come from MLFLOW_*
            raise UserError(
                f"MLflow tracking server {uri} answered {exc.code} on /health"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"cannot reach the MLflow tracking server {uri}: {reason}") from None
    elif parsed.scheme == "sqlite":
        path, folder = sqlite_path(uri), store_dir(uri)
        if path is not None and folder is not None:  # not an in-memory store
            if path.exists():
                check_sqlite_file(path)
            # The folder the search writes into: the store, and its artifacts and Ray
            # results unless they are placed elsewhere.
            check_writable_dir(folder, "MLflow store folder")
    elif parsed.scheme in ("", "file") and not uri.startswith("databricks"):
        raise UserError(
            f"tracking URI {uri!r}: MLflow 3 refuses file stores; use sqlite:///PATH/mlflow.db "
            "or http://HOST:PORT"
        )


def check_writable_dir(path: Path, what: str, *, min_free: int = 0) -> None:
    """Prove ``path`` writable (and with ``min_free`` bytes free) without creating it.

    A folder that does not exist yet is judged by the nearest existing folder above it, where
    it would be created: a command refused after this check leaves no empty folder behind.
    """
    path = path.expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{what} {path} is not a folder: {existing} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ipt-ray-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    if min_free:
        free = shutil.disk_usage(existing).free
        if free < min_free:
            raise UserError(
                f"{what} {path} has only {free // 2**20} MiB free; a search needs at least "
                f"{min_free // 2**20} MiB for checkpoints"
            )


def check_storage(storage: str) -> None:
    """A local storage path must be writable with room for checkpoints (URIs pass through)."""
    if "://" in storage:
        return
    check_writable_dir(Path(storage), "storage", min_free=MIN_FREE_BYTES)


def check_sqlite_file(path: Path) -> None:
    """An existing MLflow store file must be an SQLite database (an empty file counts as one)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except IsADirectoryError:
        raise UserError(f"MLflow store {path} is a folder, not an SQLite database file") from None
    except OSError as exc:
        raise UserError(f"MLflow store {path} cannot be read: {exc.strerror or exc}") from None
    if head and head != SQLITE_MAGIC:
        raise UserError(
            f"MLflow store {path} is not an SQLite database; allowed: sqlite:///PATH to an "
            "MLflow store (a new path creates one) or http://HOST:PORT"
        )


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
