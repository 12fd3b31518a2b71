"""Bad input at the command line: the table behind README "Bad input".

Every row runs the real ``ipt-ray`` CLI in a subprocess, in an empty working folder holding
only the row's own input files, and checks the project rule: one line on stderr starting
``ipt-ray: error: `` that names the problem, exit status 2, no traceback, nothing on stdout,
the working folder exactly as before (no new file or folder, inputs untouched) and, for
searches, no MLflow experiment or run left behind.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipt_ray.testing import assert_one_line_error, run_cli


@dataclass(frozen=True)
class Inputs:
    """Shared, read-only inputs the rows refer to as {bert}, {toy}, {bundle}; {cwd} is the
    row's working folder."""

    bert: Path
    toy: Path
    bundle: Path
    store: Path  # an MLflow store with one experiment, 'my-search'


Maker = Callable[[Path, Inputs], None]
Content = str | bytes | Maker


def _copied(source: str, change: Callable[[Path], None] | None = None) -> Maker:
    """Copy the shared input ``source`` ('bundle' or 'store') here, then ``change`` it."""

    def make(path: Path, inputs: Inputs) -> None:
        original: Path = getattr(inputs, source)
        if original.is_dir():
            shutil.copytree(original, path)
        else:
            shutil.copyfile(original, path)
        if change is not None:
            change(path)

    return make


