"""Searches on a real local Ray with tiny backbones: Tune + Optuna + ASHA + TorchTrainer,
tracked in MLflow (a local sqlite store, and a real ``mlflow server``).

One Ray session serves the whole module (``ray_session``); every search runs on 2 CPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.testing import metric_steps as steps
from ipt_ray.testing import search_runs
from ipt_ray.testing import tiny_space_text as space_text
from ipt_ray.tuning.space import SearchSpace, load_space, parse_space

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("fast_ray_reports")]


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def run(space: SearchSpace, paths: dict[str, Any], **kwargs: Any) -> Any:
    from ipt_ray.tuning.run import run_search

    events: list[Any] = []
    summary = run_search(space, progress=events.append, **paths, **kwargs)
    summary.events = events
    return summary


# The train runner's variant is slow (about 50 s); the train runner is also in the default
# suite through test_two_ddp_workers, test_faults, test_watchdog and test_node_fault.
@pytest.mark.parametrize("runner", ["actor", pytest.param("train", marks=pytest.mark.slow)])
def test_smoke_search(
    tiny_models: dict[str, Path],
    toy_csv: Path,
    paths: dict[str, Any],
    tmp_path: Path,
    runner: str,
) -> None:
    """3 trials over all five generators on a local Ray that run_search starts and stops: a
    parent, 3 children with per-epoch metrics and their best checkpoint, conditional params,
    nothing left RUNNING. The same with either runner."""
    import ray

    had_ray = ray.is_initialized()
    space = load_space(
        "smoke",
        {
            "fixed.model": str(tiny_models["bert"]),
            "fixed.task": str(toy_csv),
            "num_samples": 3,
            "scheduler": "none",
        },
    )
    summary = run(space, paths, name=f"smoke-{runner}", runner=runner)
    assert ray.is_initialized() == had_ray
    uri = paths["tracking_uri"]
    assert summary.counts == {"finished": 3, "pruned": 0, "failed": 0, "killed": 0}
    assert not summary.interrupted
    assert summary.ui_command == f"mlflow ui --backend-store-uri {uri}"
    parent, children = search_runs(uri, summary)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["runner"] == runner
    assert parent.data.tags[C.TAG_KIND] == C.KIND_SEARCH
    assert parent.data.tags[C.TAG_BEST_TRIAL] == summary.best.run_id
    assert parent.data.metrics["best_val_accuracy"] == summary.best.value
    assert {"search_space.yaml", "search_summary.json"} <= {
        f.path for f in client(uri).list_artifacts(parent.info.run_id)
    }
    assert len(children) == 3
    all_runs = client(uri).search_runs([summary.experiment_id])
    assert all(r.info.status == "FINISHED" for r in all_runs)

    sampled = []
    for child in children:
        run_id, params, tags = child.info.run_id, child.data.params, child.data.tags
        assert tags[C.TAG_KIND] == C.KIND_TRIAL and tags[C.TAG_TRIAL_ID]
        assert tags[C.TAG_PRUNED] == "false"
        assert tags[C.TAG_NODE]
        assert steps(uri, run_id, "val_accuracy") == [1, 2]
        assert steps(uri, run_id, C.TRAIN_LOSS) == [1, 2]
        assert steps(uri, run_id, C.SAMPLES_PER_SECOND) == [1, 2]
        # Values that do not change over a trial are params or tags, not one-point charts.
        assert int(params[C.TRAINABLE_PARAMS]) > 0 and C.TRAINABLE_PARAMS not in child.data.metrics
        assert 0 < float(params[C.TRAINABLE_SHARE]) < 1
        assert float(tags["best_val_accuracy"]) == max(
            m.value for m in client(uri).get_metric_history(run_id, "val_accuracy")
        )
        assert "test_accuracy" in child.data.metrics
        # Conditional params: the chosen generator's knobs only, and the fixed settings.
        generator = params["generator"]
        knobs = {k.split(".")[0] for k in params if "." in k}
        assert knobs <= {generator}
        assert params["epochs"] == "2" and params["task"] == str(toy_csv)
        sampled.append(float(params["lr"]))
        # The best epoch's checkpoint: weights + config, no optimizer state.
        files = {Path(f.path).name for f in client(uri).list_artifacts(run_id, "checkpoint")}
        assert files == {C.WEIGHTS_FILE, C.CONFIG_FILE}
        local = client(uri).download_artifacts(run_id, f"checkpoint/{C.CONFIG_FILE}", str(tmp_path))
        trial = next(t for t in summary.trials if t.run_id == run_id)
        assert json.loads(Path(local).read_text())["epoch"] == trial.best_epoch
    assert len(set(sampled)) == 3
    kinds = [e.kind for e in summary.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("trial_end") == 3 and kinds.count("result") == 6


def test_the_actor_runner_trains_trial_after_trial_in_one_process(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """4 trials one at a time: one trial process trains them all (torch, transformers, the
    backbone and the task are loaded once), reading the backbone from the object store."""
    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.testing import alive_actor_pids
    from ipt_ray.tuning.progress import ProgressEvent
    from ipt_ray.tuning.run import run_search

    trial_pids: list[set[int]] = []

    def note_trial_processes(event: ProgressEvent) -> None:
        if event.kind == "result":
            trial_pids.append(set(alive_actor_pids("ImplicitFunc")))

    text = space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 4\nseed: 0\nscheduler: none\nmax_concurrent: 1",
        params="lr: [1.0e-3, 1.0e-2]\ngenerator: {choices: {task: {}, idpg: {}}}",
    )
    summary = run_search(parse_space(text), progress=note_trial_processes, **paths)
    assert summary.finished == 4
    assert len(trial_pids) == 8  # 4 trials x 2 epochs
    assert len(set.union(*trial_pids)) == 1, trial_pids
    parent, children = search_runs(paths["tracking_uri"], summary)
    assert parent.data.params["runner"] == "actor"
    backbone, _ = load_backbone(str(tiny_models["bert"]))
    tensors = dict([*backbone.named_parameters(), *backbone.named_buffers()]).values()
    assert int(parent.data.params["shared_backbone_bytes"]) == sum(
        t.numel() * t.element_size() for t in tensors
    )
    assert all(float(c.data.tags[C.STARTUP_SECONDS]) > 0 for c in children)


def test_a_search_over_backbones_loads_each_trials_own(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """With ``model`` searched nothing is published: each trial process loads the backbone
    its trial names (and keeps only the last one)."""
    models = [str(tiny_models["bert"]), str(tiny_models["gpt2"])]
    text = space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 4\nseed: 3\nscheduler: none\nmax_concurrent: 1",
        params=f"model: {json.dumps(models)}\ngenerator: {{choices: {{task: {{}}}}}}",
        epochs=1,
    ).replace(f"  model: {json.dumps(str(tiny_models['bert']))}\n", "")
    summary = run(parse_space(text), paths)
    assert summary.finished == 4
    parent, children = search_runs(paths["tracking_uri"], summary)
    assert parent.data.params["shared_backbone_bytes"] == "0"
    used = {c.data.params["model"] for c in children}
    assert used == set(models), used  # seed 3 samples both


def test_resources_must_fit(ray_session: None) -> None:
    from ipt_ray.errors import UserError
    from ipt_ray.tuning.plan import default_max_concurrent

    assert default_max_concurrent(1, 1.0, 0.0) == 2
    assert default_max_concurrent(2, 0.5, 0.0) == 2
    with pytest.raises(UserError, match="a trial needs 3 CPUs"):
        default_max_concurrent(3, 1.0, 0.0)
    with pytest.raises(UserError, match="GPU"):
        default_max_concurrent(1, 1.0, 1.0)


# The packed variant is slow (about 10 s); test_packed_search.py runs ASHA over a pack.
@pytest.mark.parametrize("runner", ["auto", pytest.param("packed", marks=pytest.mark.slow)])
def test_asha_prunes(
    ray_session: None,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    paths: dict[str, Any],
    runner: str,
) -> None:
    """One trial at a time fills ASHA's rungs in order: later, worse trials are stopped (with
    the packed runner: dropped from their pack, which takes the next trial)."""
    text = space_text(
        tiny_models["bert"],
        toy_csv,
        search="""
