"""Where a search writes (:class:`SearchLocations`): absolute paths and URIs, since trials may
run on other nodes, in other working directories."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ipt_ray.tracking.store import (
    absolute_tracking_uri,
    default_artifact_root,
    default_storage,
    default_tracking_uri,
    experiment_artifact_location,
    store_dir,
)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "search"


def abs_storage(storage: str | Path) -> str:
    text = str(storage)
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class SearchLocations:
    """Where a search writes: absolute paths and URIs (trials may run on other nodes)."""

    tracking_uri: str
    artifact_location: str | None  # of a new MLflow experiment; None: the server's default
    storage_path: str  # Ray Tune's storage (path or URI)
    experiment_dir: str  # <search name>-<timestamp>: Tune's experiment and the parent run
    experiment_path: str  # storage_path/experiment_dir

    @classmethod
    def resolve(
        cls,
        search_name: str,
        *,
        tracking_uri: str | None,
        artifact_root: str | Path | None,
        storage: str | Path | None,
    ) -> SearchLocations:
        """Apply the defaults and make every path absolute; create the store's folder.

        Defaults follow the store (:mod:`ipt_ray.tracking.store`), whichever folder this runs in:

        - ``sqlite:///DIR/mlflow.db``: artifacts in ``DIR/mlartifacts``, Ray results in
          ``DIR/ray`` (a relative DIR counts from the current folder and is made absolute);
        - no tracking URI: the store ``./ipt-ray-runs/mlflow.db``, so ``./ipt-ray-runs``
          holds all three, as before;
        - a tracking server: the server keeps the artifacts; Ray results in
          ``./ipt-ray-runs/ray`` (the server has no folder here to put them beside).

        What is given wins: an explicit ``artifact_root`` or ``storage`` replaces its default
        only. ``storage`` alone does not move the store: without a tracking URI it stays
        ``./ipt-ray-runs/mlflow.db`` with its artifacts in ``./ipt-ray-runs/mlartifacts``.

        Raises:
            OSError: the store's folder cannot be created.
        """
        tracking_uri = absolute_tracking_uri(tracking_uri or default_tracking_uri())
        folder = store_dir(tracking_uri)
        if folder is not None:  # SQLite creates the database file, not its folder
            folder.mkdir(parents=True, exist_ok=True)
        if artifact_root is None:
            artifact_root = default_artifact_root(tracking_uri)
        artifact_location = None
        if artifact_root is not None and "://" in str(artifact_root):
            artifact_location = f"{str(artifact_root).rstrip('/')}/{safe_name(search_name)}"
        elif artifact_root is not None:
            artifact_location = experiment_artifact_location(artifact_root, search_name)
        storage_path = abs_storage(
            storage if storage is not None else default_storage(tracking_uri)
        )
        experiment_dir = f"{safe_name(search_name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        return cls(
            tracking_uri,
            artifact_location,
            storage_path,
            experiment_dir,
            f"{storage_path}/{experiment_dir}",
        )
