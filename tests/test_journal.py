"""The journal of MLflow calls buffered during an outage (issue "Reliability", item 5: nothing
buffered is lost): a driver that dies while MLflow is down leaves its calls on disk, and the
tracker of the resumed search replays them, in order and once, before any new call.

Unit tests drive :class:`SearchTracker` without Ray, on a local sqlite store behind a client
that can be switched off; the last test kills a real search driver during a real
``mlflow server`` outage and resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from ipt_ray import constants as C
from ipt_ray.testing import FAST_RAY_REPORTS, FlakyMlflowClient, start_cli
from ipt_ray.tracking import SearchTracker
from ipt_ray.tracking.journal import (
    JOURNAL_FILE,
    REMOTE_JOURNALS_DIR,
    PendingCall,
    journal_path,
    read_journal,
)
from ipt_ray.tracking.ops import (
    OP_CREATE_TRIAL_RUN,
    OP_LOG_DICT,
    OP_LOG_METRICS,
    OP_LOG_PARAMS,
    OP_LOG_TEXT,
    OP_SET_STATUS,
    OP_SET_TAG,
    OP_SET_TERMINATED,
    OP_TAG_BEST_TRIAL,
    OP_UPLOAD_CHECKPOINT,
)
from ipt_ray.tracking.store import experiment_artifact_location, local_tracking_uri
from ipt_ray.tracking.tracker import TRIAL_LOST

NAME = "journaled search"


class Killed(BaseException):
    """Stands for SIGKILL in the middle of a tracker call (nothing after it runs)."""


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "runs").mkdir()
    uri = local_tracking_uri(tmp_path / "runs")
    return {
        "uri": uri,
        "artifacts": experiment_artifact_location(tmp_path / "artifacts", NAME),
        "client": MlflowClient(tracking_uri=uri),
        "journal": tmp_path / "ray" / "search-1" / JOURNAL_FILE,
    }


def tracker(store: dict[str, Any], client: Any = None, **kwargs: Any) -> SearchTracker:
    return SearchTracker(
        store["uri"],
        NAME,
        metric="val_accuracy",
        mode="max",
        artifact_location=store["artifacts"],
        client=client or FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"])),
        journal=store["journal"],
        retry_interval=0.0,
        **kwargs,
    )


def checkpoint(tmp_path: Path, name: str) -> str:
    directory = tmp_path / "ckpt" / name
    directory.mkdir(parents=True)
    (directory / C.WEIGHTS_FILE).write_bytes(b"weights")
    (directory / C.CONFIG_FILE).write_text("{}")
    return str(directory)


def result(epoch: int, acc: float) -> dict[str, Any]:
    return {C.EPOCH: epoch, "val_accuracy": acc, C.TRAIN_LOSS: 1.0 / epoch, "node": "host-a"}


def steps(store: dict[str, Any], run_id: str, key: str = "val_accuracy") -> list[int]:
    return [m.step for m in store["client"].get_metric_history(run_id, key)]


def all_runs(store: dict[str, Any], t: SearchTracker) -> dict[str | None, Any]:
    """Runs of the experiment by trial id (the parent under None); fails on a duplicate."""
    by_trial: dict[str | None, Any] = {}
    for run in store["client"].search_runs([t.experiment_id]):
        trial = run.data.tags.get(C.TAG_TRIAL_ID)
        assert trial not in by_trial, f"two runs for trial {trial}"
        by_trial[trial] = run
    return by_trial


def driver_dies_during_an_outage(
    store: dict[str, Any], tmp_path: Path
) -> tuple[SearchTracker, FlakyMlflowClient, dict[str, Any]]:
    """A first driver: trial ``a`` logs epoch 1, then MLflow goes away; ``a`` logs epochs 2
    and 3 and ends, trial ``b`` starts (its run cannot be created) and logs 2 epochs. Returns
    the tracker (to be dropped, never flushed), its client and Tune's saved state."""
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    first = tracker(store, client)
    first.start_search(run_name="search-1", params={"seed": 0}, space_text="name: x\n")
    first.start_trial("a", params={"lr": 0.1}, max_epochs=3)
    first.log_result("a", result(1, 0.5), checkpoint=checkpoint(tmp_path, "a1"))
    assert not store["journal"].exists(), "nothing is journaled while MLflow answers"
    client.error = ConnectionError("Connection refused")
    first.log_result("a", result(2, 0.7), checkpoint=checkpoint(tmp_path, "a2"))
    first.log_result("a", result(3, 0.6), checkpoint=checkpoint(tmp_path, "a3"))
    first.end_trial("a")
    first.start_trial("b", params={"lr": 0.01}, max_epochs=3)
    first.log_result("b", result(1, 0.4), checkpoint=checkpoint(tmp_path, "b1"))
    first.log_result("b", result(2, 0.8), checkpoint=checkpoint(tmp_path, "b2"))
    assert first.pending_calls > 8
    return first, client, first.state()


