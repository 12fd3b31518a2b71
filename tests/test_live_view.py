"""The live view of a search: what a user reads on a terminal while it runs, and plain lines
where output is not a terminal (CI, files, Ray Job logs) or with ``--json``. No Ray: events
are fed as the search's callbacks emit them."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ipt_ray.cli.live import LiveProgress, SearchView, duration, search_progress
from ipt_ray.tuning.progress import LineProgress, ProgressEvent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(mode: str = "max") -> list[ProgressEvent]:
    return [
        ProgressEvent(
            "start", "search 'demo': 4 trials", total=4, metric="val_accuracy", mode=mode
        ),
        ProgressEvent("trial_start", "[a] started", trial_id="a", params={"generator": "idpg"}),
        ProgressEvent("trial_start", "[b] started", trial_id="b", params={"generator": "task"}),
        ProgressEvent("result", "[a] epoch 1/2", trial_id="a", epoch=1, value=0.70),
        ProgressEvent("result", "[b] epoch 1/2", trial_id="b", epoch=1, value=0.60),
        ProgressEvent("trial_end", "[b] pruned", trial_id="b", status="pruned", value=0.60),
        ProgressEvent("result", "[a] epoch 2/2", trial_id="a", epoch=2, value=0.81),
        ProgressEvent("trial_end", "[a] finished", trial_id="a", status="finished", value=0.81),
        ProgressEvent("trial_start", "[c] started", trial_id="c", params={"generator": "lpt"}),
    ]


def test_the_view_counts_trials_keeps_the_best_and_estimates_the_rest() -> None:
    clock = Clock()
    view = SearchView(clock)
    for event in events():
        clock.now += 15  # 9 events: 135 s
        view.update(event)
    text = view.render().plain
    first, second = text.splitlines()
    assert first.startswith("trials 2/4 done (1 finished, 1 pruned) · 1 running")
    # 2 of 4 done in 135 s: the other 2 take about as long.
    assert "elapsed 2m15s · ETA 2m15s" in first
    assert second == "best val_accuracy 0.8100 · trial a (idpg)"


def test_a_metric_to_minimize_keeps_the_lowest() -> None:
    view = SearchView(Clock())
    for event in events(mode="min"):
        view.update(event)
    assert view.render().plain.splitlines()[1] == "best val_accuracy 0.6000 · trial b (task)"


def test_before_any_trial_ends_there_is_no_eta() -> None:
    view = SearchView(Clock())
    for event in events()[:4]:
        view.update(event)
    assert "0/4 done · 2 running" in view.render().plain
    assert "ETA -" in view.render().plain


def test_durations() -> None:
    assert [duration(s) for s in (0, 59, 75, 3725, -3)] == ["0s", "59s", "1m15s", "1h02m", "0s"]


def test_on_a_terminal_the_lines_scroll_above_the_live_view() -> None:
    out = io.StringIO()
    progress = LiveProgress(Console(file=out, force_terminal=True, width=120))
    with progress.live:
        for event in events():
            progress(event)
    written = out.getvalue()
    assert "[a] finished" in written and "[c] started" in written
    assert "2/4 done" in written and "best val_accuracy" in written and "0.8100" in written


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "as_json", "live"),
    [(io.StringIO(), False, False), (Tty(), True, False), (Tty(), False, True)],
    ids=["not-a-terminal", "json", "terminal"],
)
def test_plain_lines_unless_a_terminal_without_json(stream, as_json: bool, live: bool) -> None:
    with search_progress(stream, as_json=as_json) as progress:
        assert isinstance(progress, LiveProgress if live else LineProgress)
