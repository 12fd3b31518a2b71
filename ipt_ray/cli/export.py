"""``ipt-ray export``: :func:`ipt_ray.tracking.export.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipt_ray.cli.browse import ExperimentOpt, TrackingOpt
from ipt_ray.cli.format import quiet_libraries, user_errors


@user_errors
def export(
    out: Annotated[Path, typer.Option(help="the bundle folder to write (new)")],
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN_ID",
            help="a trial run id, a search's parent run id (its best trial), or a checkpoint "
            "folder",
            show_default=False,
        ),
    ] = None,
    experiment: ExperimentOpt = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="ipt (a bundle), peft (an adapter for task and prefix winners) or mlflow (an "
            "MLflow pyfunc model folder holding the bundle)",
        ),
    ] = "ipt",
    register: Annotated[
        str | None,
        typer.Option(
            help="also log the bundle as a pyfunc model of the trial's run and register it as "
            "a new version of this MLflow model (models:/NAME/VERSION)"
        ),
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Export a search's best trial (or the named one) as a portable bundle or PEFT adapter."""
    quiet_libraries()
    from ipt_ray.tracking.export import export as export_trial

    done = export_trial(
        source,
        out=out,
        experiment=experiment,
        format=format_,
        register=register,
        tracking_uri=tracking_uri,
    )
    if done.run_id is None:
        print(f"exported {source} to {done.path}")
        return
    value = "" if done.value is None else f" ({done.metric} {done.value:.4f})"
    print(f"exported trial run {done.run_id}{value} to {done.path}")
    if done.version is not None:
        print(f"registered as model {register!r} version {done.version}")
