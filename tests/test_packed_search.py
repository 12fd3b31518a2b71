"""The packed runner in a real search on a local Ray: the trials of the node train in one
pack server process, their passes fused, each still a Tune trial with its own reports,
checkpoints, ASHA decisions and failures; a killed server's trials resume elsewhere."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.errors import SettingError
from ipt_ray.testing import metric_steps, search_runs, tiny_space_text
from ipt_ray.tuning.space import parse_space

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("fast_ray_reports")]


def pack_servers() -> list[Any]:
    """Every PackServer actor this Ray has seen (alive or dead)."""
    import ray
    from ray.util.state import list_actors

    address = ray.get_runtime_context().gcs_address
    actors = list_actors(address=address, detail=True, limit=10_000)
    return [a for a in actors if "PackServer" in (a.class_name or "")]


def test_a_packed_search_trains_its_trials_in_one_process_and_survives_its_kill(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """8 trials, 4 at a time (pack_size 2 on 2 CPUs), ASHA (that the pack's members are
    pruned one by one: test_search.py::test_asha_prunes[packed]), a learning rate that
    diverges for some; the pack server is SIGKILLed after the first epoch-1 result (max_failures 1).
    Every trial ends FINISHED (pruned or not) or FAILED with its own error, its epochs logged
    once each from 1, and one server trained them, passes fused, until it was killed."""
    import ray

    from ipt_ray.tuning.progress import ProgressEvent
    from ipt_ray.tuning.relay import NAMESPACE
    from ipt_ray.tuning.run import run_search

    before = {a.actor_id for a in pack_servers()}
    seen: dict[str, Any] = {}
    killers: list[threading.Thread] = []

    def kill_server_after_first_epoch(event: ProgressEvent) -> None:
        if event.kind != "result" or killers:
            return
        (server,) = [a for a in pack_servers() if a.state == "ALIVE"]
        seen["first"] = server
        seen["info"] = ray.get(ray.get_actor(server.name, namespace=NAMESPACE).info.remote())
        killers.append(threading.Thread(target=os.kill, args=(int(server.pid), signal.SIGKILL)))
        killers[0].start()

    text = tiny_space_text(
        tiny_models["bert"],
        toy_csv,
        search=(
            "metric: train_loss\nnum_samples: 8\nseed: 0\nrunner: packed\npack_size: 2\n"
            "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n"
            "searcher: {n_startup_trials: 4}"
        ),
        params=(
            "lr: [1.0e-2, 1.0e+38]\nprompt_length: [2, 5]\n"
            "generator: {choices: {task: {}, idpg: {}}}"
        ),
        epochs=2,
        max_samples=96,
    )
    summary = run_search(
        parse_space(text), progress=kill_server_after_first_epoch, max_failures=1, **paths
    )
    killers[0].join()
    uri = paths["tracking_uri"]

    info = seen["info"]
    assert info["pid"] == seen["first"].pid
    assert 1 <= len(info["running"]) <= 4  # members of one process, at most the concurrency
    assert info["forward_calls"] > info["forward_passes"] > 0, info  # fused passes
    servers = [a for a in pack_servers() if a.actor_id not in before]
    assert len(servers) == 2, [(a.name, a.state) for a in servers]  # the killed one, a new one
    assert all(a.state == "DEAD" for a in servers)  # the search stopped what was left

    parent, children = search_runs(uri, summary)
    assert parent.data.params["runner"] == "packed" and parent.data.params["pack_size"] == "2"
    assert len(children) == 8
    diverged = [c for c in children if float(c.data.params["lr"]) > 1]
    assert diverged and len(diverged) < len(children)
    for child in children:
        run_id = child.info.run_id
        if child in diverged:
            assert child.info.status == "FAILED"
            assert child.data.tags[C.TAG_ERROR].startswith("TrainingDiverged: training loss")
            continue
        assert child.info.status == "FINISHED", child.data.tags.get(C.TAG_ERROR)
        epochs = metric_steps(uri, run_id, "val_accuracy")
        assert epochs == list(range(1, len(epochs) + 1)) and epochs, epochs
        assert metric_steps(uri, run_id, C.TRAIN_LOSS) == epochs
        if child.data.tags[C.TAG_PRUNED] == "false":
            assert epochs == [1, 2]
    assert summary.failed == len(diverged)
    assert summary.finished + summary.pruned == len(children) - len(diverged)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runner": "packed", "workers_per_trial": 2}, "runner packed trains each trial in one"),
        ({"runner": "actor", "pack_size": 2}, "pack_size sets the trials of a pack"),
        ({"runner": "packed", "pack_size": 0}, "pack_size must be at least 1"),
        ({"runner": "actor", "pack_recompute": True}, "pack_recompute is a setting of packs"),
    ],
)
def test_packed_settings_that_cannot_work_are_refused(
    options: dict[str, Any], message: str
) -> None:
    from ipt_ray.tuning.options import SearchOptions

    with pytest.raises(SettingError, match=message):
        SearchOptions(**options).check()
