"""The artifacts and cluster layers as a user meets them: `ipt-ray predict` / `prompts` and
what importing each layer pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ipt_ray.artifacts import load_bundle, write_bundle
from ipt_ray.testing import run_cli, train_checkpoint

TEXTS = ["a good film", "the plot was dull", "fine"]


@pytest.fixture(scope="module")
def bundle(tiny_models, toy_csv, tmp_path_factory) -> Path:
    """A bundle of a task prompt on the tiny bert, trained for one epoch on the toy task."""
    root = tmp_path_factory.mktemp("artifacts-layer")
    checkpoint = train_checkpoint(root / "checkpoint", tiny_models["bert"], toy_csv)
    return write_bundle(checkpoint, root / "bundle")


def test_cli_predict_prints_and_writes_what_the_library_predicts(bundle, tmp_path):
    expected = [row["label"] for row in load_bundle(bundle).predict(TEXTS)]
    texts = [arg for text in TEXTS for arg in ("--text", text)]
    printed = run_cli("predict", bundle, *texts, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr[-2000:]
    records = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert [r["label"] for r in records] == expected

    (tmp_path / "in.csv").write_text("review\n" + "\n".join(TEXTS) + "\n")
    written = run_cli(
        "predict",
        bundle,
        "--input",
        "in.csv",
        "--text-column",
        "review",
        "--output",
        "out.jsonl",
        cwd=tmp_path,
    )
    assert written.returncode == 0, written.stderr[-2000:]
    assert "3 predictions written to out.jsonl" in written.stdout
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records


def test_cli_prompts_writes_the_vectors(bundle, tmp_path):
    done = run_cli("prompts", bundle, "--text", TEXTS[0], "--output", "p.npy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "prompt vectors of 1 texts written to p.npy: input (1, 4, 32)" in done.stdout
    assert np.load(tmp_path / "p.npy").shape == (1, 4, 32)


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("ipt_ray.cluster", ("ray", "mlflow", "torch")),
        ("ipt_ray.cluster.submit", ("ray", "mlflow", "torch")),
        ("ipt_ray.artifacts", ("ray", "mlflow", "torch")),
        ("ipt_ray.artifacts.texts", ("ray", "mlflow", "torch")),
        ("ipt_ray.artifacts.predict", ("ray", "mlflow", "torch")),
        ("ipt_ray.artifacts.bundle.load", ("ray", "mlflow")),
    ],
)
def test_importing_a_layer_pulls_in_only_what_it_needs(module, absent):
    script = (
        f"import sys, {module}\nprint([m for m in sys.modules if m.split('.')[0] in {absent!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