metric: train_loss
num_samples: 4
seed: 1
max_concurrent: 1
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
searcher: {n_startup_trials: 4}
""",
        params="""
lr: {type: float, low: 1.0e-6, high: 1.0e-1, log: true}
generator: {choices: {task: {}}}
""",
        epochs=4,
    )
    summary = run(parse_space(text), paths, name="asha-test", runner=runner)
    uri = paths["tracking_uri"]
    _, children = search_runs(uri, summary)
    pruned = [c for c in children if c.data.tags.get(C.TAG_PRUNED) == "true"]
    assert pruned, [c.data.metrics for c in children]
    assert summary.pruned == len(pruned)
    for child in pruned:
        assert child.info.status == "FINISHED"
        assert max(steps(uri, child.info.run_id, C.TRAIN_LOSS)) < 4
    assert all(c.info.status == "FINISHED" for c in children)


def test_two_ddp_workers(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """A trial with 2 gloo workers trains, and both ranks end with identical weights."""
    text = space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 1\nscheduler: none",
        params="lr: [0.01]\ngenerator: {choices: {ipt-encoder: {hidden: 8}}}",
    )
    summary = run(parse_space(text), paths, workers_per_trial=2)
    assert summary.counts["finished"] == 1, summary.trials
    trial = summary.trials[0]
    assert trial.metrics["replicas_in_sync"] == 1.0
    # Tune's own record of the last report: one weight hash per rank, all equal.
    lines = (Path(summary.storage_path) / f"trial-{trial.trial_id}" / "result.json").read_text()
    last = json.loads(lines.strip().splitlines()[-1])
    hashes = last["replica_weight_hashes"].split(",")
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert last[C.EPOCH] == 2


def test_failed_trial(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """A trial whose prompt does not fit the backbone fails in its worker; it is FAILED with
    an error tag and the other trials still run."""
    # 40 + 32 > the tiny backbone's 64 positions; the seed samples 40, 2, 40.
    text = space_text(
        tiny_models["bert"],
        toy_csv,
        max_length=32,
        epochs=1,
        search="num_samples: 3\nseed: 0\nscheduler: none\nsearcher: {n_startup_trials: 3}",
        params="prompt_length: [2, 40]\ngenerator: {choices: {task: {}}}",
    )
    summary = run(parse_space(text), paths)
    uri = paths["tracking_uri"]
    parent, children = search_runs(uri, summary)
    assert summary.failed >= 1 and summary.finished >= 1
    assert parent.info.status == "FINISHED"
    for child in children:
        if child.data.params["prompt_length"] == "40":
            assert child.info.status == "FAILED"
            assert child.data.tags[C.TAG_ERROR].startswith("ConfigError:")
            assert "positions" in child.data.tags[C.TAG_ERROR]
        else:
            assert child.info.status == "FINISHED"
    assert all(t.error for t in summary.trials if t.status == "failed")
    assert summary.best is not None and summary.best.status == "finished"


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 serving artifacts; yields its URL."""
    from ipt_ray.testing import mlflow_server as server

    with server(tmp_path / "mlflow-server") as url:
        yield url