def _flip_last_weight_byte(bundle: Path) -> None:
    from ipt_ray.artifacts.bundle import WEIGHTS_NAME

    data = bytearray((bundle / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0x01
    (bundle / WEIGHTS_NAME).write_bytes(bytes(data))


class _TouchOnUnpickle:
    """A pickle that creates ``marker`` when loaded: proof that loading ran no code if the
    marker never appears (it would land in the working folder, which must stay unchanged)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[Path], None], tuple[Path]]:
        return (Path.touch, (self.marker,))


def _pickle_as_safetensors(bundle: Path) -> None:
    from ipt_ray.artifacts.bundle import WEIGHTS_NAME, write_checksums

    payload = {"generator.prompt": _TouchOnUnpickle(bundle.parent / "pwned")}
    (bundle / WEIGHTS_NAME).write_bytes(pickle.dumps(payload))
    write_checksums(bundle)  # consistent checksums: only the format check can refuse it


def _weights_outside_bundle(bundle: Path) -> None:
    from ipt_ray.artifacts.bundle import CONFIG_NAME, write_checksums

    config = json.loads((bundle / CONFIG_NAME).read_text())
    config["files"]["weights"] = "../../etc/passwd"
    (bundle / CONFIG_NAME).write_text(json.dumps(config))
    write_checksums(bundle)


def _csv(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def _labelled(n: int, text: Callable[[int], str | None] = lambda i: "a good film") -> list[str]:
    """JSON lines alternating negative/positive labels; ``text(i)`` None gives a null text."""
    return [
        json.dumps({"text": text(i), "label": "positive" if i % 2 else "negative"})
        for i in range(n)
    ]


# A space that passes validation except for what a row changes.
SPACE_HEAD = "name: bad\nfixed: {task: mr, model: minilm, epochs: 2}\n"
GENERATORS = "  generator: {choices: {task: {}, prefix: {}}}\n"
# Searches keep their records in the working folder: anything they write shows up there.
STORE = ["--tracking-uri", "sqlite:///{cwd}/mlflow.db", "--storage", "{cwd}/runs"]


def _train(task: str = "{toy}", **flags: str) -> list[str]:
    """``ipt-ray train`` of the tiny bert on ``task``, quick settings unless ``flags`` (one
    value per flag: ``prompt_length="0"`` is ``--prompt-length 0``) say otherwise."""
    quick = {"model": "{bert}", "prompt_length": "4", "max_length": "16", "batch_size": "16"}
    quick["epochs"] = "1"
    argv = ["train", "--task", task, "--out", "{cwd}/ckpt"]
    for flag, value in {**quick, **flags}.items():
        argv += [f"--{flag.replace('_', '-')}", value]
    return argv


PREDICT = ["predict", "bundle", "--text", "a good film", "--output", "preds.jsonl"]
IN_STORE = ["--tracking-uri", "sqlite:///{cwd}/mlflow.db"]

# id -> (argv with {cwd} {bert} {toy} {bundle} placeholders, files to create, message fragments)
BAD_INPUTS: dict[str, tuple[list[str], dict[str, Content], list[str]]] = {
    # -- search-space files
    "malformed-yaml": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": "params: {lr: [1, 2}\n"},
        ["space.yaml: malformed YAML at line 1"],
    ),
    "space-wrong-type": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": "fixed: {task: mr, epochs: three}\nparams:\n" + GENERATORS},
        ["space.yaml: fixed.epochs", "expected a whole number, got 'three'"],
    ),
    "space-low-above-high": (
        ["search", "space.yaml", *STORE],
        {
            "space.yaml": SPACE_HEAD
            + "params:\n  lr: {type: float, low: 0.1, high: 0.01}\n"
            + GENERATORS
        },
        ["params.lr", "low 0.1 must be below high 0.01"],
    ),
    "space-log-low-zero": (
        ["search", "space.yaml", *STORE],
        {
            "space.yaml": SPACE_HEAD
            + "params:\n  lr: {type: float, low: 0.0, high: 0.01, log: true}\n"
            + GENERATORS
        },
        ["params.lr", "log: true needs low > 0, got 0"],
    ),
    "space-knob-without-its-generator": (
        ["search", "space.yaml", *STORE],
        {
            "space.yaml": SPACE_HEAD
            + "params:\n  phm_rank: {type: int, low: 2, high: 8}\n"
            + GENERATORS
        },
        ["params.phm_rank", "knob of idpg", "put it under params.generator.choices.idpg"],
    ),
    "space-unknown-key": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": SPACE_HEAD + "serach: {num_samples: 2}\nparams:\n" + GENERATORS},
        ["serach: unknown key", "did you mean 'search'", "allowed: name, fixed, search, params"],
    ),
    "space-missing": (
        ["search", "nope.yaml", *STORE],
        {},
        ["search space 'nope.yaml' not found", "shipped spaces: demo, smoke"],
    ),
    "space-not-utf8": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": "name: caf\u00e9\n".encode("latin-1")},
        ["space.yaml: not UTF-8 text", "save the file as UTF-8"],
    ),
    "space-huge-prompt-length": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": SPACE_HEAD + "params:\n  prompt_length: [8, 100000]\n" + GENERATORS},
        ["params.prompt_length", "choice 100000 is not allowed", "from 1 to 4096"],
    ),
    "space-task-file-missing": (
        ["search", "space.yaml", *STORE],
        {"space.yaml": "fixed: {task: missing.csv}\nparams:\n" + GENERATORS},
        ["task file 'missing.csv' does not exist"],
    ),
    # -- search flags, Ray and MLflow
    "search-set-without-equals": (
        ["search", "smoke", "--set", "epochs", *STORE],
        {},
        ["--set expects KEY=VALUE, got 'epochs'"],
    ),
    "search-zero-samples": (
        ["search", "smoke", "--num-samples", "0", *STORE],
        {},
        ["search.num_samples (set by an override)", "at least 1, got 0"],
    ),
    "search-negative-cpus": (
        ["search", "smoke", "--cpus-per-worker", "-1", "--address", "http://127.0.0.1:9", *STORE],
        {},
        ["--cpus-per-worker and --gpus-per-worker cannot be negative"],
    ),
    "search-backbone-that-does-not-load": (
        ["search", "smoke", "--set", "model=no-such-org/no-such-model", *STORE],
        {},
        ["could not load model 'no-such-org/no-such-model'", "offline: use a local directory"],
    ),
    "search-unknown-runner": (
        ["search", "smoke", "--runner", "acter", *STORE],
        {},
        ["unknown runner 'acter'", "did you mean 'actor'", "allowed: actor, auto, packed, train"],
    ),
    "search-actor-runner-with-ddp": (
        ["search", "smoke", "--runner", "actor", "--workers-per-trial", "2", *STORE],
        {},
        ["--runner actor trains each trial in one process", "use --runner train"],
    ),
    "search-pack-size-without-packed-runner": (
        ["search", "smoke", "--runner", "actor", "--pack-size", "2", *STORE],
        {},
        ["--pack-size sets the trials of a pack, but --runner is actor", "use --runner packed"],
    ),
    "search-pack-size-zero": (
        ["search", "smoke", "--runner", "packed", "--pack-size", "0", *STORE],
        {},
        ["--pack-size must be at least 1, got 0"],
    ),
    "unreachable-ray-dashboard": (
        ["search", "smoke", "--address", "http://127.0.0.1:9", *STORE],
        {},
        ["cannot reach a Ray dashboard at http://127.0.0.1:9"],
    ),
    "unreachable-ray-cluster": (
        ["search", "smoke", "--address", "127.0.0.1:9", *STORE],
        {},
        ["cannot reach a Ray cluster at 127.0.0.1:9", "http://HEAD:8265"],
    ),
    "unreachable-mlflow": (
        ["search", "smoke", "--tracking-uri", "http://127.0.0.1:9", "--storage", "{cwd}/runs"],
        {},
        ["cannot reach the MLflow tracking server http://127.0.0.1:9"],
    ),
    "mlflow-store-not-sqlite": (
        ["best", *IN_STORE],
        {"mlflow.db": "not a database\n"},
        ["mlflow.db is not an SQLite database", "allowed: sqlite:///PATH"],
    ),
    "best-unknown-experiment": (
        ["best", "--experiment", "my-serch", *IN_STORE],
        {"mlflow.db": _copied("store")},
        ["unknown experiment 'my-serch'", "did you mean 'my-search'", "Default, my-search"],
    ),
    "export-unknown-experiment": (
        ["export", "--experiment", "my-serch", "--out", "{cwd}/exported", *IN_STORE],
        {"mlflow.db": _copied("store")},
        ["unknown experiment 'my-serch'", "did you mean 'my-search'"],
    ),
    # -- data files (train)
    "data-missing-label-column": (
        _train(task="data.csv"),
        {"data.csv": _csv("text,sentiment", ["a good film,positive", "a bad film,negative"])},
        ["data.csv has no label column 'label'", "columns found: text, sentiment"],
    ),
    "data-label-outside-set": (
        _train(labels="negative,neutral"),
        {},
        ["label 'positive' is not one of the label names negative, neutral"],
    ),
    "data-empty-split": (
        _train(task="data.csv"),
        {
            "data.csv": _csv(
                "text,label,split",
                [f"a film,{'positive' if i % 2 else 'negative'},train" for i in range(12)],
            )
        },
        ["data.csv has a 'split' column but no row with split 'test'"],
    ),
    "data-header-only": (
        _train(task="data.csv"),
        {"data.csv": "text,label\n"},
        ["data.csv is empty", "at least one row"],
    ),
    "data-null-text": (
        _train(task="data.jsonl"),
        {"data.jsonl": "\n".join(_labelled(20, lambda i: None if i == 5 else "a film")) + "\n"},
        ["data.jsonl line 6", "column 'text' has no value (null)"],
    ),
    "data-not-utf8": (
        _train(task="data.csv"),
        {"data.csv": _csv("text,label", ["caf\u00e9 good,positive"] * 10).encode("latin-1")},
        ["data.csv is not UTF-8", "re-save it as UTF-8"],
    ),
    "data-malformed-csv": (
        _train(task="data.csv"),
        {"data.csv": _csv("text,label", ["good,positive", "bad,negative,extra"])},
        ["data.csv line 3 is malformed CSV", "3 fields, but the header has 2"],
    ),
    # -- train flags
    "huge-prompt-length": (
        _train(prompt_length="1000000"),
        {},
        ["prompt_length must be an integer from 1 to 4096, got 1000000"],
    ),
    "unknown-backbone-offline": (
        _train(model="no-such-org/no-such-model"),
        {},
        ["could not load model 'no-such-org/no-such-model'", "offline: use a local directory"],
    ),
    "train-set-without-equals": (
        _train(set="hidden"),
        {},
        ["--set expects KEY=VALUE, got 'hidden'"],
    ),
    "prompt-layer-outside-the-backbone": (
        _train(prompt_layer="2"),
        {},
        ["prompt_layer 2 is not a layer of this 2-layer backbone; allowed: 0 to 1"],
    ),
    "late-prompt-with-a-layer-prefix": (
        _train(generator="prefix", prompt_layer="1"),
        {},
        ["prompt_layer 1 moves the input prompt, but generator 'prefix'", "use prompt_layer 0"],
    ),
    "zero-epochs": (
        _train(epochs="0"),
        {},
        ["epochs must be an integer from 1 to 100000, got 0"],
    ),
    "zero-batch-size": (
        _train(batch_size="0"),
        {},
        ["batch_size must be an integer from 1 to 1048576, got 0"],
    ),
    "unknown-generator": (
        _train(generator="idgp"),
        {},
        ["unknown generator 'idgp'", "did you mean 'idpg'", "idpg, ipt-encoder, ipt-lookup"],
    ),
    # -- bundles (predict)
    "bundle-checksum-mismatch": (
        PREDICT,
        {"bundle": _copied("bundle", _flip_last_weight_byte)},
        ["checksum mismatch for bundle file 'prompt.safetensors'"],
    ),
    "bundle-pickle-as-safetensors": (
        PREDICT,
        {"bundle": _copied("bundle", _pickle_as_safetensors)},
        ["'prompt.safetensors' is not a safetensors file", "safetensors weights only"],
    ),
    "bundle-config-points-outside": (
        PREDICT,
        {"bundle": _copied("bundle", _weights_outside_bundle)},
        ["files.weights '../../etc/passwd' is not a plain file name inside the bundle"],
    ),
    "predict-missing-input": (
        ["predict", "{bundle}", "--input", "nope.txt", "--output", "preds.jsonl"],
        {},
        ["input file 'nope.txt' does not exist"],
    ),
    "predict-missing-bundle": (
        ["predict", "nobundle", "--text", "a good film"],
        {},
        ["bundle folder 'nobundle' does not exist"],
    ),
    "predict-missing-text-column": (
        ["predict", "{bundle}", "--input", "in.csv"],
        {"in.csv": "review\na good film\n"},
        ["has no column 'text'; columns: review", "set --text-column to the column"],
    ),
}


@pytest.fixture(scope="module")
def inputs(tiny_models, toy_csv, tmp_path_factory) -> Inputs:
    """A tiny bert, the toy task, a bundle trained on it and an MLflow store."""
    from mlflow import MlflowClient

    from ipt_ray.artifacts.bundle import write_bundle
    from ipt_ray.testing import train_checkpoint

    root = tmp_path_factory.mktemp("bad-inputs")
    checkpoint = train_checkpoint(root / "checkpoint", tiny_models["bert"], toy_csv)
    bundle = write_bundle(checkpoint, root / "bundle")
    store = root / "store.db"
    MlflowClient(tracking_uri=f"sqlite:///{store}").create_experiment("my-search")
    return Inputs(bert=tiny_models["bert"], toy=toy_csv, bundle=bundle, store=store)


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` -> 'dir' or the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _assert_no_mlflow_records(db: Path) -> None:
    if not db.exists():
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments] == ["Default"], "a stray experiment"
    assert not client.search_runs([e.experiment_id for e in experiments]), "a stray run"


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(case: str, inputs: Inputs, tmp_path: Path) -> None:
    argv, files, fragments = BAD_INPUTS[case]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name, content in files.items():
        if isinstance(content, str):
            (cwd / name).write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            (cwd / name).write_bytes(content)
        else:
            content(cwd / name, inputs)
    before = _snapshot(cwd)
    places = {"cwd": cwd, "bert": inputs.bert, "toy": inputs.toy, "bundle": inputs.bundle}
    args = [arg.format(**places) for arg in argv]

    proc = run_cli(*args, cwd=cwd, timeout=180)

    assert_one_line_error(proc, *fragments)
    assert proc.stdout == ""
    if args[0] == "search":
        _assert_no_mlflow_records(cwd / "mlflow.db")
    assert _snapshot(cwd) == before, "the command wrote or changed something"
