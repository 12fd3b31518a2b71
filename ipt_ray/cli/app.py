"""The ``ipt-ray`` typer app: every command, registered from its module, and ``main`` (the
console script and ``python -m ipt_ray.cli``)."""

from __future__ import annotations

import typer

from ipt_ray.cli import browse, export, jobs, predict, search, train
from ipt_ray.cli.format import Command, Group

app = typer.Typer(
    name="ipt-ray",
    help="Instance-wise prompt tuning on frozen language models, searched with Ray Tune + "
    "Optuna and tracked in MLflow.",
    no_args_is_help=True,
    cls=Group,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Instance-wise prompt tuning on frozen language models (see `ipt-ray COMMAND --help`)."""


app.command("train", cls=Command)(train.train)
app.command("search", cls=Command)(search.search)
app.command("best", cls=Command)(browse.best)
app.command("export", cls=Command)(export.export)
app.command("ui", cls=Command)(browse.ui)
app.command("predict", cls=Command)(predict.predict)
app.command("prompts", cls=Command)(predict.prompts)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(jobs.cluster_app, name="cluster")


def main() -> None:
    """The console-script entry point."""
    app()


if __name__ == "__main__":
    main()
