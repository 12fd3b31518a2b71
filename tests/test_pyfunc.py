"""Registered prompts are MLflow models: ``export --register NAME`` logs a pyfunc model of the
trial's run and registers it, so that ``mlflow.pyfunc.load_model("models:/NAME/1")`` predicts
and ``mlflow models serve`` answers; ``export --format mlflow`` writes the same model to a
folder. No Ray: the trial run is written the way the tracker writes one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.testing import assert_one_line_error, free_port, run_cli, train_checkpoint

TEXTS = ["a gripping, moving film", "dull and overlong", "fine"]


@dataclass
class Store:
    uri: str
    trial: str  # run id
    checkpoint: Path


def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def write_search(root: Path, checkpoint: Path, *, name: str = "toy") -> Store:
    """A search (parent run) with one finished trial whose ``checkpoint/`` artifacts are
    ``checkpoint``, as :class:`ipt_ray.tracking.SearchTracker` writes them."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow_client(uri)
    experiment = client.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={C.TAG_KIND: C.KIND_SEARCH})
    parent_id = parent.info.run_id
    for key, value in {
        "space": name,
        "metric": "val_accuracy",
        "mode": "max",
        "objectives": "val_accuracy:max",
    }.items():
        client.log_param(parent_id, key, value)
    trial = client.create_run(
        experiment,
        tags={C.TAG_KIND: C.KIND_TRIAL, C.TAG_PARENT_RUN: parent_id, C.TAG_TRIAL_ID: "t_00000"},
    )
    run_id = trial.info.run_id
    client.log_param(run_id, "generator", "prefix")
    for key, value in {
        "val_accuracy": 0.75,
        "best_val_accuracy": 0.75,
        "test_accuracy": 0.625,
        "test_f1_macro": 0.6,
        C.TRAINABLE_PARAMS: 1234,
        C.BACKBONE_PARAMS: 56789,
    }.items():
        client.log_metric(run_id, key, value, step=1)
    client.log_artifacts(run_id, str(checkpoint), "checkpoint")
    client.set_terminated(run_id, "FINISHED")
    client.set_terminated(parent_id, "FINISHED")
    return Store(uri, run_id, checkpoint)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_models, toy_csv) -> Store:
    root = tmp_path_factory.mktemp("pyfunc")
    checkpoint = train_checkpoint(
        root / "ckpt", tiny_models["bert"], toy_csv, generator="prefix", prompt_length=2
    )
    return write_search(root, checkpoint)