def test_search_logs_to_mlflow_server(
    ray_session: None,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    tmp_path: Path,
    mlflow_server: str,
) -> None:
    text = space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 2\nscheduler: none",
        params="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
        "generator: {choices: {prefix: {}, idpg: {}}}",
    )
    summary = run(
        parse_space(text),
        {"tracking_uri": mlflow_server, "storage": tmp_path / "ray"},
        name="served",
    )
    assert summary.tracking_uri == mlflow_server
    assert summary.ui_command == f"open {mlflow_server}"
    parent, children = search_runs(mlflow_server, summary)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
        assert steps(mlflow_server, child.info.run_id, "val_accuracy") == [1, 2]
        files = {
            Path(f.path).name
            for f in client(mlflow_server).list_artifacts(child.info.run_id, "checkpoint")
        }
        assert files == {C.WEIGHTS_FILE, C.CONFIG_FILE}
    assert list((tmp_path / "mlflow-server" / "server-artifacts").rglob(C.WEIGHTS_FILE))


def test_ctrl_c_leaves_nothing_running(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """Ctrl-C during a search: Tune stops gracefully, open trial runs and the parent end
    KILLED (a KeyboardInterrupt, if one gets through, must leave the same state)."""
    import signal
    import threading

    from ipt_ray.tuning.run import run_search

    text = space_text(
        tiny_models["bert"],
        toy_csv,
        epochs=60,
        search="num_samples: 2\nscheduler: none",
        params="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
        "generator: {choices: {task: {}}}",
    )
    fired: list[threading.Timer] = []

    def interrupt_after_first_result(event: Any) -> None:
        if event.kind == "result" and not fired:
            fired.append(threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)))
            fired[0].start()

    summary = None
    with contextlib.suppress(KeyboardInterrupt):
        summary = run_search(parse_space(text), progress=interrupt_after_first_result, **paths)
    assert fired
    uri = paths["tracking_uri"]
    experiment = client(uri).get_experiment_by_name("search")
    runs = list(client(uri).search_runs([experiment.experiment_id]))
    statuses = {r.info.run_name: r.info.status for r in runs}
    assert "RUNNING" not in statuses.values(), statuses
    parent = [r for r in runs if r.data.tags.get(C.TAG_KIND) == C.KIND_SEARCH]
    assert [p.info.status for p in parent] == ["KILLED"]
    assert "KILLED" in {r.info.status for r in runs if r.data.tags.get(C.TAG_KIND) == "trial"}
    if summary is not None:
        assert summary.interrupted
        assert summary.counts["killed"] >= 1
