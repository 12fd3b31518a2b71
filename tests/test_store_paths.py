"""One place per store (issue "Reliability", item 6): what a search writes by default lies
beside its MLflow store, whichever folder the command runs in.

The rule lives in :mod:`ipt_ray.tracking.store` (:func:`~ipt_ray.tracking.store.store_dir`,
:func:`~ipt_ray.tracking.store.runs_dir`); the search
(:class:`ipt_ray.tuning.locations.SearchLocations`), the preflight checks, ``ipt-ray ui`` and
the cluster submission all go through it. The unit tests start no Ray; the last test runs a real
search with the CLI from an empty folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ipt_ray.errors import UserError
from ipt_ray.testing import FAST_RAY_REPORTS, run_cli
from ipt_ray.tracking.store import (
    RUNS_DIR,
    absolute_tracking_uri,
    default_artifact_root,
    default_storage,
    default_tracking_uri,
    runs_dir,
    store_dir,
)

SERVER = "http://127.0.0.1:5000"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, apart from the store's."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


# -- the rule ----------------------------------------------------------------------------------
def test_the_folder_of_a_sqlite_store_is_its_database_folder(cwd: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert store_dir(sqlite(other)) == other
    assert runs_dir(sqlite(other)) == other
    assert default_artifact_root(sqlite(other)) == other / "mlartifacts"
    assert default_storage(sqlite(other)) == other / "ray"
    assert not other.exists(), "the rule creates nothing"


def test_without_a_tracking_uri_everything_stays_in_ipt_ray_runs(cwd: Path) -> None:
    runs = cwd / RUNS_DIR
    assert store_dir(None) == runs == store_dir(default_tracking_uri())
    assert default_tracking_uri() == f"sqlite:///{runs / 'mlflow.db'}"
    assert default_artifact_root(None) == runs / "mlartifacts"
    assert default_storage(None) == runs / "ray"
    assert list(cwd.iterdir()) == []


def test_a_relative_sqlite_path_counts_from_the_current_folder(cwd: Path) -> None:
    assert store_dir("sqlite:///sub/mlflow.db") == cwd / "sub"
    assert store_dir("sqlite:///mlflow.db") == cwd
    assert absolute_tracking_uri("sqlite:///sub/mlflow.db") == sqlite(cwd / "sub")


def test_absolute_and_remote_uris_are_kept_as_given(tmp_path: Path) -> None:
    for uri in (sqlite(tmp_path), SERVER, "postgresql://u@db/mlflow", "sqlite://"):
        assert absolute_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri", [SERVER, "https://mlflow.example", "postgresql://u@db/mlflow"])
def test_a_store_without_a_folder_here_keeps_its_artifacts_and_ray_goes_to_ipt_ray_runs(
    cwd: Path, uri: str
) -> None:
    assert store_dir(uri) is None
    assert default_storage(uri) == cwd / RUNS_DIR / "ray"
    if uri.startswith("http"):
        assert default_artifact_root(uri) is None  # the server's


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_has_no_folder(cwd: Path, uri: str) -> None:
    assert store_dir(uri) is None
    assert default_artifact_root(uri) == cwd / RUNS_DIR / "mlartifacts"
    assert default_storage(uri) == cwd / RUNS_DIR / "ray"


# -- the search's locations ----------------------------------------------------------------------
def resolve(**kwargs: Any) -> Any:
    from ipt_ray.tuning.locations import SearchLocations

    given = {"tracking_uri": None, "artifact_root": None, "storage": None, **kwargs}
    return SearchLocations.resolve("my search", **given)


def test_a_search_with_a_sqlite_store_elsewhere_writes_beside_it(cwd: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    where = resolve(tracking_uri=sqlite(other))
    assert where.tracking_uri == sqlite(other)
    assert where.artifact_location == (other / "mlartifacts" / "my_search").as_uri()
    assert where.storage_path == str(other / "ray")
    assert where.experiment_path.startswith(f"{other / 'ray'}/my_search-")
    assert other.is_dir(), "the store's folder is made for SQLite"
    assert list(cwd.iterdir()) == []


def test_a_relative_sqlite_store_is_resolved_once_for_every_location(cwd: Path) -> None:
    where = resolve(tracking_uri="sqlite:///sub/mlflow.db")
    assert where.tracking_uri == sqlite(cwd / "sub")
    assert where.storage_path == str(cwd / "sub" / "ray")
    assert where.artifact_location == (cwd / "sub" / "mlartifacts" / "my_search").as_uri()


def test_a_search_without_a_tracking_uri_keeps_ipt_ray_runs(cwd: Path) -> None:
    runs = cwd / RUNS_DIR
    where = resolve()
    assert where.tracking_uri == sqlite(runs)
    assert where.artifact_location == (runs / "mlartifacts" / "my_search").as_uri()
    assert where.storage_path == str(runs / "ray")


def test_what_is_given_wins_and_storage_alone_does_not_move_the_store(
    cwd: Path, tmp_path: Path
) -> None:
    other, elsewhere = tmp_path / "other", tmp_path / "elsewhere"
    where = resolve(tracking_uri=sqlite(other), storage=elsewhere / "ray")
    assert where.storage_path == str(elsewhere / "ray")
    assert where.artifact_location == (other / "mlartifacts" / "my_search").as_uri()
    where = resolve(tracking_uri=sqlite(other), artifact_root=elsewhere / "art")
    assert where.artifact_location == (elsewhere / "art" / "my_search").as_uri()
    assert where.storage_path == str(other / "ray")
    where = resolve(storage=elsewhere / "ray")
    assert where.tracking_uri == sqlite(cwd / RUNS_DIR)
    assert where.artifact_location == (cwd / RUNS_DIR / "mlartifacts" / "my_search").as_uri()
    assert where.storage_path == str(elsewhere / "ray")


def test_a_search_tracked_on_a_server_uses_its_artifacts(cwd: Path) -> None:
    where = resolve(tracking_uri=SERVER)
    assert where.tracking_uri == SERVER
    assert where.artifact_location is None
    assert where.storage_path == str(cwd / RUNS_DIR / "ray")
    assert list(cwd.iterdir()) == []


# -- the commands around the search ------------------------------------------------------------
def test_preflight_checks_the_stores_folder(cwd: Path, tmp_path: Path) -> None:
    from ipt_ray.tracking.store import check_tracking_uri

    check_tracking_uri("sqlite://")  # in memory: no folder to check
    check_tracking_uri(sqlite(tmp_path / "new" / "deeper"))  # made later, by the search
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"MLflow store folder .* is not a folder"):
        check_tracking_uri(sqlite(blocker / "sub"))
    assert list(cwd.iterdir()) == []


def test_ui_serves_uploads_beside_the_store(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ipt_ray.cli.app import app

    other = tmp_path / "other"
    other.mkdir()
    (other / "mlflow.db").touch()
    commands: list[list[str]] = []
    monkeypatch.setattr(os, "execvpe", lambda _, command, env: commands.append(command))
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", sqlite(other)])
    assert result.exit_code == 0, result.output
    (command,) = commands
    at = command.index("--artifacts-destination")
    assert command[at + 1] == str(other / "mlartifacts")
    assert list(cwd.iterdir()) == []


def test_a_submitted_search_needs_storage_only_with_a_server(tmp_path: Path) -> None:
    from ipt_ray.cluster.submit import submit_search
    from ipt_ray.tuning.options import SearchOptions
    from ipt_ray.tuning.space import parse_space

    space = parse_space("fixed: {task: mr}\nparams:\n  generator: [task]\n")
    assert space.path is None  # so that a search that passes the storage check stops next

    def submit(tracking_uri: str) -> None:
        submit_search(space, SearchOptions(address="http://127.0.0.1:9", tracking_uri=tracking_uri))

    with pytest.raises(UserError, match="needs storage"):
        submit(SERVER)
    with pytest.raises(UserError, match="needs its space as a file"):
        submit(sqlite(tmp_path))  # Ray results go beside the (shared) store


# -- a real search from an empty folder ----------------------------------------------------------
# Slow (about 30 s): the rule it checks end to end, store_dir, is tested above without Ray.
@pytest.mark.ray
@pytest.mark.slow
def test_a_search_run_elsewhere_keeps_its_store_in_one_place(
    tiny_models: dict[str, Path], toy_csv: Path, tmp_path: Path
) -> None:
    """From an empty folder with ``--tracking-uri sqlite:///OTHER/mlflow.db``: the folder stays
    empty, OTHER holds the store, mlartifacts/ and ray/, every artifact URI points under
    OTHER, and the search is found from a third folder (by ``best`` and by ``--resume``)."""
    from mlflow import MlflowClient

    from ipt_ray.testing import tiny_space_text

    inputs, here, third, other = (tmp_path / n for n in ("inputs", "here", "third", "other"))
    for folder in (inputs, here, third):
        folder.mkdir()
    space = inputs / "space.yaml"
    space.write_text(
        tiny_space_text(
            tiny_models["bert"],
            toy_csv,
            "num_samples: 2\nmax_concurrent: 1\nscheduler: none\nseed: 0",
            "lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
            "generator: {choices: {task: {}}}",
            epochs=1,
        )
    )
    uri = sqlite(other)

    search = ("search", space, "--tracking-uri", uri)
    proc = run_cli(
        *search, "--name", "elsewhere", "--json", cwd=here, env=FAST_RAY_REPORTS, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["counts"]["finished"] == 2
    assert summary["tracking_uri"] == uri
    assert list(here.iterdir()) == [], "nothing in the folder the search ran in"
    assert {"mlflow.db", "mlartifacts", "ray"} <= {p.name for p in other.iterdir()}
    assert (other / "ray" / "elsewhere.search.json").is_file()

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment(summary["experiment_id"])
    under = (other / "mlartifacts").as_uri()
    assert experiment.artifact_location.startswith(under + "/")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the parent and two trials
    assert all(r.info.artifact_uri.startswith(under + "/") for r in runs)
    assert client.list_artifacts(summary["best"]["run_id"], "checkpoint")

    best = run_cli("best", "--tracking-uri", uri, "--json", cwd=third)
    assert best.returncode == 0, best.stderr
    found = json.loads(best.stdout)
    assert found["experiment"] == "elsewhere"
    assert found["parent_run_id"] == summary["parent_run_id"]
    # The search record lies beside the store too: a resume from a third folder finds it.
    again = run_cli(*search, "--resume", "elsewhere", cwd=third, env=FAST_RAY_REPORTS)
    assert again.returncode == 2
    assert "nothing to resume: finished named 'elsewhere'" in again.stderr
    assert str(other / "ray") in again.stderr
    assert list(third.iterdir()) == []
    assert list(here.iterdir()) == []
