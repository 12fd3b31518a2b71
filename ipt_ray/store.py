"""Where a search's records live: the default MLflow store and how to browse it.

No Ray and no MLflow imports here: browsing (``ipt-ray best``, ``export``, ``ui``) and the
search share these defaults without paying for either.
"""

from __future__ import annotations

import re
from pathlib import Path

RUNS_DIR = "ipt-ray-runs"
"""Folder of the current directory that holds the default MLflow store and Ray results."""


def local_tracking_uri(root: str | Path) -> str:
    """``sqlite:///<abs root>/mlflow.db``: the default tracking store under ``root``."""
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def default_tracking_uri() -> str:
    """The store a search without ``--tracking-uri`` uses: ``./ipt-ray-runs/mlflow.db``."""
    return local_tracking_uri(Path.cwd() / RUNS_DIR)


def is_local_uri(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine (sqlite or another database file)."""
    return uri.startswith("sqlite:") or "://" not in uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def ui_command(tracking_uri: str) -> str:
    """How to look at the runs: ``ipt-ray ui`` for a local store, the server's URL otherwise."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def experiment_artifact_location(root: str | Path, experiment_name: str) -> str:
    """``file://<abs root>/<experiment name, made path-safe>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("._") or "search"
    return (Path(root).resolve() / safe).as_uri()
