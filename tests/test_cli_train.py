"""`ipt-ray train` as a user runs it: JSON summary, checkpoint, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ipt_ray.core.checkpoint import load_weights, read_config
from ipt_ray.testing import assert_one_line_error
from ipt_ray.testing import run_cli as ipt_ray


def tiny_args(tiny_models, toy_csv, *extra: str) -> list[str]:
    return [
        "train",
        "--task",
        str(toy_csv),
        "--model",
        str(tiny_models["bert"]),
        "--prompt-length",
        "4",
        "--max-length",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        *extra,
    ]


def test_train_json_and_checkpoint(tiny_models, toy_csv, tmp_path):
    out = tmp_path / "ckpt"
    proc = ipt_ray(
        *tiny_args(
            tiny_models,
            toy_csv,
            "--generator",
            "ipt-encoder",
            "--set",
            "encoder=cnn",
            "--set",
            "hidden=8",
            "--set",
            "warmup_ratio=0.1",
            "--out",
            str(out),
            "--json",
        )
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[1].startswith("epoch 1/2") and lines[2].startswith("epoch 2/2")
    summary = json.loads(lines[-1])
    for key in (
        "test_accuracy",
        "val_accuracy",
        "test_f1_macro",
        "trainable_params",
        "backbone_params",
        "seconds_per_epoch",
    ):
        assert key in summary, key
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["config"]["generator_options"] == {"encoder": "cnn", "hidden": 8}
    assert summary["config"]["warmup_ratio"] == 0.1
    config = read_config(out)
    assert config["generator_config"]["encoder"] == "cnn"
    assert config["label_names"] == ["negative", "positive"]
    weights = load_weights(out)
    assert any(k.startswith("generator.") for k in weights) and "head.weight" in weights
    assert all(isinstance(v, torch.Tensor) for v in weights.values())


@pytest.mark.parametrize(
    "command",
    [[], ["train"], ["search"], ["best"], ["export"], ["predict"], ["prompts"], ["ui"], ["jobs"]],
    ids=lambda c: " ".join(c) or "root",
)
def test_every_command_has_help(command):
    from typer.testing import CliRunner

    from ipt_ray.cli.app import app

    known = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands} | {
        g.name for g in app.registered_groups
    }
    assert not command or command[0] in known, f"no command {command[0]}"
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    # Flags show no <bool> value; a required argument shows as SPACE, not {space}.
    assert "<bool>" not in result.output and "{" not in result.output


BAD_INPUTS = {
    "unknown-generator": (
        ["--generator", "idgp"],
        "unknown generator 'idgp' (did you mean 'idpg'?)",
    ),
    "unknown-knob": (["--set", "botleneck=3", "--generator", "idpg"], "did you mean 'bottleneck'"),
    "bad-knob-value": (
        ["--generator", "ipt-encoder", "--set", "encoder=rnn"],
        "encoder must be one of cnn, lstm, mlp, got 'rnn'",
    ),
    "non-positive-lr": (["--lr", "0"], "lr must be a positive number, got 0.0"),
    "negative-lr": (["--lr", "-0.1"], "lr must be a positive number"),
    "prompt-does-not-fit": (["--prompt-length", "60"], "exceeds the 64 positions"),
    "unknown-task": (["--task", "sst-3"], "unknown task 'sst-3'"),
    "unknown-model": (["--model", "no-such-model-xyz"], "could not load model 'no-such-model-xyz'"),
    "missing-column": (["--label-column", "sentiment"], "sentiment"),
    "label-outside-set": (["--labels", "negative,neutral"], "positive"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS), ids=str)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tiny_models, toy_csv, tmp_path):
    extra, expected = BAD_INPUTS[case]
    out = tmp_path / "out"
    proc = ipt_ray(*tiny_args(tiny_models, toy_csv, *extra, "--out", str(out)), cwd=tmp_path)
    assert_one_line_error(proc, expected)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing half-written"


def test_empty_data_file_is_refused(tiny_models, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    proc = ipt_ray("train", "--task", str(empty), "--model", str(tiny_models["bert"]))
    assert "empty" in assert_one_line_error(proc).lower()


def test_existing_out_folder_is_refused_before_training(tiny_models, toy_csv, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = ipt_ray(*tiny_args(tiny_models, toy_csv, "--out", str(out)))
    assert_one_line_error(proc, "already exists")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    "command",
    [["list"], ["status", "raysubmit_x"], ["logs", "raysubmit_x"], ["stop", "raysubmit_x"]],
    ids=lambda c: c[0],
)
def test_jobs_commands_report_an_unreachable_dashboard_in_one_line(command):
    proc = ipt_ray("jobs", *command, "--address", "http://127.0.0.1:9")
    assert_one_line_error(proc, "cannot reach a Ray dashboard at http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["export"], "Missing option '--out'; see 'ipt-ray export --help'"),
        (["search"], "Missing argument 'SPACE'; see 'ipt-ray search --help'"),
        (["search", "smoke", "--bogus"], "No such option: --bogus"),
        (["search", "smoke", "--num-samples", "abc"], "Invalid value for '--num-samples'"),
        (["predict"], "Missing argument 'BUNDLE'"),
    ],
    ids=["missing-option", "missing-argument", "unknown-option", "bad-type", "predict"],
)
def test_usage_errors_are_one_line_too(args: list[str], expected: str, tmp_path: Path) -> None:
    """What click itself refuses (before any ipt-ray code runs) reads like every other bad
    input: one line, exit 2, and nothing written."""
    assert_one_line_error(ipt_ray(*args, cwd=tmp_path, timeout=120), expected)
    assert list(tmp_path.iterdir()) == []


def test_ipt_ray_alone_prints_the_help(tmp_path: Path) -> None:
    proc = ipt_ray(cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Usage: ipt-ray" in proc.stdout + proc.stderr
    assert "search" in proc.stdout + proc.stderr
