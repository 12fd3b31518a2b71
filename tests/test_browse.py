"""Browsing searches in MLflow: ``ipt-ray best``, ``ipt-ray export``, the search plots.

Three sources of runs:

- a store written by hand with ``MlflowClient`` (no Ray): a search whose trials are
  finished, pruned, failed and killed, one with ``best_val_accuracy`` and one without (its
  value comes from the metric's history), a two-objective search with a known Pareto front,
  and an unrelated run;
- a real search on a local Ray (tiny BERT, toy CSV, one trial each of ``task``, ``prefix``
  and ``ipt-encoder``), exported and compared with its own checkpoint;
- a real search logged to a real ``mlflow server`` on 127.0.0.1.

Bad input runs the real command in a subprocess: exit status 2, one ``ipt-ray: error:`` line
on stderr, no traceback, nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ipt_ray import constants as C
from ipt_ray.testing import (
    assert_one_line_error,
    free_port,
    mlflow_server,
    reference_logits,
    run_cli,
    tiny_space_text,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = (
    "optimization_history.png",
    "param_importances.png",
    "parallel_coordinates.png",
    "accuracy_vs_params.png",
)
MISSING_RUN = "0123456789abcdef0123456789abcdef"


# -- helpers -----------------------------------------------------------------------------------
def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def cli(*args: str) -> Any:
    """``ipt-ray ARGS`` in this process (typer's runner; stdout and stderr apart)."""
    from ipt_ray.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking its signature and header chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- a store written by hand -------------------------------------------------------------------
@dataclass
class FakeStore:
    """Run ids of the hand-written store (see :func:`fake_store`)."""

    uri: str
    root: Path
    search: str = ""
    trials: dict[str, str] = field(default_factory=dict)  # name -> run id
    pareto_search: str = ""
    pareto: dict[str, str] = field(default_factory=dict)
    unrelated: str = ""
    lone_search: str = ""


def write_parent(client: Any, experiment_id: str, name: str, *, objectives: str, start: int) -> str:
    metric, mode = objectives.split(",")[0].split(":")
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-20260101-000000",
        start_time=start,
        tags={C.TAG_KIND: C.KIND_SEARCH},
    )
    for key, value in {
        "space": name,
        "metric": metric,
        "mode": mode,
        "objectives": objectives,
        "num_samples": 5,
        "fixed.task": "toy.csv",
    }.items():
        client.log_param(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 100_000)
    return str(run.info.run_id)


