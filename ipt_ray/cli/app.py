"""The ``ipt-ray`` typer app: every command, registered from its module, and ``main`` (the
console script and ``python -m ipt_ray.cli``)."""

from __future__ import annotations

import sys

import typer

from ipt_ray.cli import browse, export, jobs, predict, search, train
from ipt_ray.cli.format import Command, Group, fail

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
    """The console-script entry point.

    Click's own usage errors (a missing argument or option, an unknown option, a value of the
    wrong type) are worded like every other bad input: one ``ipt-ray: error:`` line, exit 2,
    instead of click's usage block; ``ipt-ray`` alone still prints the help.
    """
    try:  # typer 0.2x runs its own copy of click; older ones run click itself
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import exceptions as click  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="ipt-ray", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "ipt-ray"
        fail(f"{exc.format_message().rstrip('.')}; see '{where} --help'")
    except click.ClickException as exc:
        fail(exc.format_message())
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
