"""Resume: a search whose driver was SIGKILLed continues with the same command.

Finished trials are not run again, the interrupted trial resumes from its last checkpoint
(every epoch logged exactly once), the MLflow parent run is reused, no child run is
duplicated, and nothing is left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ipt_ray.testing import FAST_RAY_REPORTS, start_cli, write_toy_csv

# Slow (about 2 minutes on 2 cores): the default suite keeps the same kill-and-resume path in
# tests/test_journal.py (the driver killed during an MLflow outage, every epoch logged once).
pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = """
name: resumable
fixed: {{task: {task}, model: {model}, epochs: 6, batch_size: 2, max_length: 16,
         prompt_length: 2}}
search:
  metric: val_accuracy
  num_samples: 3
  max_concurrent: 1
  scheduler: none
  seed: 3
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
  generator: [task, prefix]
"""


#: Tune saves its experiment state every 2 s here (10 s or more by default), so that the
#: running trial is in a save well before it ends.
SAVE_OFTEN = {**FAST_RAY_REPORTS, "TUNE_GLOBAL_CHECKPOINT_S": "2"}


def search(space: Path, cwd: Path) -> subprocess.Popen[str]:
    return start_cli("search", space, "--json", cwd=cwd, env=SAVE_OFTEN)


def runs(cwd: Path) -> tuple[list, list]:
    # Open the store only once the search has set it up (its record is written after the
    # parent run): two processes creating a fresh SQLite store's tables at once collide.
    if not (cwd / "ipt-ray-runs" / "ray" / "resumable.search.json").exists():
        return [], []
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'ipt-ray-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resumable")
    if exp is None:
        return [], []
    every = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in every if r.data.tags.get("ipt_ray.kind") == "search"]
    children = [r for r in every if r.data.tags.get("ipt_ray.kind") == "trial"]
    return parents, children


def saved_by_tune(cwd: Path, trial_id: str) -> bool:
    """Whether Tune's experiment snapshot on disk knows ``trial_id`` (it saves every 10 s
    or so: a trial started after the last save is not continued but closed and replaced,
    which test_journal's driver kill covers)."""
    for state in (cwd / "ipt-ray-runs" / "ray").glob("resumable-*/experiment_state-*.json"):
        with contextlib.suppress(OSError):
            if trial_id in state.read_text():
                return True
    return False


def test_search_resumes_after_the_driver_is_killed(tiny_models, tmp_path: Path) -> None:
    task = write_toy_csv(tmp_path / "toy.csv", n=4000)  # ~2 s an epoch at batch size 2
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(task=task, model=tiny_models["bert"]))

    first = search(space, tmp_path)
    deadline = time.time() + 300
    try:
        # Kill once a trial finished and the next one is going, in Tune's saved state.
        while time.time() < deadline:
            _, children = runs(tmp_path)
            done = [c for c in children if c.info.status == "FINISHED"]
            going = [
                c
                for c in children
                if c.info.status == "RUNNING" and "val_accuracy" in c.data.metrics
            ]
            if done and going and saved_by_tune(tmp_path, going[0].data.tags["ray.trial_id"]):
                break
            if first.poll() is not None:
                pytest.fail(
                    "the search ended before it could be killed:\n"
                    + (first.stdout.read() if first.stdout else "")
                )
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in time")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and what it started
        first.wait()
    finished_before = {c.info.run_id for c in done}
    interrupted = going[0].info.run_id

    second = search(space, tmp_path)
    out, _ = second.communicate(timeout=400)
    assert second.returncode == 0, out[-4000:]
    assert "resuming interrupted search 'resumable'" in out

    parents, children = runs(tmp_path)
    assert len(parents) == 1, "the parent run is reused"
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 3, "one child run per trial, none duplicated"
    assert all(c.info.status == "FINISHED" for c in children), [c.info.status for c in children]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ipt-ray-runs' / 'mlflow.db'}")
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6], (child.info.run_id, steps)  # no gap, no repeat
        assert "checkpoint" in {a.path for a in client.list_artifacts(child.info.run_id)}
    by_id = {c.info.run_id: c for c in children}
    for run_id in finished_before:  # not run again: its last update predates the restart
        assert by_id[run_id].info.end_time is not None
    assert "test_accuracy" in by_id[interrupted].data.metrics  # it ran to its end
