"""``ipt-ray best`` (:func:`ipt_ray.tracking.best.best`) and ``ipt-ray ui`` (MLflow's UI on
the local store). Neither loads torch, transformers or datasets."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ipt_ray.cli.format import format_rows, quiet_environment, user_errors
from ipt_ray.errors import UserError

TrackingOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow store: http://HOST:PORT or sqlite:///PATH (default: ./ipt-ray-runs/mlflow.db)"
    ),
]
ExperimentOpt = Annotated[str | None, typer.Option(help="search name = MLflow experiment")]
#: MLflow's switch for its server's job execution (on by default).
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


@user_errors
def best(
    experiment: ExperimentOpt = None,
    search: Annotated[str | None, typer.Option(help="the search's parent run id")] = None,
    top: Annotated[int, typer.Option(help="how many trials")] = 10,
    metric: Annotated[
        str | None, typer.Option(help="rank by this metric (default: the search's)")
    ] = None,
    tracking_uri: TrackingOpt = None,
    plot: Annotated[Path | None, typer.Option(help="also write the search's plots here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The top trials of a search from MLflow (the newest search unless named); with two objectives, the Pareto front."""  # noqa: E501 (one line: typer keeps a docstring's breaks)
    quiet_environment()
    from ipt_ray.tracking.best import best as best_trials

    found = best_trials(
        experiment, search=search, top=top, metric=metric, tracking_uri=tracking_uri, plot=plot
    )
    if as_json:
        print(json.dumps(found.to_dict()))
        return
    print(
        f"search {found.search.experiment_name!r} (parent run {found.search.run_id}), "
        f"{len(found.rows)} trials, ranked by {found.metric}:"
    )
    for line in format_rows(found.trials, found.metric):
        print(line)
    if found.pareto_front is not None:
        names = " and ".join(f"{m} ({d})" for m, d in found.search.objectives)
        print(f"\nPareto front on {names}:")
        for line in format_rows(found.pareto_front, found.metric):
            print(line)
    if found.plots:
        print(f"\nplots: {', '.join(str(p) for p in found.plots)}")


@user_errors
def ui(
    tracking_uri: TrackingOpt = None,
    experiment: ExperimentOpt = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
) -> None:
    """Open the MLflow UI on the local store (bound to 127.0.0.1, one worker, no job runner)."""
    from ipt_ray.tracking.store import default_artifact_root, default_tracking_uri, sqlite_path

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"the runs are on a tracking server: open {uri}")
        return
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise UserError(
            f"no MLflow store at {path}: run a search here first, or pass --tracking-uri"
        )
    url = f"http://127.0.0.1:{port}"
    page = _experiment_page(uri, experiment)
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # MLflow's default is 4 worker processes (about 1.5 GB); one serves one user.
        "--workers",
        "1",
    ]
    artifacts = default_artifact_root(uri)
    if artifacts is not None:
        # MLflow's default is ./mlartifacts of the current folder: artifacts uploaded through
        # the UI belong beside the store, with the searches' own.
        command += ["--artifacts-destination", str(artifacts)]
    print(f"MLflow UI on {url} (Ctrl-C stops it)", flush=True)
    if page is not None:
        print(f"  {page[0]}: {url}/{page[1]}", flush=True)
    # MLflow 3's server also starts a job runner and seven job consumers (GenAI jobs, about
    # 1.4 GB) that browsing searches never uses; a user who wants them sets the variable.
    env = {**os.environ}
    env.setdefault(JOBS_ENV, "false")
    os.execvpe(command[0], command, env)


def _experiment_page(uri: str, experiment: str | None) -> tuple[str, str] | None:
    """(what, URL path) of ``experiment``'s newest search (default: the store's newest).

    Raises:
        UserError: ``experiment`` was named and the store has no search in it.
    """
    from ipt_ray.tracking.query import client_for, find_search
    from ipt_ray.tracking.store import experiment_page

    client, _ = client_for(uri)
    try:
        search = find_search(client, experiment=experiment)
    except UserError:
        if experiment is not None:
            raise
        return None  # an empty store: the UI's home page
    return f"search {search.experiment_name!r}", experiment_page(search.experiment_id)
