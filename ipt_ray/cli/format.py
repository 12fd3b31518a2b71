"""What every command shares: one-line errors, library errors worded as flags, quiet
libraries, ``--set KEY=VALUE`` parsing, and the tables of ``search`` and ``best``.

Every command turns a :class:`~ipt_ray.errors.UserError` into one line on stderr and exit
status 2, with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from typer.core import TyperCommand, TyperGroup

from ipt_ray.errors import ConfigError, SettingError, UserError

if TYPE_CHECKING:
    from ipt_ray.tracking.query import TrialRow
    from ipt_ray.tuning.summary import SearchSummary

F = TypeVar("F", bound=Callable[..., Any])


def _plain_params(params: list[Any]) -> list[Any]:
    """Flags without a ``<bool>`` value, arguments named in capitals (``JOB_ID``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # a flag takes no value: show none
        elif param.param_type_name == "argument" and param.metavar is None:
            param.metavar = (param.name or "").upper()
    return params


class Command(TyperCommand):
    """A command whose help names a flag without a ``<bool>`` placeholder and a required
    argument as ``SPACE`` (typer writes ``{SPACE}``); ``[required]`` still marks it."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces: list[str] = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


class Group(TyperGroup):
    """A command group whose help shows ``--help`` without a ``<bool>`` placeholder."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


def fail(message: str) -> None:
    """Print ``ipt-ray: error: <message>`` (one line) and exit with status 2."""
    line = " ".join(str(message).split())
    print(f"ipt-ray: error: {line}", file=sys.stderr)
    raise SystemExit(2)


#: Settings that a command takes as a positional argument, as its help names them.
ARGUMENTS = {"source": "RUN_ID", "space": "SPACE", "bundle": "BUNDLE"}


def flag(setting: str) -> str:
    """How the command line spells a library setting: ``--tracking-uri`` for
    ``tracking_uri``, or the argument's name (:data:`ARGUMENTS`)."""
    return ARGUMENTS.get(setting, "--" + setting.replace("_", "-"))


def user_errors(func: F) -> F:
    """Decorator: UserError (and KeyboardInterrupt) end the command cleanly; a library's
    SettingError names the command's flags."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingError as exc:
            fail(exc.render(flag))
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("ipt-ray: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]


def quiet_environment() -> None:
    """Silence progress bars of tokenizers and MLflow downloads (our output is the report)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet_libraries() -> None:
    """:func:`quiet_environment`, and the info logs and progress bars of transformers and
    datasets (for the commands that load models or data)."""
    quiet_environment()
    import logging

    # Logging a pyfunc model (export --register, --format mlflow): MLflow narrates its
    # signature inference and input-example check; ipt-ray gives the signature itself.
    for name in ("mlflow.models.signature", "mlflow.pyfunc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` strings -> dict; values parsed as YAML scalars (1, 0.5, true, cnn).

    Raises:
        ConfigError: an item without ``=`` or key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def format_epoch(epoch: int, epochs: int, metrics: dict[str, float], metric: str) -> str:
    """One epoch of ``ipt-ray train`` on one line."""
    from ipt_ray import constants as C

    parts = [f"epoch {epoch}/{epochs}", f"train_loss {metrics[C.TRAIN_LOSS]:.4f}"]
    for key in ("val_accuracy", "val_f1_macro", f"val_{metric}"):
        if key in metrics and key not in " ".join(parts):
            parts.append(f"{key} {metrics[key]:.4f}")
    parts.append(f"{metrics[C.EPOCH_SECONDS]:.1f}s")
    parts.append(f"{metrics[C.SAMPLES_PER_SECOND]:.0f} samples/s")
    return "  ".join(parts)


def format_rows(rows: Sequence[TrialRow], metric: str) -> list[str]:
    """Trial rows of ``ipt-ray best`` as aligned text."""
    table = [
        [
            "#",
            "trial run",
            "status",
            "generator",
            "P",
            "lr",
            "knobs",
            metric,
            "test_acc",
            "trainable",
            "share",
        ]
    ]
    for row in rows:
        test = row.metrics.get("test_accuracy")
        count = row.metrics.get("trainable_params")
        share = row.metrics.get("trainable_share")
        table.append(
            [
                str(row.rank),
                row.run_id[:12],
                row.status,
                row.generator,
                "" if row.prompt_length is None else str(row.prompt_length),
                "" if row.lr is None else f"{row.lr:.2g}",
                ", ".join(f"{k}={v}" for k, v in sorted(row.knobs.items())),
                "" if row.value is None else f"{row.value:.4f}",
                "" if test is None else f"{test:.4f}",
                "" if count is None else f"{int(count):,}",
                "" if share is None else f"{100 * share:.2f}%",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def format_summary_table(summary: SearchSummary, limit: int = 10) -> list[str]:
    """The search's top trials as aligned text, in the columns of ``ipt-ray best``."""
    from ipt_ray.tracking.query import TrialRow

    rows = [
        TrialRow.from_params(
            trial.settings or trial.params,
            rank=rank,
            run_id=trial.run_id or trial.trial_id,
            trial_id=trial.trial_id,
            status=trial.status,
            value=trial.value,
            metrics=trial.metrics,
        )
        for rank, trial in enumerate(summary.top[:limit], start=1)
    ]
    return format_rows(rows, summary.metric)
