"""What a search reports while it runs: :class:`ProgressEvent` lines and a printer for them
(:class:`LineProgress`). No Ray here."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class ProgressEvent:
    """One line of progress.

    ``kind`` is ``start`` (where things go), ``trial_start``, ``result`` (one epoch),
    ``stalled`` (the watchdog fails a trial), ``warning``, ``trial_end`` (``status``
    finished, pruned or failed) or ``end``. ``message`` is the line ready to print; the
    other fields are for callers that format their own (a live display).
    """

    kind: str
    message: str
    trial_id: str | None = None
    status: str | None = None
    epoch: int | None = None
    #: ``result``: the epoch's value of the search's metric; ``trial_end``: the trial's best.
    value: float | None = None
    #: ``start``: how many trials the search runs, its metric and direction (max or min).
    total: int | None = None
    metric: str | None = None
    mode: str | None = None
    #: ``trial_start``: the trial's sampled parameters.
    params: Mapping[str, Any] | None = None


ProgressFn = Callable[[ProgressEvent], None]


class LineProgress:
    """A progress callable that prints each event's message as one line (default: stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: ProgressEvent) -> None:
        print(event.message, file=self.stream or sys.stderr, flush=True)


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_params(params: Mapping[str, Any], limit: int = 6) -> str:
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    return " ".join(items[:limit]) + (" ..." if len(items) > limit else "")
