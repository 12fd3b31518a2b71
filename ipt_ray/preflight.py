"""Checks that run before a search starts any Ray or MLflow work.

Each raises :class:`~ipt_ray.errors.UserError` with one line naming the problem, so that bad
input never leaves a stray experiment, run or results folder behind.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ipt_ray.errors import ConfigError, UserError, did_you_mean

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
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if path is not None:
            check_writable_dir(path.parent, "MLflow store folder")
    elif parsed.scheme in ("", "file") and not uri.startswith("databricks"):
        raise UserError(
            f"tracking URI {uri!r}: MLflow 3 refuses file stores; use sqlite:///PATH/mlflow.db "
            "or http://HOST:PORT"
        )


def check_writable_dir(path: Path, what: str, *, min_free: int = 0) -> None:
    """Create ``path`` if needed and prove it writable (and with ``min_free`` bytes free)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ipt-ray-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    if min_free:
        free = shutil.disk_usage(path).free
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


def is_dashboard_address(address: str | None) -> bool:
    """``http(s)://HEAD:8265``: submit the search as a Ray Job (else: run the driver here)."""
    return bool(address) and urlparse(address or "").scheme in ("http", "https")
