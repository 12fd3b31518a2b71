"""Where a search's records live: the default MLflow store and how to browse it.

No Ray and no MLflow imports here: browsing (``ipt-ray best``, ``export``, ``ui``) and the
search share these defaults without paying for either.

One rule places everything a search writes by default (:func:`runs_dir`): beside its MLflow
store. ``sqlite:///DIR/mlflow.db`` keeps its artifacts in ``DIR/mlartifacts`` and the Ray
results in ``DIR/ray``, whichever folder a command runs in; without ``--tracking-uri`` the
store is ``./ipt-ray-runs/mlflow.db``, so that ``DIR`` is ``./ipt-ray-runs``. A store without
a folder on this machine (a tracking server) keeps its own artifacts, and Ray results go to
``./ipt-ray-runs/ray``. An explicit artifact root or storage always wins over these defaults.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ipt_ray.errors import UserError
from ipt_ray.fs import check_writable_dir

RUNS_DIR = "ipt-ray-runs"
"""Folder of the current directory that holds the default MLflow store and Ray results."""


def local_tracking_uri(root: str | Path) -> str:
    """``sqlite:///<abs root>/mlflow.db``: the default tracking store under ``root``."""
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def default_runs_dir() -> Path:
    """``<abs cwd>/ipt-ray-runs``: the folder of the store a command without
    ``--tracking-uri`` uses."""
    return Path.cwd().resolve() / RUNS_DIR


def default_tracking_uri() -> str:
    """The store a search without ``--tracking-uri`` uses: ``./ipt-ray-runs/mlflow.db``."""
    return local_tracking_uri(default_runs_dir())


def is_local_uri(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine (sqlite or another database file)."""
    return uri.startswith("sqlite:") or "://" not in uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_dir(tracking_uri: str | None) -> Path | None:
    """The folder of an MLflow store on this machine, absolute; None when it has none.

    None as ``tracking_uri`` (no ``--tracking-uri``) is the default store, whose folder is
    ``./ipt-ray-runs``. ``sqlite:///PATH`` is the folder of PATH (a relative PATH counts from
    the current folder, as SQLite reads it). A tracking server, another database server or an
    in-memory SQLite store has no folder here: None. Creates nothing, raises nothing.
    """
    if tracking_uri is None:
        return default_runs_dir()
    path = sqlite_path(tracking_uri)
    if path is None or path.name in ("", ":memory:"):
        return None
    # Resolve the folder, not the file: a symlinked database stays "here", where the user
    # pointed, and its neighbours with it.
    return (Path.cwd() / path.parent).resolve()


def runs_dir(tracking_uri: str | None) -> Path:
    """Where a search keeps its files by default: the store's folder (:func:`store_dir`),
    or ``./ipt-ray-runs`` for a store without one (a tracking server). Absolute."""
    return store_dir(tracking_uri) or default_runs_dir()


def default_artifact_root(tracking_uri: str | None) -> Path | None:
    """``<runs_dir>/mlartifacts``: the artifact root of a new experiment in a store on this
    machine; None for a server, which serves its own artifacts."""
    if tracking_uri is not None and not is_local_uri(tracking_uri):
        return None
    return runs_dir(tracking_uri) / "mlartifacts"


def default_storage(tracking_uri: str | None) -> Path:
    """``<runs_dir>/ray``: Ray results and checkpoints of a search without ``--storage``."""
    return runs_dir(tracking_uri) / "ray"


def absolute_tracking_uri(tracking_uri: str) -> str:
    """``tracking_uri`` with a relative SQLite path made absolute (against the current
    folder, as SQLite reads it), so that the URI names the same store from any folder or
    node; any other URI unchanged. Creates nothing, raises nothing."""
    path = sqlite_path(tracking_uri)
    folder = store_dir(tracking_uri)
    if path is None or folder is None or path.is_absolute():
        return tracking_uri
    return f"sqlite:///{(folder / path.name).as_posix()}"


def ui_command(tracking_uri: str) -> str:
    """How to look at the runs: ``ipt-ray ui`` for a local store, the server's URL otherwise."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def experiment_page(experiment_id: str) -> str:
    """The MLflow UI's page of an experiment in its training layout, relative to the UI's
    root URL. MLflow 3.17's UI takes the layout from its GenAI / Model training switch (kept
    in the browser, GenAI at first), which this URL sets, not from the experiment's
    ``mlflow.experimentKind`` tag that earlier 3.x UIs read."""
    return f"#/experiments/{experiment_id}?workflowType=machine_learning"


def experiment_artifact_location(root: str | Path, experiment_name: str) -> str:
    """``file://<abs root>/<experiment name, made path-safe>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("._") or "search"
    return (Path(root).resolve() / safe).as_uri()


#: The first bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


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
