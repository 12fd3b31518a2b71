"""The Python API (``ipt_ray.train``, ``best``, ``export``, ``search``): what each command
runs, as a call. Errors name settings as keyword arguments; ``to_dict()`` is the command's
``--json`` object. No Ray starts here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ipt_ray
from ipt_ray.errors import ConfigError, SettingError


def test_the_top_level_names_are_the_library_calls() -> None:
    from ipt_ray.tracking.best import best
    from ipt_ray.tracking.export import export
    from ipt_ray.training.api import train
    from ipt_ray.tuning.api import search

    assert (ipt_ray.train, ipt_ray.best, ipt_ray.export, ipt_ray.search) == (
        train,
        best,
        export,
        search,
    )
    assert {"train", "best", "export", "search", "load_bundle"} <= set(dir(ipt_ray))


def test_train_writes_a_checkpoint_and_its_json(tiny_models, toy_csv, tmp_path: Path) -> None:
    epochs: list[int] = []
    summary = ipt_ray.train(
        {"task": str(toy_csv), "model": str(tiny_models["bert"]), "generator": "ipt-encoder"},
        out=tmp_path / "ckpt",
        on_epoch_end=lambda result, run: epochs.append(result.epoch),
        encoder="cnn",  # a knob, routed to generator_options
        prompt_length=4,
        max_length=16,
        epochs=2,
        device="cpu",
    )
    assert epochs == [1, 2]
    out = json.loads(json.dumps(summary.to_dict()))
    assert out["config"]["generator_options"] == {"encoder": "cnn"}
    assert out["checkpoint"] == str(tmp_path / "ckpt")
    assert 0.0 <= out["test_accuracy"] <= 1.0 and isinstance(out["trainable_params"], int)
    assert len(out["history"]) == 2
    assert (tmp_path / "ckpt" / "config.json").exists()
    # The checkpoint exports as a bundle that loads.
    exported = ipt_ray.export(tmp_path / "ckpt", out=tmp_path / "bundle")
    assert exported.path == tmp_path / "bundle" and exported.run_id is None
    bundle = ipt_ray.load_bundle(exported.path)
    assert bundle is not None


def test_train_refuses_an_unknown_setting_with_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'bottleneck'"):
        ipt_ray.train(generator="idpg", botleneck=3)


def test_train_refuses_a_used_folder_before_training(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(SettingError, match=r"^out .* already exists"):
        ipt_ray.train(task="no-such-task-checked-later", out=tmp_path / "used")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top": 0}, "top must be at least 1, got 0"),
        ({"experiment": "a", "search": "b"}, "give experiment or search, not both"),
    ],
    ids=["top", "both"],
)
def test_best_names_its_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        ipt_ray.best(**kwargs)  # type: ignore[arg-type]


def test_best_without_a_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(ipt_ray.UserError, match="no MLflow store"):
        ipt_ray.best(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "abc", "experiment": "e"}, "give a source or an experiment, not both"),
        ({"format": "onnx"}, "format must be one of ipt, peft, mlflow, got 'onnx'"),
        ({"format": "peft", "register": "m"}, "register takes an ipt bundle"),
    ],
    ids=["both", "format", "register-peft"],
)
def test_export_names_its_settings(kwargs: dict[str, object], message: str, tmp_path) -> None:
    with pytest.raises(SettingError, match=message):
        ipt_ray.export(out=tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "b").exists()


def test_a_run_id_prefix_names_the_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from ipt_ray.tracking.query import get_run

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "a"))
    run_id = client.create_run(experiment).info.run_id
    assert get_run(client, run_id[:12]).info.run_id == run_id  # what `ipt-ray best` prints
    with pytest.raises(ipt_ray.UserError, match="no run"):
        get_run(client, "abcdef12" if not run_id.startswith("abcdef12") else "fedcba98")
