"""Faults a search survives (issue "Reliability and security"): a diverging trial, a worker
process killed mid-epoch, an MLflow tracking server stopped for 30 s, and storage that cannot
take checkpoints. Real local Ray, a real ``mlflow server``; nothing may be left RUNNING.

(A worker *node* killed mid-search: tests/test_node_fault.py, a module of its own so that no
other Ray instance runs on the machine meanwhile.)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.testing import (
    MlflowServer,
    alive_actor_pids,
    assert_one_line_error,
    metric_steps,
    run_cli,
    search_runs,
    tiny_space_text,
    write_toy_csv,
)
from ipt_ray.tuning.space import parse_space

pytestmark = pytest.mark.ray

ONE_GENERATOR = "generator: {choices: {task: {}}}"


@pytest.fixture(scope="module")
def slow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy task big enough that an epoch takes a few seconds (room for a kill mid-epoch)."""
    return write_toy_csv(tmp_path_factory.mktemp("slow") / "slow.csv", n=3000)


def run(text: str, uri: str, tmp_path: Path, **kwargs: Any) -> Any:
    from ipt_ray.tuning.run import run_search

    return run_search(
        parse_space(text),
        tracking_uri=uri,
        storage=tmp_path / "ray",
        artifact_root=tmp_path / "mlartifacts" if uri.startswith("sqlite") else None,
        **kwargs,
    )


def assert_nothing_running(uri: str, summary: Any) -> None:
    parent, children = search_runs(uri, summary)
    assert parent.info.status == "FINISHED"
    assert len(children) == summary.num_trials
    assert all(c.info.status in ("FINISHED", "FAILED") for c in children), [
        c.info.status for c in children
    ]


def test_a_diverging_trial_is_failed_with_its_reason_and_the_search_goes_on(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    from ipt_ray.tuning.run import run_search

    text = tiny_space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 4\nseed: 0\nscheduler: none\nsearcher: {n_startup_trials: 4}",
        params=f"lr: [1.0e-2, 1.0e+38]\n{ONE_GENERATOR}",
        epochs=1,
    )
    summary = run_search(parse_space(text), **paths)
    uri = paths["tracking_uri"]
    _, children = search_runs(uri, summary)
    diverged = [c for c in children if float(c.data.params["lr"]) > 1]
    assert diverged and len(diverged) < len(children)
    for child in diverged:
        assert child.info.status == "FAILED"
        assert child.data.tags[C.TAG_ERROR].startswith(
            "TrainingDiverged: training loss became nan in epoch 1"
        )
    assert summary.failed == len(diverged)
    assert summary.finished == len(children) - len(diverged)
    assert summary.best is not None and float(summary.best.params["lr"]) < 1
    assert_nothing_running(uri, summary)


