"""Which Tune checkpoints a search keeps (issue "Scale": Tune no longer snapshots the whole
experiment after every checkpoint). The unit tests make Tune's calls to the callback by hand
on real directories; the last one runs a real search."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.testing import search_runs, tiny_space_text, write_toy_csv
from ipt_ray.tuning.checkpoint_keeper import CheckpointKeeper
from ipt_ray.tuning.space import parse_space
from ipt_ray.tuning.worker import CHECKPOINT_SCORE_KEY


class Trial:
    """What the callback reads of a Tune trial: its id and the result saved with a
    checkpoint (the worker reports a checkpoint score: the epoch when it is the best)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.last_result: dict[str, Any] = {}


def save(keeper: CheckpointKeeper, root: Path, trial: Trial, epoch: int, best: bool) -> Path:
    path = root / trial.trial_id / f"checkpoint_{epoch:06d}"
    path.mkdir(parents=True)
    (path / "weights.safetensors").write_bytes(b"w")
    trial.last_result = {CHECKPOINT_SCORE_KEY: float(epoch) if best else 0.0}
    # filesystem None: a local path (Tune's own checkpoints carry a pyarrow filesystem)
    keeper.on_checkpoint(0, [], trial, SimpleNamespace(path=str(path), filesystem=None))
    return path


def on_disk(root: Path, trial: Trial) -> list[str]:
    return sorted(p.name for p in (root / trial.trial_id).iterdir())


def test_superseded_checkpoints_go_two_snapshots_later_latest_and_best_stay(
    tmp_path: Path,
) -> None:
    keeper = CheckpointKeeper(CHECKPOINT_SCORE_KEY)
    t = Trial("t")
    save(keeper, tmp_path, t, 1, best=True)
    save(keeper, tmp_path, t, 2, best=False)  # 1 is the best, 2 the latest: both stay
    save(keeper, tmp_path, t, 3, best=False)  # 2 is superseded
    assert keeper.get_state() is None  # snapshot 1 writes no state; 2 is set aside
    assert on_disk(tmp_path, t) == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    save(keeper, tmp_path, t, 4, best=True)  # a new best: 1 and 3 are superseded
    keeper.get_state()  # snapshot 2: snapshot 1 named 3 as the latest, not 2: 2 goes
    assert on_disk(tmp_path, t) == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    keeper.get_state()  # snapshot 3: 1 and 3 go
    assert on_disk(tmp_path, t) == ["checkpoint_000004"]
    assert keeper.deleted == 3


def test_an_ended_trial_keeps_its_best_and_latest_and_is_forgotten(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(CHECKPOINT_SCORE_KEY)
    a, b = Trial("a"), Trial("b")
    for epoch, best in ((1, False), (2, True), (3, False), (4, False)):
        save(keeper, tmp_path, a, epoch, best)
    save(keeper, tmp_path, b, 1, best=True)
    keeper.on_trial_complete(0, [], a)
    keeper.on_trial_error(0, [], b)
    for _ in range(2):
        keeper.get_state()
    assert on_disk(tmp_path, a) == ["checkpoint_000002", "checkpoint_000004"]
    assert on_disk(tmp_path, b) == ["checkpoint_000001"]
    assert not keeper._trials, "nothing held for trials that ended"


def test_a_checkpoint_already_gone_is_not_an_error(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(CHECKPOINT_SCORE_KEY)
    t = Trial("t")
    first = save(keeper, tmp_path, t, 1, best=False)
    save(keeper, tmp_path, t, 2, best=True)
    keeper.get_state()
    (first / "weights.safetensors").unlink()
    first.rmdir()
    keeper.get_state()
    assert on_disk(tmp_path, t) == ["checkpoint_000002"]


@pytest.mark.ray
def test_a_search_keeps_only_the_latest_and_best_checkpoints(
    ray_session: None,
    tiny_models: dict[str, Path],
    tmp_path: Path,
    paths: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real search, with Tune saving its state at every step of its loop (several times
    an epoch: with its default period of 10 s or more a short trial could end between two
    saves, and nothing would be due for deletion yet): of a 6-epoch trial's Tune checkpoints
    (one an epoch, on its storage filesystem), the superseded ones are deleted as the saves go
    by; the latest and the best stay, and MLflow gets the best epoch's."""
    from mlflow import MlflowClient

    from ipt_ray.tuning.run import run_search

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    task = write_toy_csv(tmp_path / "toy.csv", n=2400)
    text = tiny_space_text(
        tiny_models["bert"],
        task,
        search="num_samples: 1\nseed: 0\nscheduler: none",
        params="lr: [1.0e-2]\ngenerator: [task]",
        epochs=6,
        max_samples=1200,
    )
    summary = run_search(parse_space(text), runner="actor", **paths)
    assert summary.finished == 1
    left = sorted(p.name for p in Path(paths["storage"]).glob("*/trial-*/checkpoint_*"))
    assert len(left) <= 4, f"6 checkpoints, the superseded ones deleted: {left} left"
    assert "checkpoint_000005" in left, "the latest stays"
    _, children = search_runs(paths["tracking_uri"], summary)
    best_epoch = int(children[0].data.tags["best_epoch"])
    assert f"checkpoint_{best_epoch - 1:06d}" in left, "the best stays"
    client = MlflowClient(tracking_uri=paths["tracking_uri"])
    local = client.download_artifacts(children[0].info.run_id, "checkpoint", str(tmp_path))
    assert json.loads((Path(local) / C.CONFIG_FILE).read_text())["epoch"] == best_epoch
