"""``ipt-ray search``: one flag per :class:`~ipt_ray.tuning.options.SearchOptions` field,
built from the dataclass (its help included), so that a new option is a flag, a keyword of
``ipt_ray.search`` and an argument of a submitted job at once.

With an ``http://`` address the search is submitted as a Ray Job
(:func:`ipt_ray.cluster.submit.submit_search`); otherwise it runs here
(:func:`ipt_ray.tuning.api.search`).
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import typing
from dataclasses import MISSING, fields
from typing import Annotated, Any

import typer

from ipt_ray.cli.format import (
    format_summary_table,
    parse_assignments,
    quiet_libraries,
    user_errors,
)
from ipt_ray.tuning.options import SearchOptions


def _option_parameters() -> list[inspect.Parameter]:
    """A keyword parameter per SearchOptions field, as typer reads them: ``set`` becomes a
    repeated ``--set KEY=VALUE``, every other field keeps its type and default."""
    hints = typing.get_type_hints(SearchOptions)
    out = []
    for f in fields(SearchOptions):
        if f.name == "set":
            kind: Any = list[str] | None
            default: Any = None
            option = typer.Option("--set", metavar="KEY=VALUE", help=f.metadata["help"])
        else:
            kind, default = hints[f.name], f.default
            assert default is not MISSING  # every option has a default
            option = typer.Option(help=f.metadata["help"])
        out.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )
        )
    return out


def _search(
    space: str,
    *,
    code: str = "ship",
    wait: bool = True,
    as_json: bool = False,
    **flags: Any,
) -> None:
    """Search a space with Ray Tune + Optuna TPE (+ ASHA): each trial trained in a reused Tune
    trial process or as a Ray Train job, everything tracked in MLflow."""
    quiet_libraries()
    from ipt_ray.tuning import preflight

    options = SearchOptions(**{**flags, "set": parse_assignments(flags["set"] or [])})
    if preflight.is_dashboard_address(options.address):
        from ipt_ray.cluster.submit import submit_search

        status = submit_search(space, options, as_json=as_json, code=code, wait=wait)
        raise SystemExit(status)

    from ipt_ray.cli.live import search_progress
    from ipt_ray.tuning.api import search as run_search

    with search_progress(sys.stdout, as_json=as_json) as progress:
        summary = run_search(space, progress=progress, **vars(options))
    print()
    for line in format_summary_table(summary):
        print(line)
    if summary.best is not None:
        best = summary.best
        print(
            f"best: {summary.metric} {best.value:.4f}, test_accuracy "
            f"{best.metrics.get('test_accuracy', float('nan')):.4f} (trial run {best.run_id})"
        )
    print(f"browse: {summary.ui_command}")
    if as_json:
        print(json.dumps(summary.to_dict()))
    if summary.interrupted:
        again = " ".join(shlex.quote(a) for a in ["ipt-ray", *sys.argv[1:]])
        print(
            f"search interrupted; running trials were marked KILLED in MLflow. Resume it "
            f"with the same command ({again}) or --resume {summary.name}",
            file=sys.stderr,
        )
        raise SystemExit(130)


_COMMAND_PARAMETERS = [
    inspect.Parameter(
        "space",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[
            str,
            typer.Argument(
                metavar="SPACE", help="a space file, or a shipped space name (demo, smoke)"
            ),
        ],
    ),
    *_option_parameters(),
    inspect.Parameter(
        "code",
        inspect.Parameter.KEYWORD_ONLY,
        default="ship",
        annotation=Annotated[
            str,
            typer.Option(
                help="with an http:// address: ship this ipt-ray to the cluster (ship) or use "
                "the nodes' own (installed)"
            ),
        ],
    ),
    inspect.Parameter(
        "wait",
        inspect.Parameter.KEYWORD_ONLY,
        default=True,
        annotation=Annotated[
            bool, typer.Option(help="with an http:// address: follow the job until it ends")
        ],
    ),
    inspect.Parameter(
        "as_json",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--json", help="print a JSON summary as the last line")
        ],
    ),
]

search = user_errors(_search)
# typer reads a command's flags from its signature: this one is generated from SearchOptions.
search.__signature__ = inspect.Signature(_COMMAND_PARAMETERS)  # type: ignore[attr-defined]
search.__annotations__ = {p.name: p.annotation for p in _COMMAND_PARAMETERS}
