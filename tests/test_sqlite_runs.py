"""A search's trial runs read from a local SQLite store with sqlite3
(ipt_ray.tracking.sqlite_runs): the runs MLflow's ``search_runs`` returns, in its order, and
``best``'s rows unchanged; a store that is not as expected is read through MLflow."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from ipt_ray import constants as C
from ipt_ray.tracking import SearchTracker, sqlite_runs
from ipt_ray.tracking.query import child_runs, every_run, find_search, trial_rows
from ipt_ray.tracking.schema import TAG_PARENT_RUN
from ipt_ray.tracking.store import experiment_artifact_location, local_tracking_uri


def make_search(root: Path, name: str, trials: int) -> SearchTracker:
    (root / "runs").mkdir(parents=True, exist_ok=True)
    uri = local_tracking_uri(root / "runs")
    tracker = SearchTracker(
        uri,
        name,
        metric="val_accuracy",
        mode="max",
        artifact_location=experiment_artifact_location(root / "artifacts", name),
    )
    tracker.start_search(run_name=name, params={"metric": "val_accuracy", "seed": 0})
    for i in range(trials):
        trial = f"t{i}"
        tracker.start_trial(
            trial,
            params={"generator": "idpg", "lr": 0.01 * (i + 1), "prompt_length": 4},
            sampled={"idpg.bottleneck": i},
            max_epochs=2,
        )
        last = 1 if i % 3 == 1 else 2  # every third one pruned after epoch 1
        for epoch in range(1, last + 1):
            acc = float("nan") if i == 4 else 0.5 + 0.01 * i * epoch
            tracker.log_result(trial, {C.EPOCH: epoch, "val_accuracy": acc, C.TRAIN_LOSS: 1.0})
        tracker.end_trial(trial, error="ValueError: boom" if i == 5 else None)
    tracker.finish_search()
    return tracker


def view(runs: Any) -> list[tuple[Any, ...]]:
    """What ipt-ray reads of each run (NaN compared as a string)."""

    def metrics(run: Any) -> dict[str, Any]:
        return {k: "nan" if math.isnan(v) else v for k, v in run.data.metrics.items()}

    return [
        (
            r.info.run_id,
            r.info.run_name,
            r.info.status,
            r.info.start_time,
            r.info.end_time,
            str(r.info.experiment_id),
            r.info.lifecycle_stage,
            r.data.params,
            r.data.tags,
            metrics(r),
        )
        for r in runs
    ]


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    searched = make_search(tmp_path, "searched", 8)
    make_search(tmp_path, "searched", 2)  # another search in the same experiment
    make_search(tmp_path, "other", 2)  # and one in another experiment
    client = MlflowClient(tracking_uri=searched.tracking_uri)
    deleted = searched.trials["t7"].run_id
    client.delete_run(deleted)
    return {"client": client, "parent": searched.parent_run_id, "deleted": deleted}


def test_the_runs_search_runs_returns(store: dict[str, Any]) -> None:
    client = store["client"]
    search = find_search(client, search=store["parent"])
    fast = child_runs(client, search)
    assert all(isinstance(r, sqlite_runs.StoredRun) for r in fast)
    slow = every_run(client, [search.experiment_id], f"tags.`{TAG_PARENT_RUN}` = '{search.run_id}'")
    assert len(fast) == 7 and store["deleted"] not in {r.info.run_id for r in fast}
    assert view(fast) == view(slow)


def test_best_reads_the_same_rows_either_way(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = store["client"]
    search = find_search(client, search=store["parent"])
    fast = trial_rows(client, search)

    def not_mlflow(*args: Any) -> None:
        raise sqlite3.OperationalError("no such table: latest_metrics")

    monkeypatch.setattr(sqlite_runs, "child_runs", not_mlflow)
    through_mlflow = trial_rows(client, search)
    assert [r.trial_id for r in fast][:2] == ["t6", "t3"]  # best first
    statuses = {r.trial_id: r.status for r in fast}
    assert statuses["t1"] == "pruned" and statuses["t5"] == "failed"
    nan = next(r for r in fast if r.trial_id == "t4")
    assert nan.value is None or math.isnan(nan.value)
    key = [(r.rank, r.run_id, r.status, r.started, r.params, r.metrics) for r in fast]
    assert key == [
        (r.rank, r.run_id, r.status, r.started, r.params, r.metrics) for r in through_mlflow
    ]
    assert [r.to_dict() for r in fast if r.trial_id != "t4"] == [
        r.to_dict() for r in through_mlflow if r.trial_id != "t4"
    ]
