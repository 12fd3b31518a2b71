"""MLflow calls made by a writer thread (:mod:`ipt_ray.tracking.background`, what a search's
driver uses): the same runs as calls made in the caller's thread, a caller that never waits on
the store, and a driver killed with calls still queued that loses none of them.

Driven without Ray, like ``test_tracking``: a SearchTracker on a local SQLite store.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from ipt_ray import constants as C
from ipt_ray.testing import FlakyMlflowClient
from ipt_ray.tracking import SearchTracker
from ipt_ray.tracking.journal import JOURNAL_FILE, read_journal
from ipt_ray.tracking.store import experiment_artifact_location, local_tracking_uri

NAME = "background search"
#: Tags that differ between two stores for the same search (besides run ids).
_VARYING_TAGS = ("mlflow.source", "mlflow.user")


class GatedClient(FlakyMlflowClient):
    """A client whose calls wait until ``gate`` is set (a store that does not answer yet);
    once ``dead`` is set, they fail as an unreachable store would (a killed driver's writer
    must never reach the store again)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.gate = threading.Event()
        self.dead = False
        self.entered = threading.Event()  # a call is waiting at the gate

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)

        def gated(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.gate.wait()
            if self.dead:
                raise ConnectionError("Connection refused")
            return call(*args, **kwargs)

        return gated


def new_store(root: Path) -> dict[str, Any]:
    (root / "runs").mkdir(parents=True)
    uri = local_tracking_uri(root / "runs")
    return {
        "uri": uri,
        "artifacts": experiment_artifact_location(root / "artifacts", NAME),
        "client": MlflowClient(tracking_uri=uri),
        "journal": root / "ray" / JOURNAL_FILE,
        "root": root,
    }


def make_tracker(store: dict[str, Any], client: Any, **kwargs: Any) -> SearchTracker:
    return SearchTracker(
        store["uri"],
        NAME,
        metric="val_accuracy",
        mode="max",
        artifact_location=store["artifacts"],
        client=client,
        journal=store["journal"],
        **kwargs,
    )


def checkpoint(store: dict[str, Any], name: str) -> str:
    directory = store["root"] / "ckpt" / name
    directory.mkdir(parents=True)
    (directory / C.WEIGHTS_FILE).write_bytes(b"weights " + name.encode())
    (directory / C.CONFIG_FILE).write_text(json.dumps({"name": name}))
    return str(directory)


def result(epoch: int, acc: float) -> dict[str, Any]:
    return {
        C.EPOCH: epoch,
        "val_accuracy": acc,
        C.TRAIN_LOSS: 1.0 / epoch,
        C.TRAINABLE_PARAMS: 1000,
        "node": "host-a",
    }


def run_trials(tracker: SearchTracker, store: dict[str, Any]) -> None:
    """Four trials as Tune reports them: finished, pruned, failed, and one still open."""
    for trial, accs in (("a", (0.5, 0.7, 0.6)), ("b", (0.4,)), ("c", (0.3, 0.2)), ("d", (0.8,))):
        tracker.start_trial(trial, params={"lr": 0.1, "trial": trial}, max_epochs=3)
        for epoch, acc in enumerate(accs, start=1):
            ckpt = checkpoint(store, f"{trial}{epoch}")
            tracker.log_result(trial, result(epoch, acc), checkpoint=ckpt)
        if trial != "d":
            tracker.end_trial(trial, error="ValueError: boom" if trial == "c" else None)


def contents(store: dict[str, Any]) -> dict[str | None, Any]:
    """What a user sees of the search in MLflow, by trial (the parent under None): status,
    params, tags (run ids named by their trial; without times and the source), every
    metric's (step, value) history, artifacts."""
    client = store["client"]
    experiment = client.get_experiment_by_name(NAME)
    found = client.search_runs([experiment.experiment_id])
    names = {r.info.run_id: f"<run of {r.data.tags.get(C.TAG_TRIAL_ID)}>" for r in found}

    def named(text: str) -> str:
        for run_id, name in names.items():
            text = text.replace(run_id, name)
        return text

    out: dict[str | None, Any] = {}
    for run in found:
        trial = run.data.tags.get(C.TAG_TRIAL_ID)
        assert trial not in out, f"two runs for trial {trial}"
        run_id = run.info.run_id
        out[trial] = {
            "name": run.info.run_name,
            "status": run.info.status,
            "params": run.data.params,
            "tags": {
                k: named(v) for k, v in run.data.tags.items() if not k.startswith(_VARYING_TAGS)
            },
            "metrics": {
                key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
                for key in run.data.metrics
            },
            "artifacts": sorted(
                f.path for d in (None, "checkpoint") for f in client.list_artifacts(run_id, d)
            ),
        }
    return out


def test_the_same_runs_as_calls_made_in_the_callers_thread(tmp_path: Path) -> None:
    seen = {}
    for background in (False, True):
        store = new_store(tmp_path / str(background))
        tracker = make_tracker(store, FlakyMlflowClient(store["client"]), background=background)
        tracker.start_search(run_name="s-1", params={"seed": 0}, space_text="name: x\n")
        run_trials(tracker, store)
        tracker.finish_search(summary={"trials": 4})
        assert tracker.pending_calls == 0 and tracker.lost_calls == 0
        assert not store["journal"].exists(), "nothing is left pending"
        seen[background] = contents(store)
    assert set(seen[True]) == {None, "a", "b", "c", "d"}
    assert seen[True]["a"]["metrics"]["val_accuracy"] == [(1, 0.5), (2, 0.7), (3, 0.6)]
    assert seen[True]["c"]["status"] == "FAILED" and seen[True]["d"]["status"] == "KILLED"
    assert seen[True] == seen[False]


def test_the_caller_never_waits_on_the_store(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    client = GatedClient(store["client"])
    client.gate.set()
    tracker = make_tracker(store, client, background=True)
    tracker.start_search(run_name="s-1", params={"seed": 0})  # made at once: it may raise
    client.gate.clear()
    run_trials(tracker, store)  # with every call blocked: this would hang if it waited
    assert client.entered.wait(10), "the writer is waiting on the store"
    assert tracker.pending_calls > 20
    assert tracker.call_stats["backlog_peak"] == tracker.pending_calls
    client.gate.set()
    tracker.finish_search()
    assert tracker.pending_calls == 0 and tracker.lost_calls == 0
    runs = contents(store)
    assert [s for _, s in runs["a"]["metrics"]["val_accuracy"]] == [0.5, 0.7, 0.6]
    assert runs[None]["status"] == "KILLED"  # d was still open
    # In the order submitted: each trial's run before its params, metrics before its end.
    calls = client.calls
    assert calls.index("create_run") < calls.index("log_batch") < calls.index("set_terminated")


def test_a_driver_killed_with_calls_queued_loses_none(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    client = GatedClient(store["client"])
    client.gate.set()
    first = make_tracker(store, client, background=True, retry_interval=3600.0)
    parent = first.start_search(run_name="s-1", params={"seed": 0})
    first.start_trial("z", params={"lr": 1.0}, max_epochs=1)
    first.log_result("z", result(1, 0.1))
    first.end_trial("z")
    assert first.backlog.settled(30), "z reaches MLflow before the store stops answering"
    client.gate.clear()
    run_trials(first, store)
    assert client.entered.wait(10)
    queued = first.pending_calls
    journaled = read_journal(store["journal"]).pending
    assert len(journaled) == queued > 20, "every queued call is on disk"
    state = first.state()
    # Killed: its writer never reaches the store again; nothing is flushed.
    client.dead = True
    client.gate.set()
    del first

    resumed = make_tracker(store, FlakyMlflowClient(store["client"]), background=True)
    resumed.resume_search(parent)
    resumed.load_state(state)
    assert resumed.pending_calls == 0
    resumed.log_result("d", result(2, 0.9), checkpoint=checkpoint(store, "d2"))
    resumed.end_trial("d")
    resumed.finish_search()
    assert resumed.lost_calls == 0 and not store["journal"].exists()
    runs = contents(store)
    assert set(runs) == {None, "a", "b", "c", "d", "z"}
    assert runs["a"]["metrics"]["val_accuracy"] == [(1, 0.5), (2, 0.7), (3, 0.6)]
    assert runs["d"]["metrics"]["val_accuracy"] == [(1, 0.8), (2, 0.9)]
    assert {r["status"] for t, r in runs.items() if t != "c"} == {"FINISHED"}
    assert runs["c"]["status"] == "FAILED" and runs["c"]["tags"][C.TAG_ERROR] == "ValueError: boom"
    # a's best checkpoint (epoch 2), uploaded by the resumed driver from the journal.
    assert {Path(p).name for p in runs["a"]["artifacts"]} >= {C.WEIGHTS_FILE, C.CONFIG_FILE}


def test_an_outage_is_waited_out_in_the_background(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = new_store(tmp_path)
    client = FlakyMlflowClient(store["client"])
    tracker = make_tracker(store, client, background=True, retry_interval=0.05)
    tracker.start_search(run_name="s-1", params={"seed": 0})
    client.error = ConnectionError("Connection refused")
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        run_trials(tracker, store)
        assert not tracker.backlog.settled(30), "the writer tried, and the store is away"
        assert "unreachable" in caplog.text
        assert read_journal(store["journal"]).pending, "kept calls are on disk"
        client.error = None
        tracker.finish_search()
    assert "answers again" in caplog.text
    assert tracker.pending_calls == 0 and tracker.lost_calls == 0
    assert not store["journal"].exists()
    runs = contents(store)
    assert runs["a"]["metrics"]["val_accuracy"] == [(1, 0.5), (2, 0.7), (3, 0.6)]
    assert runs[None]["status"] == "KILLED"


def test_a_store_that_never_comes_back_costs_flush_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = new_store(tmp_path)
    client = FlakyMlflowClient(store["client"])
    tracker = make_tracker(store, client, background=True, retry_interval=0.05, flush_timeout=0.3)
    tracker.start_search(run_name="s-1", params={"seed": 0})
    client.error = ConnectionError("Connection refused")
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        run_trials(tracker, store)
        tracker.finish_search()
    assert tracker.pending_calls == 0 and tracker.lost_calls > 20
    assert "did not answer for 0 s" in caplog.text
    assert len(read_journal(store["journal"]).pending) == tracker.lost_calls