#: The MlflowClient methods each journaled operation makes, in order (a replay's trace).
CLIENT_CALLS = {
    OP_CREATE_TRIAL_RUN: ["search_runs", "create_run"],
    OP_LOG_PARAMS: ["log_batch"],
    OP_LOG_METRICS: ["log_batch"],
    OP_SET_TAG: ["set_tag"],
    OP_TAG_BEST_TRIAL: ["set_tag"],
    OP_SET_STATUS: ["update_run"],
    OP_SET_TERMINATED: ["set_terminated"],
    OP_LOG_TEXT: ["log_text"],
    OP_LOG_DICT: ["log_dict"],
    OP_UPLOAD_CHECKPOINT: ["log_artifact", "log_artifact"],  # weights + config
}


def test_a_driver_killed_during_an_outage_loses_nothing(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, _, state = driver_dies_during_an_outage(store, tmp_path)
    journaled = read_journal(store["journal"]).pending
    assert len(journaled) == first.pending_calls
    assert [c.seq for c in journaled] == sorted(c.seq for c in journaled)
    ops = [c.op for c in journaled]
    # a's epochs 2 and 3 and its closing tags, b's 2 epochs (each one log_batch)
    assert ops.count(OP_LOG_METRICS) == 5 and ops.count(OP_CREATE_TRIAL_RUN) == 1
    assert OP_SET_TERMINATED in ops and OP_UPLOAD_CHECKPOINT in ops
    parent_run_id = first.parent_run_id or ""
    del first  # killed: no flush, no finish_search

    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        resumed = tracker(store, client)
        assert resumed.pending_calls == len(journaled)
        resumed.resume_search(parent_run_id)
    assert "earlier driver" in caplog.text
    # In the journal's order, each once, before the parent is reopened (the first new call).
    expected = [name for call in journaled for name in CLIENT_CALLS[call.op]]
    assert journaled[0].op == OP_LOG_METRICS  # it may have reached MLflow: checked first
    expected.insert(0, "get_metric_history")
    assert client.calls == ["get_run", *expected, "update_run"]
    assert resumed.pending_calls == 0
    assert not store["journal"].exists(), "compacted away once everything is applied"

    resumed.load_state(state)  # what Tune restores next: b keeps the run the replay created
    runs = all_runs(store, resumed)
    assert set(runs) == {None, "a", "b"}
    assert resumed.trials["b"].run_id == runs["b"].info.run_id
    a = runs["a"]
    assert a.info.status == "FINISHED" and a.data.tags[C.TAG_PRUNED] == "false"
    assert steps(store, a.info.run_id) == [1, 2, 3]
    assert steps(store, a.info.run_id, C.TRAIN_LOSS) == [1, 2, 3]
    checkpoint_files = store["client"].list_artifacts(a.info.run_id, "checkpoint")
    assert {Path(f.path).name for f in checkpoint_files} == {C.WEIGHTS_FILE, C.CONFIG_FILE}
    assert runs["b"].data.params["lr"] == "0.01"
    assert runs["b"].data.tags[C.TAG_NODE] == "host-a"

    # The search goes on: b's last epoch, then the end; every epoch once, nothing RUNNING.
    resumed.log_result("b", result(3, 0.9), checkpoint=checkpoint(tmp_path, "b3"))
    resumed.end_trial("b")
    resumed.finish_search()
    runs = all_runs(store, resumed)
    assert steps(store, runs["b"].info.run_id) == [1, 2, 3]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert runs[None].data.tags[C.TAG_BEST_TRIAL] == runs["b"].info.run_id
    assert resumed.lost_calls == 0


def test_a_trial_that_tune_had_not_saved_is_closed_not_left_running(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tune saves its state every 10 s or so: the driver died after trial b started but before
    a save, so the restored state does not know b and Tune will not continue it. b's run (its
    creation journaled and replayed) is closed as KILLED with the reason, and counted."""
    first, _, state = driver_dies_during_an_outage(store, tmp_path)
    parent_run_id = first.parent_run_id or ""
    del first
    saved_before_b = {"trials": {k: v for k, v in state["trials"].items() if k != "b"}}

    resumed = tracker(store)
    resumed.resume_search(parent_run_id)
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        resumed.load_state(saved_before_b)
    assert "closed as KILLED" in caplog.text
    resumed.finish_search()
    runs = all_runs(store, resumed)
    assert set(runs) == {None, "a", "b"}
    b = runs["b"]
    assert b.info.status == "KILLED"
    assert b.data.tags[C.TAG_ERROR] == TRIAL_LOST
    assert "**Killed**" in b.data.tags["mlflow.note.content"], "not described as running"
    assert steps(store, b.info.run_id) == [1, 2], "what it logged before the driver died stays"
    assert runs["a"].info.status == "FINISHED" and runs[None].info.status == "FINISHED"
    assert resumed.counts()["killed"] == 1 and resumed.counts()["finished"] == 1


@pytest.mark.parametrize("outage", [True, False], ids=["journaled", "logged"])
def test_an_epoch_run_again_after_an_older_save_is_logged_once(
    store: dict[str, Any], tmp_path: Path, outage: bool
) -> None:
    """Tune saved its state while trial a was at epoch 2; a then reported epoch 3 (journaled
    during an outage, or logged at once) and ended, and the driver died. The resumed search
    restarts a from its epoch-2 checkpoint, so a runs epoch 3 again and reports it: MLflow
    already holds epoch 3, and it is not logged a second time (the chart would show two
    points at one step)."""
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    first = tracker(store, client)
    first.start_search(run_name="search-1")
    first.start_trial("a", params={"lr": 0.1}, max_epochs=3)
    first.log_result("a", result(1, 0.5), checkpoint=checkpoint(tmp_path, "a1"))
    if outage:
        client.error = ConnectionError("Connection refused")
    first.log_result("a", result(2, 0.7), checkpoint=checkpoint(tmp_path, "a2"))
    saved = first.state()  # Tune's last save: a is running, at epoch 2
    first.log_result("a", result(3, 0.6), checkpoint=checkpoint(tmp_path, "a3"))
    first.end_trial("a")
    assert first.pending_calls == (5 if outage else 0)
    parent_run_id = first.parent_run_id or ""
    del first  # killed

    resumed = tracker(store)
    resumed.resume_search(parent_run_id)
    resumed.load_state(saved)
    resumed.start_trial("a", params={"lr": 0.1}, max_epochs=3)  # from the epoch-2 checkpoint
    resumed.log_result("a", result(3, 0.6), checkpoint=checkpoint(tmp_path, "a3-again"))
    resumed.log_result("a", {C.EPOCH: 3, "val_accuracy": 0.6, "test_accuracy": 0.65})
    resumed.end_trial("a")
    resumed.finish_search()
    runs = all_runs(store, resumed)
    a = runs["a"]
    assert steps(store, a.info.run_id) == [1, 2, 3]
    assert steps(store, a.info.run_id, C.TRAIN_LOSS) == [1, 2, 3]
    assert steps(store, a.info.run_id, "test_accuracy") == [3], "the final result's new key"
    assert a.info.status == "FINISHED" and runs[None].info.status == "FINISHED"
    assert resumed.lost_calls == 0


def test_a_trial_pending_in_tunes_save_runs_again_into_its_run_once(
    store: dict[str, Any], tmp_path: Path
) -> None:
    """Tune saved its state while trial a was still pending (not started): the tracker's
    saved state does not know it. a then ran its 2 epochs, logged at once, and the driver
    died. The resumed search starts a from scratch: it finds a's run (no second one) and
    logs no epoch twice."""
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    first = tracker(store, client)
    first.start_search(run_name="search-1")
    saved = first.state()  # a is pending in Tune's save
    first.start_trial("a", params={"lr": 0.1}, max_epochs=2)
    for epoch in (1, 2):
        first.log_result("a", result(epoch, 0.5 + epoch / 10))
    parent_run_id = first.parent_run_id or ""
    del first  # killed

    resumed = tracker(store)
    resumed.resume_search(parent_run_id)
    resumed.load_state(saved)
    resumed.start_trial("a", params={"lr": 0.1}, max_epochs=2)
    for epoch in (1, 2):
        resumed.log_result("a", result(epoch, 0.5 + epoch / 10))
    resumed.end_trial("a")
    resumed.finish_search()
    runs = all_runs(store, resumed)  # one run for a
    assert steps(store, runs["a"].info.run_id) == [1, 2]
    assert steps(store, runs["a"].info.run_id, C.TRAIN_LOSS) == [1, 2]
    assert runs["a"].info.status == "FINISHED" and resumed.lost_calls == 0


def test_a_truncated_last_line_is_ignored(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, _, _ = driver_dies_during_an_outage(store, tmp_path)
    pending = first.pending_calls
    parent_run_id = first.parent_run_id or ""
    del first
    with store["journal"].open("ab") as f:  # killed in the middle of an append
        f.write(b'{"seq":999,"op":"log_metrics","args":{"run":"x","metr')
    assert len(read_journal(store["journal"]).pending) == pending

    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking.journal"):
        resumed = tracker(store)
    assert "truncated last line" in caplog.text
    assert resumed.pending_calls == pending
    # Rewritten whole before anything is appended to it: no line ends in the torn one.
    text = store["journal"].read_bytes()
    assert text.endswith(b"\n") and b'"seq":999' not in text
    resumed.resume_search(parent_run_id)
    runs = all_runs(store, resumed)
    assert steps(store, runs["a"].info.run_id) == [1, 2, 3]
    assert steps(store, runs["b"].info.run_id) == [1, 2]
    assert resumed.lost_calls == 0


@pytest.mark.parametrize("head", ["create", "metrics"])
def test_a_call_applied_just_before_the_kill_is_not_applied_twice(
    store: dict[str, Any], tmp_path: Path, head: str
) -> None:
    """The driver dies after MLflow took the first journaled call but before its done line
    was written: the replay finds the trial's run instead of creating a second one, and
    skips a metric batch already logged."""
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    first = tracker(store, client)
    first.start_search(run_name="search-1")
    if head == "metrics":
        first.start_trial("a", params={}, max_epochs=2)
    client.error = ConnectionError("Connection refused")
    if head == "create":
        first.start_trial("a", params={}, max_epochs=2)
    first.log_result("a", {C.EPOCH: 1, "val_accuracy": 0.5})
    first.log_result("a", {C.EPOCH: 2, "val_accuracy": 0.6})
    expected_head = OP_CREATE_TRIAL_RUN if head == "create" else OP_LOG_METRICS
    assert read_journal(store["journal"]).pending[0].op == expected_head

    def kill(*args: Any, **kwargs: Any) -> None:
        raise Killed

    assert first.journal is not None
    first.journal.done = kill  # type: ignore[method-assign]
    client.error = None
    with pytest.raises(Killed):
        first.flush()  # the head reaches MLflow; the driver dies before its done line
    parent_run_id = first.parent_run_id or ""
    del first

    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    resumed = tracker(store, client)
    resumed.resume_search(parent_run_id)
    runs = all_runs(store, resumed)  # one run for a, not two
    assert steps(store, runs["a"].info.run_id) == [1, 2]
    if head == "create":
        assert client.calls[:2] == ["get_run", "search_runs"]
        assert "create_run" not in client.calls
    else:  # checked, not logged again
        assert client.calls[:3] == ["get_run", "get_metric_history", "log_batch"]
        assert client.calls.count("log_batch") == 1


def test_a_run_created_by_a_partial_replay_is_remembered_across_a_restart(
    store: dict[str, Any],
) -> None:
    """MLflow comes back just long enough to create trial b's run, then goes away again and
    the driver dies: the journal remembers b's run id (its later calls name b only), so the
    resumed tracker logs into that run and creates none."""
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    first = tracker(store, client)
    first.start_search(run_name="search-1")
    client.error = ConnectionError("Connection refused")
    first.start_trial("b", params={"lr": 0.01}, max_epochs=2)
    first.log_result("b", result(1, 0.4))
    client.error, client.failing = None, {"log_batch"}
    first.log_result("b", result(2, 0.5))  # replays the creation, then params fail again
    run_id = first.trials["b"].run_id
    assert run_id is not None and first.pending_calls > 2
    parent_run_id = first.parent_run_id or ""
    del first

    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    resumed = tracker(store, client)
    assert f'"run_id":"{run_id}"'.encode() in store["journal"].read_bytes(), "kept by a rewrite"
    resumed.resume_search(parent_run_id)
    assert "create_run" not in client.calls and "search_runs" not in client.calls
    runs = all_runs(store, resumed)
    assert runs["b"].info.run_id == run_id
    assert steps(store, run_id) == [1, 2]
    assert runs["b"].data.params["lr"] == "0.01"


def test_calls_given_up_at_the_end_stay_in_the_journal(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An interrupted search whose store stays away past ``flush_timeout``: the calls count
    as lost for that driver but stay journaled, and resuming the search replays them."""
    first, client, _ = driver_dies_during_an_outage(store, tmp_path)
    first.backlog.flush_timeout = 0.1
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        first.finish_search(interrupted=True)
    assert first.pending_calls == 0 and first.lost_calls > 8
    assert "replayed if the search is resumed" in caplog.text
    client.error = None  # back: later calls of the same driver go through, the rest stays
    first.finish_search(summary={"note": "the summary"})
    left = read_journal(store["journal"]).pending
    assert len(left) == first.lost_calls
    parent_run_id = first.parent_run_id or ""
    del first

    resumed = tracker(store)
    resumed.resume_search(parent_run_id)
    assert not store["journal"].exists()
    runs = all_runs(store, resumed)
    assert steps(store, runs["a"].info.run_id) == [1, 2, 3]
    assert steps(store, runs["b"].info.run_id) == [1, 2]
    assert runs["a"].info.status == "FINISHED"
    assert runs["b"].info.status == "KILLED"  # as the interrupted driver closed it
    assert runs[None].info.status == "RUNNING"  # reopened after the replay


def test_an_unknown_call_is_dropped_and_the_rest_replayed(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, _, _ = driver_dies_during_an_outage(store, tmp_path)
    parent_run_id = first.parent_run_id or ""
    del first
    text = store["journal"].read_text()
    bogus = PendingCall("rename_everything", {}, "a call of another version", seq=0)
    store["journal"].write_text(json.dumps(bogus.to_json()) + "\n" + text)
    resumed = tracker(store)
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        resumed.resume_search(parent_run_id)
    assert "unknown MLflow call 'rename_everything'" in caplog.text
    assert resumed.lost_calls == 1
    assert steps(store, all_runs(store, resumed)["b"].info.run_id) == [1, 2]


def test_a_journal_that_cannot_be_written_leaves_the_backlog_in_memory(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ray").write_text("a file where the journal's folder should be")
    client = FlakyMlflowClient(MlflowClient(tracking_uri=store["uri"]))
    t = tracker(store, client)
    t.start_search(run_name="search-1")
    client.error = ConnectionError("Connection refused")
    with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
        t.start_trial("a", params={"lr": 0.1}, max_epochs=1)
        t.log_result("a", result(1, 0.5))
    assert "cannot be written" in caplog.text and t.journal is None
    client.error = None
    t.end_trial("a")
    t.finish_search()
    assert steps(store, all_runs(store, t)["a"].info.run_id) == [1]


def test_where_the_journal_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert journal_path("/data/ray/s-1") == Path("/data/ray/s-1") / JOURNAL_FILE
    assert journal_path("file:///data/ray/s-1") == Path("/data/ray/s-1") / JOURNAL_FILE
    monkeypatch.setenv("IPT_RAY_CACHE", str(tmp_path / "cache"))
    remote = journal_path("s3://bucket/ray/s-1")
    assert remote.name == JOURNAL_FILE
    assert remote.parent.parent == tmp_path / "cache" / REMOTE_JOURNALS_DIR
    assert remote != journal_path("s3://bucket/ray/s-2")


# -- end to end: a real mlflow server, a real search driver SIGKILLed during the outage ---------
SPACE = """
name: journaled
fixed: {{task: {task}, model: {model}, epochs: 3, batch_size: 4, max_length: 16,
         prompt_length: 2}}
search:
  metric: val_accuracy
  num_samples: 2
  max_concurrent: 1
  scheduler: none
  seed: 0
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
  generator: [task]
"""


def _search(space: Path, cwd: Path, uri: str, log: Path) -> subprocess.Popen[str]:
    """``ipt-ray search`` in the background, its output appended to ``log``."""
    storage = cwd / "ray"
    with log.open("ab") as out:
        return start_cli(
            "search", space, "--tracking-uri", uri, "--storage", storage,
            cwd=cwd, env=FAST_RAY_REPORTS, stdout=out,
        )  # fmt: skip


def _wait(condition: Any, driver: subprocess.Popen[str], log: Path, what: str) -> Any:
    deadline = time.time() + 150
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if driver.poll() is not None:
            pytest.fail(f"the search ended before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.ray
def test_a_search_driver_killed_during_an_mlflow_outage_resumes_without_loss(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Stop the tracking server after the first epoch is reported, SIGKILL the driver once a
    trial has finished and the next one has reported an epoch during the outage (all of it
    only in the journal), restart the server (same port, same store) and run the same
    command again: it resumes, and every epoch of every trial is in MLflow exactly once,
    with nothing left RUNNING."""
    from ipt_ray.testing import MlflowServer, metric_steps, write_toy_csv

    task = write_toy_csv(tmp_path / "toy.csv", n=1200)  # about a second an epoch
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(task=task, model=tiny_models["bert"]))
    server = MlflowServer(tmp_path / "mlflow-server")
    log = tmp_path / "search.log"
    uri = server.start()
    client = MlflowClient(tracking_uri=uri)
    driver = _search(space, tmp_path, uri, log)
    try:

        def first_epoch() -> bool:
            experiment = client.get_experiment_by_name("journaled")
            if experiment is None:
                return False
            found = client.search_runs(
                [experiment.experiment_id], "metrics.val_accuracy >= 0", max_results=1
            )
            return bool(found)

        _wait(first_epoch, driver, log, "the first epoch reached MLflow")
        server.stop()

        def journal_with_a_finished_and_a_new_trial() -> Path | None:
            for path in (tmp_path / "ray").glob(f"journaled-*/{JOURNAL_FILE}"):
                calls = read_journal(path).pending
                created = [i for i, c in enumerate(calls) if c.op == OP_CREATE_TRIAL_RUN]
                ended = any(
                    c.op == OP_SET_TERMINATED and c.args.get("status") == "FINISHED" for c in calls
                )
                if ended and created and any(c.op == OP_LOG_METRICS for c in calls[created[0] :]):
                    return path
            return None

        journal = _wait(
            journal_with_a_finished_and_a_new_trial, driver, log, "a trial ended in the outage"
        )
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    try:
        left = read_journal(journal).pending
        assert left, "the killed driver left its calls in the journal"
        server.start()
        again = _search(space, tmp_path, uri, log)
        try:
            again.wait(timeout=240)
        finally:
            if again.poll() is None:
                os.killpg(again.pid, signal.SIGKILL)
        out = log.read_text()
        assert again.returncode == 0, out[-4000:]
        assert "resuming interrupted search 'journaled'" in out
        assert not journal.exists(), "replayed and compacted away"

        experiment = client.get_experiment_by_name("journaled")
        every = client.search_runs([experiment.experiment_id], max_results=100)
        parents = [r for r in every if r.data.tags.get(C.TAG_KIND) == C.KIND_SEARCH]
        children = [r for r in every if r.data.tags.get(C.TAG_KIND) == C.KIND_TRIAL]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        trial_ids = [c.data.tags[C.TAG_TRIAL_ID] for c in children]
        assert len(set(trial_ids)) == len(trial_ids), "one run per trial: none created twice"
        # The new trial may have started after Tune's last save (every 10 s or so): Tune then
        # runs another in its place, and its run is closed, not left RUNNING.
        finished = [c for c in children if c.info.status == "FINISHED"]
        lost = [c for c in children if c.info.status != "FINISHED"]
        assert len(finished) == 2 and len(lost) <= 1, [c.info for c in children]
        for child in lost:
            assert child.info.status == "KILLED" and child.data.tags[C.TAG_ERROR] == TRIAL_LOST
        for child in finished:
            for key in ("val_accuracy", C.TRAIN_LOSS):
                assert metric_steps(uri, child.info.run_id, key) == [1, 2, 3], (key, child.info)
    finally:
        server.stop()