@pytest.mark.parametrize(
    ("runner", "process", "delay", "retries"),
    [
        ("train", "RayTrainWorker", 0.0, {"worker_failures": 1}),
        ("actor", "ImplicitFunc", 0.5, {"max_failures": 1}),
    ],
    ids=["ray-train-worker", "actor-trial-process"],
)
def test_a_killed_training_process_resumes_from_its_checkpoint_without_gap_or_repeat(
    ray_session: None,
    tiny_models: dict[str, Path],
    slow_csv: Path,
    tmp_path: Path,
    runner: str,
    process: str,
    delay: float,
    retries: dict[str, int],
) -> None:
    """SIGKILL the process that trains the trial during epoch 2, after it reported epoch 1:
    the train runner's Ray Train worker (--worker-failures 1: Ray Train restarts it), or the
    actor runner's trial process (--max-failures 1: Tune starts the trial again; killed half a
    second after the result, since Tune registers a function trainable's checkpoint just
    after it). Either way the trial goes on from its epoch-1 checkpoint."""
    from ipt_ray.tuning.progress import ProgressEvent

    killed: list[int] = []
    killers: list[threading.Thread] = []

    def kill(pid: int) -> None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    def kill_after_first_epoch(event: ProgressEvent) -> None:
        if event.kind == "result" and event.epoch == 1 and not killers:
            pids = alive_actor_pids(process)
            assert len(pids) == 1, pids
            killers.append(threading.Thread(target=kill, args=(pids[0],)))
            killers[0].start()

    text = tiny_space_text(
        tiny_models["bert"],
        slow_csv,
        search="num_samples: 1\nseed: 0\nscheduler: none",
        params=f"lr: [1.0e-2]\n{ONE_GENERATOR}",
        epochs=3,
        max_samples=None,
        batch_size=8,
        max_length=32,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = run(text, uri, tmp_path, runner=runner, progress=kill_after_first_epoch, **retries)
    killers[0].join()
    assert killed, "the training process was never killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert summary.finished == 1 and summary.failed == 0
    (trial,) = summary.trials
    assert trial.epochs == 3
    for key in ("val_accuracy", C.TRAIN_LOSS):
        assert metric_steps(uri, trial.run_id, key) == [1, 2, 3]
    assert_nothing_running(uri, summary)


OUTAGE_SECONDS = 30.0


# Slow (about 55 s): the default suite keeps an outage in
# tests/test_journal.py::test_a_search_driver_killed_during_an_mlflow_outage_resumes_without_loss.
@pytest.mark.slow
def test_an_mlflow_outage_of_30_s_loses_no_metric(
    ray_session: None,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The tracking server is stopped right after the first epoch is reported and started
    again 30 s later (same port, same store): trials go on meanwhile, and in the end every
    trial has its run and every epoch of it is in MLflow, once."""
    from ipt_ray.tuning.progress import ProgressEvent

    server = MlflowServer(tmp_path / "mlflow-server")
    outage: dict[str, float] = {}

    def stop_and_restart() -> None:
        server.stop()
        outage["stopped"] = time.time()
        time.sleep(OUTAGE_SECONDS)
        server.start()
        outage["restarted"] = time.time()

    thread = threading.Thread(target=stop_and_restart)

    def outage_after_first_result(event: ProgressEvent) -> None:
        if event.kind == "result" and not thread.is_alive() and not outage:
            thread.start()
            while "stopped" not in outage:  # the outage starts before the search goes on
                time.sleep(0.05)
        if event.kind == "end":
            outage.setdefault("search_ended", time.time())

    text = tiny_space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 5\nseed: 0\nscheduler: none\nmax_concurrent: 1",
        params="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n" + ONE_GENERATOR,
        epochs=3,
    )
    uri = server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="ipt_ray.tracking"):
            summary = run(text, uri, tmp_path, progress=outage_after_first_result)
        thread.join(timeout=OUTAGE_SECONDS + 120)
        assert outage["restarted"] - outage["stopped"] >= OUTAGE_SECONDS
        assert "unreachable" in caplog.text and "replayed" in caplog.text
        assert summary.finished == 5 and summary.tracking_calls_lost == 0
        for trial in summary.trials:
            assert trial.run_id is not None
            assert metric_steps(uri, trial.run_id, "val_accuracy") == [1, 2, 3]
        _, children = search_runs(uri, summary)
        assert sorted(c.info.run_id for c in children) == sorted(t.run_id for t in summary.trials)
        assert all(c.data.params.get("lr") for c in children)
        assert_nothing_running(uri, summary)
    finally:
        server.stop()


# -- storage that cannot take checkpoints ------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """mount(options) -> a fresh tmpfs mount point (skipped where mounting is not allowed)."""
    mounts: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounts.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounts:
            subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("ro,size=1m", "is not writable: Read-only file system"),
        ("size=1m", "has only 1 MiB free; a search needs at least 200 MiB"),
    ],
    ids=["read-only", "full"],
)
def test_storage_that_cannot_take_checkpoints_is_refused_at_the_start(
    tmpfs: Any, tmp_path: Path, options: str, message: str
) -> None:
    storage = tmpfs(options)
    db = tmp_path / "store" / "mlflow.db"
    proc = run_cli(
        "search", "smoke", "--storage", storage, "--tracking-uri", f"sqlite:///{db}",
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert_one_line_error(proc, message, prefix="storage ")
    assert not db.exists(), "no MLflow store (no experiment, no run) before storage is usable"
    assert list(storage.iterdir()) == []