def write_trial(
    client: Any,
    experiment_id: str,
    parent: str,
    trial_id: str,
    start: int,
    *,
    status: str,
    generator: str,
    lr: float,
    prompt_length: int,
    knobs: dict[str, Any] | None = None,
    history: tuple[float, ...] = (),
    losses: tuple[float, ...] = (),
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A child run as :class:`ipt_ray.tracking.SearchTracker` writes it: flat params, the
    metric per epoch (``step = epoch``), static metrics once, tags, a final status."""
    from mlflow.entities import Metric, Param

    run = client.create_run(
        experiment_id,
        run_name=f"trial-{trial_id}",
        start_time=start,
        tags={
            C.TAG_KIND: C.KIND_TRIAL,
            C.TAG_TRIAL_ID: trial_id,
            C.TAG_PARENT_RUN: parent,
            C.TAG_NODE: "127.0.0.1",
            **(tags or {}),
        },
    )
    run_id = run.info.run_id
    params = {
        "task": "toy.csv",
        "model": "tiny-bert",
        "epochs": 2,
        "seed": 0,
        "generator": generator,
        "lr": lr,
        "prompt_length": prompt_length,
        **{f"{generator}.{k}": v for k, v in (knobs or {}).items()},
    }
    items = [
        Metric("val_accuracy", v, start + epoch, epoch) for epoch, v in enumerate(history, start=1)
    ]
    items += [
        Metric(C.TRAIN_LOSS, v, start + epoch, epoch) for epoch, v in enumerate(losses, start=1)
    ]
    items += [Metric(k, v, start + 10, 1) for k, v in (metrics or {}).items()]
    client.log_batch(run_id, metrics=items, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status, end_time=start + 50_000)
    return str(run_id)


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory: pytest.TempPathFactory) -> FakeStore:
    """Experiments ``fake-search`` (5 trials), ``fake-pareto`` (2 objectives, 6 trials),
    ``lone`` (1 finished trial) and ``other`` (one run that is not ipt-ray's).

    ``fake-search``, in start order:

    ====  ========  ===========  ======================  ===========  =====================
    name  status    generator    val_accuracy per epoch  train_loss   summary metrics
    ====  ========  ===========  ======================  ===========  =====================
    t1    finished  task         0.60, 0.70              0.50, 0.30   best_val_accuracy 0.70
    t2    finished  prefix       0.82, 0.78 (no best_*)  0.60, 0.45   test_accuracy 0.80
    t3    pruned    ipt-encoder  0.55                    0.70         (stopped by ASHA)
    t4    failed    task         0.50                                 tag error
    t5    killed    prefix       (none)
    ====  ========  ===========  ======================  ===========  =====================
    """
    root = tmp_path_factory.mktemp("fake-store")
    store = FakeStore(uri=f"sqlite:///{root / 'mlflow.db'}", root=root)
    client = mlflow_client(store.uri)
    experiment = client.create_experiment(
        "fake-search", artifact_location=(root / "artifacts").as_uri()
    )
    base = 1_767_225_600_000  # ms
    store.search = write_parent(
        client, experiment, "fake-search", objectives="val_accuracy:max", start=base
    )
    common: dict[str, Any] = {"lr": 1e-3, "prompt_length": 8}

    def trial(name: str, i: int, **kwargs: Any) -> None:
        values = {**common, **kwargs}
        store.trials[name] = write_trial(
            client, experiment, store.search, f"fake_0000{i}", base + 1000 * (i + 1), **values
        )

    trial(
        "t1",
        0,
        status="FINISHED",
        generator="task",
        knobs={"init": "random"},
        history=(0.6, 0.7),
        losses=(0.5, 0.3),
        tags={C.TAG_PRUNED: "false"},
        metrics={
            "best_val_accuracy": 0.7,
            "test_accuracy": 0.66,
            C.TRAINABLE_PARAMS: 320,
            C.TRAINABLE_SHARE: 0.0125,
            "best_epoch": 2,
        },
    )
    trial(
        "t2",
        1,
        status="FINISHED",
        generator="prefix",
        lr=1e-2,
        prompt_length=4,
        knobs={"reparam": False},
        history=(0.82, 0.78),
        losses=(0.6, 0.45),
        tags={C.TAG_PRUNED: "false"},
        metrics={"test_accuracy": 0.8, C.TRAINABLE_PARAMS: 5000, C.TRAINABLE_SHARE: 0.2},
    )
    trial(
        "t3",
        2,
        status="FINISHED",
        generator="ipt-encoder",
        lr=5e-2,
        prompt_length=4,
        knobs={"hidden": 8},
        history=(0.55,),
        losses=(0.7,),
        tags={C.TAG_PRUNED: "true"},
        metrics={C.TRAINABLE_PARAMS: 1200, C.TRAINABLE_SHARE: 0.05},
    )
    trial(
        "t4",
        3,
        status="FAILED",
        generator="task",
        lr=1e-1,
        prompt_length=16,
        history=(0.5,),
        tags={C.TAG_ERROR: "RuntimeError: boom\nsecond line"},
    )
    trial("t5", 4, status="KILLED", generator="prefix", lr=3e-3)

    # Two objectives: (val_accuracy max, trainable_params min).
    pareto_experiment = client.create_experiment(
        "fake-pareto", artifact_location=(root / "pareto-artifacts").as_uri()
    )
    store.pareto_search = write_parent(
        client,
        pareto_experiment,
        "fake-pareto",
        objectives="val_accuracy:max,trainable_params:min",
        start=base,
    )
    points = {
        "A": (0.9, 1000),
        "B": (0.8, 100),
        "C": (0.7, 1000),
        "D": (0.8, 500),
        "E": (0.95, 5000),
        "F": (0.8, 100),
        "G": (0.6, 50),
    }
    for i, (name, (accuracy, size)) in enumerate(points.items()):
        store.pareto[name] = write_trial(
            client,
            pareto_experiment,
            store.pareto_search,
            f"pareto_0000{i}",
            base + 1000 * (i + 1),
            status="FINISHED",
            generator="task",
            lr=1e-3 * (i + 1),
            prompt_length=4,
            history=(accuracy,),
            tags={C.TAG_PRUNED: "false"},
            metrics={"best_val_accuracy": accuracy, C.TRAINABLE_PARAMS: size},
        )

    lone = client.create_experiment("lone", artifact_location=(root / "lone").as_uri())
    store.lone_search = write_parent(
        client, lone, "lone", objectives="val_accuracy:max", start=base + 60_000
    )  # the newest search of the store
    write_trial(
        client,
        lone,
        store.lone_search,
        "lone_00000",
        base + 61_000,
        status="FINISHED",
        generator="task",
        lr=1e-3,
        prompt_length=4,
        history=(0.7,),
        metrics={"best_val_accuracy": 0.7, C.TRAINABLE_PARAMS: 64},
    )

    other = client.create_experiment("other", artifact_location=(root / "other").as_uri())
    unrelated = client.create_run(other, run_name="not-ipt-ray")
    client.log_param(unrelated.info.run_id, "alpha", "0.5")
    client.set_terminated(unrelated.info.run_id)
    store.unrelated = str(unrelated.info.run_id)
    return store


# -- trial_rows, pareto_front ------------------------------------------------------------------
def test_trial_rows_rank_every_trial_with_its_status_and_best_value(fake_store: FakeStore) -> None:
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(fake_store.uri)
    search = find_search(client, experiment="fake-search")
    assert search.run_id == fake_store.search
    assert (search.metric, search.mode, search.objectives) == (
        "val_accuracy",
        "max",
        [("val_accuracy", "max")],
    )
    rows = trial_rows(client, search)
    ids = {v: k for k, v in fake_store.trials.items()}
    assert [ids[r.run_id] for r in rows] == ["t2", "t1", "t3", "t4", "t5"]
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5]
    assert [r.status for r in rows] == ["finished", "finished", "pruned", "failed", "killed"]
    # t2 logged no best_val_accuracy: its best epoch (0.82), not its last (0.78).
    assert [r.value for r in rows] == [0.82, 0.7, 0.55, 0.5, None]
    t2, t1, t3 = rows[0], rows[1], rows[2]
    assert (t2.generator, t2.lr, t2.prompt_length, t2.knobs) == (
        "prefix",
        0.01,
        4,
        {"reparam": "False"},
    )
    assert t2.trial_id == "fake_00001"
    assert t1.knobs == {"init": "random"}
    assert t3.knobs == {"hidden": "8"}
    assert t2.metrics == {"test_accuracy": 0.8, C.TRAINABLE_PARAMS: 5000.0, C.TRAINABLE_SHARE: 0.2}
    assert "test_accuracy" not in t3.metrics


def test_every_read_pages_through_all_runs_and_experiments(
    fake_store: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages far smaller than the search: nothing is cut off (a cap would silently drop
    trials from ``best``, the plots and ``export``), and the ranking is the same."""
    from ipt_ray.tracking import query

    client = mlflow_client(fake_store.uri)
    search = query.find_search(client, experiment="fake-search")
    whole = [(r.run_id, r.value) for r in query.trial_rows(client, search)]
    pareto_whole = query.trial_rows(client, query.find_search(client, experiment="fake-pareto"))
    monkeypatch.setattr(query, "PAGE_SIZE", 2)
    assert [(r.run_id, r.value) for r in query.trial_rows(client, search)] == whole
    assert len(whole) == 5
    paged = query.trial_rows(client, query.find_search(client, experiment="fake-pareto"))
    assert len(paged) == len(pareto_whole) == 7
    monkeypatch.setattr(query, "PAGE_SIZE", 1)  # five experiments, one a page
    assert query.find_search(client).run_id == fake_store.lone_search
    assert query.get_run(client, fake_store.unrelated[:12]).info.run_id == fake_store.unrelated
    result = cli("best", "--experiment", "fake-search", "--tracking-uri", fake_store.uri, "--json")
    assert result.exit_code == 0, result.output
    assert [t["run_id"] for t in json.loads(result.stdout)["trials"]] == [r for r, _ in whole]


def test_trial_rows_rank_by_another_metric(fake_store: FakeStore) -> None:
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(fake_store.uri)
    rows = trial_rows(client, find_search(client, experiment="fake-search"), metric="test_accuracy")
    assert [(r.run_id, r.value) for r in rows[:2]] == [
        (fake_store.trials["t2"], 0.8),
        (fake_store.trials["t1"], 0.66),
    ]
    assert [r.value for r in rows[2:]] == [None, None, None]


def test_pareto_front_is_exactly_the_non_dominated_trials(fake_store: FakeStore) -> None:
    from ipt_ray.tracking import find_search, pareto_front, trial_rows

    client = mlflow_client(fake_store.uri)
    search = find_search(client, search=fake_store.pareto_search)
    assert search.objectives == [("val_accuracy", "max"), ("trainable_params", "min")]
    rows = trial_rows(client, search)
    front = {r.run_id for r in pareto_front(rows, search.objectives)}
    # C and D are dominated (by A and B); B and F are equal points: neither dominates.
    assert front == {fake_store.pareto[n] for n in ("A", "B", "E", "F", "G")}
    assert rows[0].values == {"val_accuracy": 0.95, "trainable_params": 5000.0}


# -- ipt-ray best ------------------------------------------------------------------------------
def test_best_prints_the_ranked_table(fake_store: FakeStore) -> None:
    result = cli("best", "--tracking-uri", fake_store.uri, "--experiment", "fake-search")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"search 'fake-search' (parent run {fake_store.search}), 5 trials, ranked by val_accuracy:"
    )
    header = lines[1].split()
    assert header[:4] == ["#", "trial", "run", "status"] and "val_accuracy" in header
    body = [line.split() for line in lines[2:]]
    assert [b[1] for b in body] == [
        fake_store.trials[n][:12] for n in ("t2", "t1", "t3", "t4", "t5")
    ]
    assert [b[2] for b in body] == ["finished", "finished", "pruned", "failed", "killed"]
    assert "0.8200" in lines[2] and "0.8000" in lines[2] and "5,000" in lines[2]
    assert "20.00%" in lines[2]
    assert "reparam=False" in lines[2] and "hidden=8" in lines[4]
    assert "Pareto" not in result.stdout

    top = cli("best", "--tracking-uri", fake_store.uri, "--experiment", "fake-search", "--top", "2")
    assert len(top.stdout.splitlines()) == 4


def test_best_defaults_to_the_newest_search_and_takes_a_parent_run_id(
    fake_store: FakeStore,
) -> None:
    named = cli("best", "--tracking-uri", fake_store.uri, "--search", fake_store.search, "--json")
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout)["parent_run_id"] == fake_store.search
    newest = cli("best", "--tracking-uri", fake_store.uri, "--json")
    assert newest.exit_code == 0, newest.stderr
    assert json.loads(newest.stdout)["parent_run_id"] == fake_store.lone_search


