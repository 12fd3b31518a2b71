"""A live view of a running search on a terminal (rich): trials done, running, pruned and
failed out of N, the best so far, elapsed time and an ETA, under the search's event lines.

Where output is not a terminal (CI, files, Ray Job logs), or with ``--json``, the search
prints plain event lines instead (:class:`~ipt_ray.tuning.progress.LineProgress`):
:func:`search_progress` chooses.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ipt_ray.tracking.record import better
from ipt_ray.tracking.schema import STATUS_RUNNING, STATUSES
from ipt_ray.tuning.progress import LineProgress, ProgressEvent, ProgressFn

#: Statuses of ended trials, in the order the view shows them.
ENDED = tuple(s for s in STATUSES if s != STATUS_RUNNING)


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SearchView:
    """What the live view shows, kept from the search's events (no terminal needed)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.total: int | None = None
        self.metric, self.mode = "metric", "max"
        self.status: dict[str, str] = {}  # trial id -> one of schema.STATUSES
        self.generator: dict[str, str] = {}
        self.best: tuple[float, str] | None = None  # (value, trial id)

    def update(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.total = event.total
            self.metric = event.metric or self.metric
            self.mode = event.mode or self.mode
        elif event.trial_id is None:
            return
        elif event.kind == "trial_start":
            self.status[event.trial_id] = STATUS_RUNNING
            if event.params and "generator" in event.params:
                self.generator[event.trial_id] = str(event.params["generator"])
        elif event.kind in ("result", "trial_end"):
            if event.kind == "trial_end" and event.status:
                self.status[event.trial_id] = event.status
            best = None if self.best is None else self.best[0]
            if event.value is not None and better(event.value, best, self.mode):
                self.best = (event.value, event.trial_id)

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in (STATUS_RUNNING, *ENDED)}
        for status in self.status.values():
            out[status] = out.get(status, 0) + 1
        return out

    def render(self) -> Text:
        """Two lines: the counts, times and ETA; the best trial so far."""
        counts = self.counts()
        done = sum(counts[s] for s in ENDED)
        elapsed = self.clock() - self.started
        total = self.total or len(self.status)
        ended = ", ".join(f"{counts[s]} {s}" for s in ENDED if counts[s])
        eta = "-"
        if done and total > done:
            eta = duration(elapsed / done * (total - done))
        elif total and done >= total:
            eta = "done"
        line = Text.assemble(
            ("trials ", "bold"),
            (f"{done}/{total} done", "bold green"),
            f" ({ended})" if ended else "",
            f" · {counts[STATUS_RUNNING]} running · elapsed {duration(elapsed)} · ETA {eta}",
        )
        if self.best is None:
            best = Text(f"best {self.metric}: -")
        else:
            value, trial = self.best
            generator = self.generator.get(trial)
            best = Text.assemble(
                f"best {self.metric} ",
                (f"{value:.4f}", "bold cyan"),
                f" · trial {trial}" + (f" ({generator})" if generator else ""),
            )
        return Text("\n").join([line, best])


class LiveProgress:
    """A progress callable that prints each event's line above a live :class:`SearchView`."""

    def __init__(self, console: Console, view: SearchView | None = None) -> None:
        self.view = view or SearchView()
        # Redrawn twice a second, so that elapsed time and the ETA move between events.
        self.live = Live(console=console, get_renderable=self.view.render, refresh_per_second=2)

    def __call__(self, event: ProgressEvent) -> None:
        self.view.update(event)
        self.live.console.print(event.message, highlight=False, markup=False)
        self.live.refresh()


@contextmanager
def search_progress(stream: TextIO, *, as_json: bool) -> Iterator[ProgressFn]:
    """The search's progress printer: live on a terminal, plain lines otherwise."""
    if as_json or not stream.isatty():
        yield LineProgress(sys.stderr if as_json else stream)
        return
    progress = LiveProgress(Console(file=stream))
    with progress.live:
        yield progress


__all__ = ["LiveProgress", "SearchView", "duration", "search_progress"]