@pytest.fixture(scope="module")
def registered(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ipt-ray export TRIAL --register toy-prompts``, run as a user runs it; the bundle."""
    cwd = tmp_path_factory.mktemp("registered")
    out = cwd / "bundle"
    proc = run_cli(
        "export",
        store.trial,
        "--out",
        out,
        "--register",
        "toy-prompts",
        "--tracking-uri",
        store.uri,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["bundle"], "nothing else in the folder"
    assert "registered as model 'toy-prompts' version 1" in proc.stdout
    return out


def expected(bundle: Path, texts: list[str]) -> list[dict[str, Any]]:
    from ipt_ray.artifacts.bundle import load_bundle

    return load_bundle(bundle).predict(texts)


def test_a_registered_version_loads_as_a_pyfunc_model_and_predicts(
    store: Store, registered: Path
) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(store.uri)
    try:
        model = mlflow.pyfunc.load_model("models:/toy-prompts/1")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == ["text"]
    out = model.predict(pd.DataFrame({"text": TEXTS}))
    want = expected(registered, TEXTS)
    labels = [w["label"] for w in want]
    assert list(out["label"]) == labels
    names = list(want[0]["probabilities"])
    assert list(out.columns) == ["label", *(f"prob_{n}" for n in names)]
    for row, w in zip(out.itertuples(index=False), want, strict=True):
        probs = [getattr(row, f"prob_{n}") for n in names]
        assert probs == pytest.approx([w["probabilities"][n] for n in names], abs=1e-9)
    assert model.metadata.get_output_schema().input_names() == list(out.columns)


def test_the_version_and_the_bundle_carry_the_trials_scores(store: Store, registered: Path) -> None:
    client = mlflow_client(store.uri)
    version = client.get_model_version("toy-prompts", "1")
    assert version.run_id == store.trial
    models = client.search_logged_models([client.get_run(store.trial).info.experiment_id])
    assert [(m.source_run_id, str(m.status)) for m in models] == [(store.trial, "READY")]
    assert version.source == f"models:/{models[0].model_id}"  # the version is that model
    assert version.tags["generator"] == "prefix"
    assert version.tags["val_accuracy"] == "0.75"
    assert version.tags["test_accuracy"] == "0.625"
    assert version.tags[C.TRAINABLE_PARAMS] == "1234"
    assert version.tags[C.BACKBONE_PARAMS] == "56789"
    config = json.loads((registered / "ipt_config.json").read_text())
    assert config["metric"]["test"] == {"accuracy": 0.625, "f1_macro": 0.6}
    assert "test accuracy" in (registered / "README.md").read_text()
    run = client.get_run(store.trial)
    assert run.info.status == "FINISHED", "logging the model must not reopen the trial's run"
    assert [o.model_id for o in run.outputs.model_outputs] == [models[0].model_id]


def test_a_bad_register_name_writes_nothing(store: Store, tmp_path: Path) -> None:
    client = mlflow_client(store.uri)
    before = len(client.search_logged_models([client.get_run(store.trial).info.experiment_id]))
    for bad in ("team/prompts", " "):
        proc = run_cli(
            "export",
            store.trial,
            "--out",
            tmp_path / "refused",
            "--register",
            bad,
            "--tracking-uri",
            store.uri,
            cwd=tmp_path,
        )
        assert_one_line_error(proc, "--register", "model name")
        assert not (tmp_path / "refused").exists()
    after = len(client.search_logged_models([client.get_run(store.trial).info.experiment_id]))
    assert after == before


def test_format_mlflow_writes_a_model_folder_without_a_pickle(store: Store, tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    out = tmp_path / "model"
    proc = run_cli("export", store.checkpoint, "--out", out, "--format", "mlflow", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "MLmodel").is_file()
    assert not list(out.rglob("*.pkl")), "a models-from-code model: no pickle"
    model = mlflow.pyfunc.load_model(str(out))
    bundle = next(out.rglob("ipt_config.json")).parent
    assert list(model.predict(pd.DataFrame({"text": TEXTS}))["label"]) == [
        w["label"] for w in expected(bundle, TEXTS)
    ]
    proc = run_cli("export", store.checkpoint, "--out", out, "--format", "mlflow", cwd=tmp_path)
    assert_one_line_error(proc, "--out", "not an empty folder")


def test_a_pair_model_takes_text_and_text_pair(tiny_models, tmp_path: Path) -> None:
    import pandas as pd

    from ipt_ray.testing import write_toy_csv
    from ipt_ray.tracking.pyfunc import BundleModel

    task = write_toy_csv(tmp_path / "pairs.csv", n=40, pair=True)
    checkpoint = train_checkpoint(tmp_path / "ckpt", tiny_models["bert"], task, generator="task")
    out = tmp_path / "model"
    proc = run_cli("export", checkpoint, "--out", out, "--format", "mlflow", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import mlflow

    model = mlflow.pyfunc.load_model(str(out))
    assert model.metadata.get_input_schema().input_names() == ["text", "text_pair"]
    out_frame = model.predict(pd.DataFrame({"text": TEXTS, "text_pair": TEXTS[::-1]}))
    assert len(out_frame) == 3
    inner = model.unwrap_python_model()
    assert isinstance(inner, BundleModel)
    from ipt_ray.errors import UserError

    with pytest.raises(UserError, match="lacks column 'text_pair'"):
        inner.predict(None, pd.DataFrame({"text": TEXTS}))


def test_mlflow_models_serve_answers_invocations(store: Store, registered: Path) -> None:
    """A real ``mlflow models serve`` of ``models:/toy-prompts/1`` in this environment."""
    port = free_port()
    # As in an activated environment: MLflow starts ``uvicorn`` from PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "PATH": path}
    mlflow_cli = [sys.executable, "-m", "mlflow"]
    server = subprocess.Popen(
        [
            *mlflow_cli,
            "models",
            "serve",
            "-m",
            "models:/toy-prompts/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    out = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"mlflow models serve did not come up:\n{out[-3000:]}")
                time.sleep(0.5)
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    rows = answer["predictions"]
    assert [r["label"] for r in rows] == [w["label"] for w in expected(registered, TEXTS)]