def test_best_json(fake_store: FakeStore) -> None:
    result = cli("best", "--tracking-uri", fake_store.uri, "--experiment", "fake-search", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["experiment"] == "fake-search" and out["parent_run_id"] == fake_store.search
    assert out["metric"] == "val_accuracy" and out["pareto_front"] is None
    trials = out["trials"]
    assert [t["run_id"] for t in trials] == [
        fake_store.trials[n] for n in ("t2", "t1", "t3", "t4", "t5")
    ]
    assert [t["value"] for t in trials] == [0.82, 0.7, 0.55, 0.5, None]
    assert [t["status"] for t in trials] == ["finished", "finished", "pruned", "failed", "killed"]
    assert trials[0]["lr"] == 0.01 and trials[0]["generator"] == "prefix"


def test_best_metric_override(fake_store: FakeStore) -> None:
    result = cli(
        "best",
        "--tracking-uri",
        fake_store.uri,
        "--experiment",
        "fake-search",
        "--metric",
        "test_accuracy",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["metric"] == "test_accuracy"
    assert [t["value"] for t in out["trials"][:2]] == [0.8, 0.66]
    table = cli(
        "best",
        "--tracking-uri",
        fake_store.uri,
        "--experiment",
        "fake-search",
        "--metric",
        "test_accuracy",
    )
    assert "ranked by test_accuracy:" in table.stdout.splitlines()[0]
    assert "test_accuracy" in table.stdout.splitlines()[1]


def test_best_ranks_a_loss_lowest_first(fake_store: FakeStore) -> None:
    """A metric that is not an objective of the search: losses rank lowest first (needs
    ``query.metric_mode``)."""
    result = cli(
        "best",
        "--tracking-uri",
        fake_store.uri,
        "--experiment",
        "fake-search",
        "--metric",
        C.TRAIN_LOSS,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert [(t["run_id"], t["value"]) for t in trials[:3]] == [
        (fake_store.trials["t1"], 0.3),
        (fake_store.trials["t2"], 0.45),
        (fake_store.trials["t3"], 0.7),
    ]


def test_best_refuses_a_metric_no_trial_logged(fake_store: FakeStore, tmp_path: Path) -> None:
    """A typo in --metric is an error with a suggestion, not a table of blanks (needs the
    check in ``query.trial_rows``)."""
    proc = run_cli(
        "best",
        "--experiment",
        "fake-search",
        "--metric",
        "val_acc",
        "--tracking-uri",
        fake_store.uri,
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "'val_acc'", "did you mean 'val_accuracy'")


def test_best_prints_the_pareto_front_of_two_objectives(fake_store: FakeStore) -> None:
    result = cli("best", "--tracking-uri", fake_store.uri, "--experiment", "fake-pareto")
    assert result.exit_code == 0, result.stderr
    _, _, front = result.stdout.partition(
        "Pareto front on val_accuracy (max) and trainable_params (min):"
    )
    assert front, result.stdout
    shown = {line.split()[1] for line in front.strip().splitlines()[1:]}
    assert shown == {fake_store.pareto[n][:12] for n in ("A", "B", "E", "F", "G")}
    as_json = json.loads(
        cli(
            "best", "--tracking-uri", fake_store.uri, "--experiment", "fake-pareto", "--json"
        ).stdout
    )
    assert set(as_json["pareto_front"]) == {fake_store.pareto[n] for n in "ABEFG"}
    assert as_json["objectives"] == [["val_accuracy", "max"], ["trainable_params", "min"]]


# -- plots -------------------------------------------------------------------------------------
def test_write_search_plots_writes_four_pngs(fake_store: FakeStore, tmp_path: Path) -> None:
    from ipt_ray.tracking.plots import write_search_plots
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(fake_store.uri)
    search = find_search(client, experiment="fake-search")
    rows = trial_rows(client, search)
    # Rows read from MLflow (start times, every param) and rows that hold only their fields.
    bare = [dataclasses.replace(r, started=None, params={}) for r in rows]
    for out, given in ((tmp_path / "from-mlflow", rows), (tmp_path / "rows-only", bare)):
        written = write_search_plots(given, search, out)
        assert [p.name for p in written] == list(PLOTS)
        for path in written:
            assert path.parent == out
            assert png_size(path) == (800, 500)
            assert path.stat().st_size > 10_000  # drawn, not a blank canvas
        assert sorted(p.name for p in out.iterdir()) == sorted(PLOTS)


def test_plots_of_a_search_with_one_trial_say_so_instead_of_failing(
    fake_store: FakeStore,
    tmp_path: Path,
) -> None:
    from ipt_ray.tracking.plots import param_importances, start_order, write_search_plots
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(fake_store.uri)
    search = find_search(client, experiment="lone")
    rows = trial_rows(client, search)
    written = write_search_plots(rows, search, tmp_path)
    assert [png_size(p) for p in written] == [(800, 500)] * 4
    with pytest.raises(ValueError, match="not enough completed trials"):
        param_importances(start_order(rows), [], "max")
    # No trial at all: still four files.
    assert len(write_search_plots([], search, tmp_path / "empty")) == 4


def test_importances_find_the_parameter_that_decides_the_score() -> None:
    """Scores decided by the generator (lr is noise): the generator comes out on top."""
    import random

    from ipt_ray.tracking.plots import param_importances, searched_axes, start_order
    from ipt_ray.tracking.query import TrialRow

    rng = random.Random(0)
    rows = []
    for i in range(16):
        generator = ("task", "prefix")[i % 2]
        rows.append(
            TrialRow(
                rank=0,
                run_id=f"r{i}",
                trial_id=f"x_{i:05d}",
                status="finished",
                generator=generator,
                prompt_length=rng.choice([4, 8]),
                lr=10 ** rng.uniform(-4, -1),
                knobs={},
                value=(0.9 if generator == "prefix" else 0.6) + rng.uniform(0, 0.02),
            )
        )
    trials = start_order(rows)
    axes = searched_axes(trials)
    assert [a.name for a in axes] == ["generator", "lr", "prompt_length"]
    assert [(a.kind, a.log) for a in axes] == [
        ("categorical", False),
        ("float", True),
        ("int", False),
    ]
    scores, evaluator = param_importances(trials, axes, "max")
    assert evaluator in ("fANOVA", "PED-ANOVA")
    assert next(iter(scores)) == "generator"
    assert sum(scores.values()) == pytest.approx(1.0)


def test_plots_of_thousands_of_trials_stay_readable(
    fake_store: FakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markers shrink and fade as trials grow (their legend stays opaque); importances are
    computed on a seeded sample above IMPORTANCE_SAMPLE trials, and the plot says so."""
    import random

    from ipt_ray.tracking.plots import importances, write_search_plots
    from ipt_ray.tracking.plots.figures import crowd
    from ipt_ray.tracking.query import TrialRow, find_search

    assert crowd(10) == (36.0, 1.0)
    assert crowd(2000)[0] < 8 and crowd(2000)[1] < 0.2
    assert crowd(2000) < crowd(200) < crowd(51)
    rng = random.Random(0)
    rows = []
    for i in range(300):
        generator = ("task", "prefix")[i % 2]
        settings = {"generator": generator, "lr": 10 ** rng.uniform(-3, -1), "prompt_length": 4}
        rows.append(
            TrialRow.from_params(
                settings,
                rank=0,
                run_id=f"r{i}",
                trial_id=f"x_{i:05d}",
                status="finished",
                value=(0.9 if generator == "prefix" else 0.6) + rng.uniform(0, 0.02),
                metrics={C.TRAINABLE_PARAMS: 100.0 if generator == "task" else 400.0},
                started=float(i),
                params={k: str(v) for k, v in settings.items()},
            )
        )
    monkeypatch.setattr(importances, "IMPORTANCE_SAMPLE", 100)
    sample = importances.importance_sample(rows)
    assert len(sample) == 100 and sample == importances.importance_sample(rows)  # seeded
    scores, _ = importances.param_importances(rows, importances_axes(rows), "max")
    assert next(iter(scores)) == "generator", "the sample still finds what decides the score"
    client = mlflow_client(fake_store.uri)
    written = write_search_plots(rows, find_search(client, experiment="fake-search"), tmp_path)
    assert [p.name for p in written] == list(PLOTS)


def importances_axes(rows: list[Any]) -> Any:
    from ipt_ray.tracking.plots import searched_axes, start_order

    return searched_axes(start_order(rows))


def test_importances_without_scikit_learn_fall_back_to_ped_anova(
    monkeypatch: pytest.MonkeyPatch,
    fake_store: FakeStore,
    tmp_path: Path,
) -> None:
    """Where scikit-learn cannot be imported (an mlflow-skinny install) the importances come
    from PED-ANOVA (numpy only) and the plot is still written."""
    from ipt_ray.tracking.plots import (
        param_importances,
        searched_axes,
        start_order,
        write_search_plots,
    )
    from ipt_ray.tracking.query import find_search, trial_rows

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    client = mlflow_client(fake_store.uri)
    search = find_search(client, experiment="fake-pareto")
    rows = trial_rows(client, search)
    trials = start_order(rows)
    scores, evaluator = param_importances(trials, searched_axes(trials), "max")
    assert evaluator == "PED-ANOVA"
    assert list(scores) == ["lr"] and scores["lr"] == pytest.approx(1.0)
    written = write_search_plots(rows, search, tmp_path)
    assert png_size(written[1]) == (800, 500)


def test_log_search_plots_puts_them_under_plots_of_the_parent_run(
    fake_store: FakeStore,
) -> None:
    from ipt_ray.tracking.plots import log_search_plots
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(fake_store.uri)
    search = find_search(client, experiment="fake-pareto")
    paths = log_search_plots(client, search, trial_rows(client, search))
    assert paths == [f"plots/{name}" for name in PLOTS]
    listed = {f.path: f.file_size for f in client.list_artifacts(search.run_id, "plots")}
    assert set(listed) == set(paths)
    assert all(size > 10_000 for size in listed.values())
    # Also in the run's description, where MLflow's UI shows them on top of the run's page
    # (the images load from the artifacts: checked in a real browser, docs/screenshots.py).
    note = client.get_run(search.run_id).data.tags["mlflow.note.content"]
    run = search.run_id
    assert note.startswith("**Plots**")  # this fake search had no description before
    for name in PLOTS:
        assert f"(get-artifact?path=plots%2F{name}&run_uuid={run})" in note
    log_search_plots(client, search, trial_rows(client, search))  # again: replaced, not added
    assert client.get_run(search.run_id).data.tags["mlflow.note.content"] == note


def test_best_plot_writes_the_plots(fake_store: FakeStore, tmp_path: Path) -> None:
    result = cli(
        "best",
        "--tracking-uri",
        fake_store.uri,
        "--experiment",
        "fake-search",
        "--plot",
        tmp_path / "plots",
    )
    assert result.exit_code == 0, result.stderr
    assert "plots: " in result.stdout
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOTS)


# -- bad input ---------------------------------------------------------------------------------
BAD_INPUT = {
    # id: (args after the command, fragments of the error line)
    "unknown-experiment": (
        ["best", "--experiment", "fake-serch"],
        ["unknown experiment 'fake-serch'", "did you mean 'fake-search'"],
    ),
    "export-unknown-experiment": (
        ["export", "--experiment", "fake-serch"],
        ["did you mean 'fake-search'"],
    ),
    "missing-run": (["export", MISSING_RUN], [f"no run {MISSING_RUN!r}"]),
    "not-a-trial": (["export", "{unrelated}"], ["is not an ipt-ray trial or search run"]),
    "failed-trial": (
        ["export", "{t4}"],
        ["is FAILED", "RuntimeError: boom", "only finished trials"],
    ),
    "no-checkpoint": (["export", "{t1}"], ["has no checkpoint artifacts"]),
    "search-without-checkpoints": (
        ["export", "--experiment", "fake-search"],
        ["has no finished trial with a checkpoint"],
    ),
    "trial-as-search": (
        ["best", "--search", "{t1}"],
        ["is not a search (parent) run", "it is a trial of search"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(fake_store: FakeStore, tmp_path: Path, case: str) -> None:
    args, fragments = BAD_INPUT[case]
    names = {"unrelated": fake_store.unrelated, **fake_store.trials}
    args = [a.format(**names) for a in args]
    out = tmp_path / "new" / "bundle"
    if args[0] == "export":
        args += ["--out", str(out)]
    proc = run_cli(*args, "--tracking-uri", fake_store.uri, cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "new").exists()  # neither --out nor a parent of it
    assert proc.stdout == ""


def test_ui_is_one_worker_and_prints_the_searchs_page(
    fake_store: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    commands: list[list[str]] = []
    envs: list[dict[str, str]] = []

    def execvpe(_: str, command: list[str], env: dict[str, str]) -> None:
        commands.append(command)
        envs.append(env)

    monkeypatch.setattr(os, "execvpe", execvpe)
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    client = mlflow_client(fake_store.uri)
    for args, name in (([], "lone"), (["--experiment", "fake-search"], "fake-search")):
        result = cli("ui", "--tracking-uri", fake_store.uri, "--port", "5055", *args)
        assert result.exit_code == 0, result.output
        experiment_id = client.get_experiment_by_name(name).experiment_id
        assert result.stdout.splitlines() == [
            "MLflow UI on http://127.0.0.1:5055 (Ctrl-C stops it)",
            f"  search {name!r}: http://127.0.0.1:5055/#/experiments/{experiment_id}"
            "?workflowType=machine_learning",
        ]
    command = commands[0]
    assert command[command.index("--workers") + 1] == "1"
    assert command[command.index("--backend-store-uri") + 1] == fake_store.uri
    assert envs[0]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"  # no GenAI job runner
    result = cli("ui", "--tracking-uri", fake_store.uri, "--experiment", "nope")
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.stderr
    assert len(commands) == 2, "a refused experiment starts no server"


def test_missing_store_and_unreachable_server(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mlflow.db"
    for command in (["best"], ["export", "--out", str(tmp_path / "b")]):
        proc = run_cli(*command, "--tracking-uri", f"sqlite:///{missing}", cwd=tmp_path)
        assert_one_line_error(proc, f"no MLflow store at {missing}")
        assert not missing.exists() and not (tmp_path / "b").exists()
    # The default store: ./ipt-ray-runs/mlflow.db of the current directory.
    proc = run_cli("best", cwd=tmp_path)
    assert_one_line_error(proc, "no MLflow store at", "ipt-ray-runs")
    assert not (tmp_path / "ipt-ray-runs").exists()
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["best"], ["export", "--out", str(tmp_path / "b")]):
        proc = run_cli(*command, "--tracking-uri", url, cwd=tmp_path)
        assert_one_line_error(proc, f"cannot reach the MLflow tracking server {url}")
        assert not (tmp_path / "b").exists()


# -- real searches (Ray) -----------------------------------------------------------------------
GENERATORS = {"task": {}, "prefix": {}, "ipt-encoder": {"hidden": 8}}


def space_text(
    model: Path,
    task: Path,
    *,
    generators: dict[str, dict[str, Any]],
    num_samples: int,
    seed: int,
    epochs: int = 2,
) -> str:
    choices = ", ".join(f"{name}: {json.dumps(knobs)}" for name, knobs in generators.items())
    return tiny_space_text(
        model,
        task,
        search=f"num_samples: {num_samples}\nseed: {seed}\nscheduler: none\n"
        f"searcher: {{n_startup_trials: {num_samples}}}",
        params="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
        f"generator: {{choices: {{{choices}}}}}",
        epochs=epochs,
    )


def space_covering(
    model: Path, task: Path, generators: dict[str, dict[str, Any]], **kwargs: Any
) -> Any:
    """A space whose seeded startup trials draw every generator once (as OptunaSearch asks)."""
    import optuna

    from ipt_ray.tuning.space import parse_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in range(50):
        space = parse_space(
            space_text(
                model, task, generators=generators, num_samples=len(generators), seed=seed, **kwargs
            )
        )
        study = optuna.create_study(sampler=space.settings.tpe_sampler(), direction="maximize")
        drawn = []
        for _ in generators:
            trial = study.ask()
            space.define_by_run(trial)
            drawn.append(trial.params["generator"])
        if sorted(drawn) == sorted(generators):
            return space
    raise AssertionError("no seed below 50 draws every generator")


@dataclass
class RealSearch:
    uri: str
    root: Path
    summary: Any
    by_generator: dict[str, Any]  # generator -> child run


def run_search(space: Any, **kwargs: Any) -> Any:
    from ipt_ray.tuning.run import run_search as run

    return run(space, **kwargs)


def child_runs(uri: str, summary: Any) -> list[Any]:
    runs = mlflow_client(uri).search_runs([summary.experiment_id])
    return [r for r in runs if r.data.tags.get(C.TAG_PARENT_RUN) == summary.parent_run_id]


@pytest.fixture(scope="module")
def real_search(
    ray_session: None,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> RealSearch:
    """A finished search on a local sqlite store: one trial each of task, prefix and
    ipt-encoder, 2 epochs, no early stopping."""
    root = tmp_path_factory.mktemp("real-search")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    space = space_covering(tiny_models["bert"], toy_csv, GENERATORS)
    summary = run_search(
        space,
        name="e2e",
        tracking_uri=uri,
        storage=root / "ray",
        artifact_root=root / "mlartifacts",
    )
    assert summary.counts["finished"] == 3, summary.trials
    children = child_runs(uri, summary)
    by_generator = {c.data.params["generator"]: c for c in children}
    assert sorted(by_generator) == sorted(GENERATORS)
    return RealSearch(uri, root, summary, by_generator)


@pytest.mark.ray
def test_best_lists_the_real_search(real_search: RealSearch, tmp_path: Path) -> None:
    result = cli("best", "--tracking-uri", real_search.uri, "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    summary = real_search.summary
    assert out["experiment"] == "e2e" and out["parent_run_id"] == summary.parent_run_id
    assert [t["run_id"] for t in out["trials"]] == [t.run_id for t in summary.top]
    assert [t["value"] for t in out["trials"]] == pytest.approx([t.value for t in summary.top])
    assert {t["status"] for t in out["trials"]} == {"finished"}
    assert {t["generator"] for t in out["trials"]} == set(GENERATORS)
    assert all(t["metrics"][C.TRAINABLE_PARAMS] > 0 for t in out["trials"])
    assert out["trials"][0]["run_id"] == summary.best.run_id
    # What MLflow's UI shows of each trial: its name, description and dataset (the task).
    digests = set()
    for generator, run in real_search.by_generator.items():
        assert run.info.run_name.startswith(f"{generator}-P")
        assert "mlflow.note.content" in run.data.tags
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.name == run.data.params["task"]
        assert json.loads(dataset.dataset.profile)["train"] > 0
        digests.add(dataset.dataset.digest)
    assert len(digests) == 1, "the same task: the same digest"


def test_the_search_end_table_is_the_best_table(real_search: RealSearch) -> None:
    """What a search prints at its end and what ``ipt-ray best`` prints later: same rows."""
    from ipt_ray.cli.format import format_summary_table

    result = cli("best", "--tracking-uri", real_search.uri)
    assert result.exit_code == 0, result.stderr
    end_table = format_summary_table(real_search.summary)
    assert end_table == result.stdout.splitlines()[1 : 1 + len(end_table)]
    assert len(end_table) == 1 + len(real_search.summary.top)
    assert "share" in end_table[0].split() and "%" in end_table[1]


@pytest.mark.ray
def test_exported_bundle_predicts_like_the_trials_checkpoint(
    real_search: RealSearch, tmp_path: Path
) -> None:
    """`ipt-ray export` of the search's best trial, loaded back: the same logits as the
    trial's checkpoint in MLflow, and the test accuracy MLflow recorded for the trial."""
    from ipt_ray.artifacts.bundle import load_bundle
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.data import load_task

    out = tmp_path / "bundle"
    result = cli("export", "--experiment", "e2e", "--out", out, "--tracking-uri", real_search.uri)
    assert result.exit_code == 0, result.stderr
    best = real_search.summary.best
    assert f"exported trial run {best.run_id} (val_accuracy " in result.stdout
    config = json.loads((out / "ipt_config.json").read_text())
    assert config["provenance"]["trial_run_id"] == best.run_id
    assert config["provenance"]["parent_run_id"] == real_search.summary.parent_run_id

    client = mlflow_client(real_search.uri)
    checkpoint = Path(client.download_artifacts(best.run_id, "checkpoint", str(tmp_path / "ckpt")))
    meta = json.loads((checkpoint / C.CONFIG_FILE).read_text())
    train_config = TrainConfig.from_dict(meta["train_config"])
    test = load_task(train_config.task, **train_config.task_kwargs()).test
    loaded = load_bundle(out)
    logits = loaded.logits(test.texts)
    import numpy as np

    np.testing.assert_allclose(logits, reference_logits(checkpoint, test.texts), atol=1e-5, rtol=0)
    predicted = logits.argmax(axis=1)
    accuracy = float((predicted == np.asarray(test.labels)).mean())
    recorded = client.get_run(best.run_id).data.metrics["test_accuracy"]
    assert accuracy == pytest.approx(recorded)


@pytest.mark.ray
def test_export_peft_for_static_winners_only(real_search: RealSearch, tmp_path: Path) -> None:
    for generator in ("task", "prefix"):
        run_id = real_search.by_generator[generator].info.run_id
        out = tmp_path / f"peft-{generator}"
        result = cli(
            "export", run_id, "--format", "peft", "--out", out, "--tracking-uri", real_search.uri
        )
        assert result.exit_code == 0, result.stderr
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert (
            adapter["peft_type"] == {"task": "PROMPT_TUNING", "prefix": "PREFIX_TUNING"}[generator]
        )
        assert (out / "adapter_model.safetensors").stat().st_size > 0
    instance_wise = real_search.by_generator["ipt-encoder"].info.run_id
    out = tmp_path / "peft-ipt-encoder"
    proc = run_cli(
        "export",
        instance_wise,
        "--format",
        "peft",
        "--out",
        out,
        "--tracking-uri",
        real_search.uri,
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "generator 'ipt-encoder' is instance-wise", "use --format ipt")
    assert not out.exists()
    assert not list(tmp_path.glob(".peft-ipt-encoder*"))  # no half-written folder either


@pytest.mark.ray
def test_export_register_creates_a_model_version_of_the_run(
    real_search: RealSearch, tmp_path: Path
) -> None:
    """A real search's trial, registered (names MLflow refuses: tests/test_pyfunc.py)."""
    client = mlflow_client(real_search.uri)
    run_id = real_search.by_generator["prefix"].info.run_id
    result = cli(
        "export",
        run_id,
        "--out",
        tmp_path / "bundle",
        "--register",
        "toy-prompts",
        "--tracking-uri",
        real_search.uri,
    )
    assert result.exit_code == 0, result.stderr
    assert "registered as model 'toy-prompts' version 1" in result.stdout
    version = client.get_model_version("toy-prompts", "1")
    assert version.run_id == run_id
    assert version.tags["generator"] == "prefix"
    assert version.source.startswith("models:/m-")  # the pyfunc model logged to the run
    run = client.get_run(run_id)
    assert [f"models:/{o.model_id}" for o in run.outputs.model_outputs] == [version.source]
    assert run.info.status == "FINISHED"


@pytest.mark.ray
def test_plots_of_the_real_search(real_search: RealSearch, tmp_path: Path) -> None:
    from ipt_ray.tracking.plots import log_search_plots
    from ipt_ray.tracking.query import find_search, trial_rows

    client = mlflow_client(real_search.uri)
    search = find_search(client, search=real_search.summary.parent_run_id)
    assert log_search_plots(client, search, trial_rows(client, search)) == [
        f"plots/{name}" for name in PLOTS
    ]
    local = Path(client.download_artifacts(search.run_id, "plots", str(tmp_path)))
    assert [png_size(local / name) for name in PLOTS] == [(800, 500)] * 4


# -- a real mlflow server ----------------------------------------------------------------------
# Slow (about 40 s with its server): the default suite keeps a real server in test_journal.py,
# and `best`/`export` on a SQLite store above.
@pytest.mark.ray
@pytest.mark.slow
def test_best_and_export_against_a_tracking_server(
    ray_session: None,
    tiny_models: dict[str, Path],
    toy_csv: Path,
    tmp_path: Path,
) -> None:
    from ipt_ray.artifacts.bundle import load_bundle
    from ipt_ray.tracking.plots import log_search_plots
    from ipt_ray.tracking.query import client_for, find_search, trial_rows

    generators = {"task": {}, "prefix": {}}
    space = space_covering(tiny_models["bert"], toy_csv, generators, epochs=1)
    with mlflow_server(tmp_path / "server") as url:
        summary = run_search(space, name="served", tracking_uri=url, storage=tmp_path / "ray")
        assert summary.counts["finished"] == 2, summary.trials

        result = cli("best", "--tracking-uri", url, "--experiment", "served", "--json")
        assert result.exit_code == 0, result.stderr
        trials = json.loads(result.stdout)["trials"]
        assert [t["run_id"] for t in trials] == [t.run_id for t in summary.top]

        out = tmp_path / "bundle"
        result = cli(
            "export",
            summary.parent_run_id,
            "--out",
            out,
            "--tracking-uri",
            url,
            "--register",
            "served-prompts",
        )
        assert result.exit_code == 0, result.stderr
        assert f"exported trial run {summary.best.run_id}" in result.stdout
        client, _ = client_for(url)
        assert client.get_model_version("served-prompts", "1").run_id == summary.best.run_id
        import mlflow
        import pandas as pd

        mlflow.set_tracking_uri(url)  # models:/ resolves through MLflow's process-wide store
        try:
            served = mlflow.pyfunc.load_model("models:/served-prompts/1")
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        predicted = served.predict(pd.DataFrame({"text": ["a good movie", "a dull film"]}))
        assert list(predicted["label"]) == [
            p["label"] for p in load_bundle(out).predict(["a good movie", "a dull film"])
        ]
        checkpoint = Path(
            client.download_artifacts(summary.best.run_id, "checkpoint", str(tmp_path / "ckpt"))
        )
        texts = ["a good movie", "a dull and boring film", "it was fine"]
        import numpy as np

        np.testing.assert_allclose(
            load_bundle(out).logits(texts), reference_logits(checkpoint, texts), atol=1e-5, rtol=0
        )

        search = find_search(client, experiment="served")
        assert log_search_plots(client, search, trial_rows(client, search)) == [
            f"plots/{name}" for name in PLOTS
        ]
        assert list((tmp_path / "server" / "server-artifacts").rglob("plots/*.png"))

        # A run the server does not have: one line, exit 2.
        proc = run_cli(
            "export",
            MISSING_RUN,
            "--out",
            tmp_path / "nothing",
            "--tracking-uri",
            url,
            cwd=tmp_path,
        )
        assert_one_line_error(proc, f"no run {MISSING_RUN!r}")
        assert not (tmp_path / "nothing").exists()
