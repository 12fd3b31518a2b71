"""Portable bundles: export a trial, load it anywhere, refuse anything tampered or unsafe;
predictions and prompt vectors to and from files."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ipt_ray.artifacts.bundle import (
    CHECKSUMS_NAME,
    CONFIG_NAME,
    README_NAME,
    WEIGHTS_NAME,
    load_bundle,
    verify_bundle,
    write_bundle,
    write_checksums,
)
from ipt_ray.artifacts.predict import (
    predict_file,
    prompts_file,
    write_predictions,
    write_prompts,
)
from ipt_ray.artifacts.texts import ColumnNotFound, read_texts
from ipt_ray.core.checkpoint import load_weights
from ipt_ray.errors import UserError
from ipt_ray.testing import reference_logits, train_checkpoint, write_toy_csv

TEXTS = ["good movie", "the plot was really dull and the cast was weak", "fun", "zzz unknown"]
PAIRS = ["a film", "it was fine", "the story is bland and the cast is flat", "warm"]
CASES = {
    "bert-task": ("bert", "task", {}, {}),
    "bert-prefix-reparam": ("bert", "prefix", {"reparam": True, "reparam_hidden": 8}, {}),
    "gpt2-prefix": ("gpt2", "prefix", {}, {}),
    "bert-idpg": ("bert", "idpg", {"bottleneck": 8}, {}),
    "bert-late-idpg": ("bert", "idpg", {"bottleneck": 8}, {"prompt_layer": 1}),
    "gpt2-lpt": ("gpt2", "lpt", {"bottleneck": 8}, {}),
    "llama-ipt-prefix": ("llama", "ipt-prefix", {"source": "cnn", "hidden": 8}, {}),
}


@pytest.fixture(scope="module")
def checkpoints(tiny_models, toy_csv, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    out = {
        key: train_checkpoint(
            root / key, tiny_models[arch], toy_csv, generator=gen, generator_options=opts, **s
        )
        for key, (arch, gen, opts, s) in CASES.items()
    }
    pair_csv = write_toy_csv(root / "pairs.csv", n=60, pair=True)
    out["bert-pair"] = train_checkpoint(root / "bert-pair", tiny_models["bert"], pair_csv)
    return out


@pytest.fixture(scope="module")
def bundle(checkpoints, tmp_path_factory) -> Path:
    """A bert-task bundle with provenance; treat as read-only (copy before tampering)."""
    out = tmp_path_factory.mktemp("bundles") / "bert-task"
    return write_bundle(
        checkpoints["bert-task"],
        out,
        score=0.875,
        provenance={
            "search": "sst2-ipt",
            "experiment": "ipt",
            "parent_run_id": "parent123",
            "trial_run_id": "trial456",
            "space_file": "ipt_small.yaml",
        },
    )


def copy_bundle(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(source, target)
    return target


# -- round trip ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", [*CASES, "bert-pair"])
def test_bundle_predicts_like_the_checkpoint(checkpoints, tmp_path, key):
    pairs = PAIRS if key == "bert-pair" else None
    out = write_bundle(checkpoints[key], tmp_path / "bundle")
    loaded = load_bundle(out)
    expected = reference_logits(checkpoints[key], TEXTS, pairs)
    np.testing.assert_allclose(loaded.logits(TEXTS, pairs), expected.numpy(), atol=1e-6, rtol=0)
    rows = loaded.predict(TEXTS, pairs, batch_size=3)  # batches of 3 and 1: padding varies
    probs = torch.softmax(expected.double(), -1)
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] == loaded.label_names[int(p.argmax())]
        assert list(row["probabilities"]) == ["negative", "positive"]
        np.testing.assert_allclose(list(row["probabilities"].values()), p.numpy(), atol=1e-6)


@pytest.mark.parametrize("key", ["bert-task", "gpt2-prefix"])
def test_bundle_tokenises_as_training_does_whatever_the_batching(checkpoints, tmp_path, key):
    """Empty and unknown-word texts, one per batch or all together: the logits of the texts
    encoded the training way (padded to max_length, trimmed per batch)."""
    texts = ["", "zzz", *TEXTS, "good " * 40]  # the last is truncated to max_length
    loaded = load_bundle(write_bundle(checkpoints[key], tmp_path / "bundle"))
    expected = reference_logits(checkpoints[key], texts).numpy()
    for batch_size in (1, 4, len(texts)):
        np.testing.assert_allclose(loaded.logits(texts, batch_size=batch_size), expected, atol=1e-5)


def test_prompt_vectors_have_the_documented_shapes(checkpoints, tmp_path):
    task = load_bundle(write_bundle(checkpoints["bert-task"], tmp_path / "task"))
    vectors = task.prompt_vectors(TEXTS)
    assert list(vectors) == ["input"] and vectors["input"].shape == (4, 4, 32)
    prompt = load_file(str(tmp_path / "task" / WEIGHTS_NAME))["generator.prompt"].numpy()
    assert all(np.array_equal(v, prompt) for v in vectors["input"]), "static: same for all"

    prefix = load_bundle(write_bundle(checkpoints["gpt2-prefix"], tmp_path / "prefix"))
    kv = prefix.prompt_vectors(TEXTS)["layer_kv"]
    assert kv.shape == (4, 2, 2, 2, 4, 16)  # (N, L, 2, KV, P, D)
    static = load_file(str(tmp_path / "prefix" / WEIGHTS_NAME))["generator.prefix"]  # (L,2,P,W)
    expected = static.view(2, 2, 4, 2, 16).transpose(2, 3).numpy()  # (L, 2, KV, P, D)
    np.testing.assert_allclose(kv[1], expected)

    idpg = load_bundle(write_bundle(checkpoints["bert-idpg"], tmp_path / "idpg"))
    inputs = idpg.prompt_vectors(TEXTS)["input"]
    assert inputs.shape == (4, 4, 32) and not np.allclose(inputs[0], inputs[1]), (
        "instance-wise prompts differ between texts"
    )


def test_bundle_takes_the_best_weights(checkpoints, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(checkpoints["bert-task"], checkpoint)
    best = load_weights(checkpoint)
    save_file(best, str(checkpoint / "best_weights.safetensors"))
    later = {k: torch.zeros_like(v) if k.startswith("head.") else v for k, v in best.items()}
    save_file(later, str(checkpoint / "weights.safetensors"))  # the last epoch, worse
    loaded = load_bundle(write_bundle(checkpoint, tmp_path / "bundle"))
    expected = reference_logits(checkpoints["bert-task"], TEXTS)
    np.testing.assert_allclose(loaded.logits(TEXTS), expected.numpy(), atol=1e-6)
    assert not np.allclose(loaded.logits(TEXTS), 0.0)


def test_bundle_layout_config_and_model_card(bundle):
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [WEIGHTS_NAME, CONFIG_NAME, README_NAME, CHECKSUMS_NAME]
    )
    config = verify_bundle(bundle)
    assert config["format_version"] == 1
    assert config["generator"] == {
        "name": "task",
        "options": {"dropout": 0.0, "init": "vocab", "init_std": 0.02, "prompt_length": 4},
    }
    assert config["backbone"]["tokenizer"] == config["backbone"]["model"]
    assert config["backbone"]["local_dir"] is True
    assert config["metric"] == {
        "name": "accuracy",
        "split": "validation",
        "score": 0.875,
        "test": {},  # a checkpoint folder: no trial run to read test metrics from
    }
    assert config["label_names"] == ["negative", "positive"] and not config["is_pair"]
    assert config["params"]["trainable"] == 4 * 32 + 32 * 2 + 2
    card = (bundle / README_NAME).read_text()
    for needle in (
        "validation accuracy | 0.875",
        "194 (",
        "task (dropout=0, init=vocab",
        config["backbone"]["model"],
        "parent123",
        "trial456",
        "ipt_small.yaml",
        "load_bundle(",
        "loading needs it, or pass `backbone=`",
    ):
        assert needle in card, needle
    checksums = json.loads((bundle / CHECKSUMS_NAME).read_text())
    assert set(checksums["files"]) == {WEIGHTS_NAME, CONFIG_NAME, README_NAME}
    with open(bundle / WEIGHTS_NAME, "rb") as f:  # safetensors: 8-byte header size, JSON
        assert f.read(9)[8:] == b"{"


def test_score_defaults_to_the_trials_best_validation_score(checkpoints, tmp_path):
    state = json.loads((checkpoints["bert-task"] / "train_state.json").read_text())
    config = verify_bundle(write_bundle(checkpoints["bert-task"], tmp_path / "b"))
    assert config["metric"]["score"] == pytest.approx(state["best_score"])


# -- writing is atomic and refuses bad targets and sources ----------------------------------
def test_write_refuses_a_non_empty_out_dir_and_accepts_an_empty_one(checkpoints, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_bundle(checkpoints["bert-task"], tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        write_bundle(checkpoints["bert-task"], tmp_path / "file")
    (tmp_path / "empty").mkdir()
    verify_bundle(write_bundle(checkpoints["bert-task"], tmp_path / "empty"))
    assert not list(tmp_path.glob(".*partial")), "no temporary folders left behind"


@pytest.mark.parametrize("missing", ["weights.safetensors", "config.json"])
def test_write_refuses_a_checkpoint_without_weights_or_config(checkpoints, tmp_path, missing):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(checkpoints["bert-task"], checkpoint)
    (checkpoint / missing).unlink()
    with pytest.raises(UserError, match=f"{missing} is missing"):
        write_bundle(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_write_refuses_provenance_that_is_not_json(checkpoints, tmp_path):
    with pytest.raises(UserError, match="provenance"):
        write_bundle(checkpoints["bert-task"], tmp_path / "out", provenance={"run": object()})
    assert not (tmp_path / "out").exists()


# -- loading refuses anything incomplete, tampered or unsafe --------------------------------
def _edit_config(bundle: Path, edit) -> None:
    config = json.loads((bundle / CONFIG_NAME).read_text())
    edit(config)
    (bundle / CONFIG_NAME).write_text(json.dumps(config))
    write_checksums(bundle)  # a consistent forgery: only the content checks can catch it


def _pickle_payload(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    return pickle.dumps({"generator.prompt": Payload()})


def tamper_byte(b: Path) -> None:
    data = bytearray((b / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0x01
    (b / WEIGHTS_NAME).write_bytes(bytes(data))


def pickle_as_safetensors(b: Path) -> None:
    (b / WEIGHTS_NAME).write_bytes(_pickle_payload(b.parent / "pwned"))
    write_checksums(b)


def torch_save_as_safetensors(b: Path) -> None:
    torch.save({"generator.prompt": torch.zeros(4, 32)}, b / WEIGHTS_NAME)
    write_checksums(b)


def symlink_readme(b: Path) -> None:
    (b / README_NAME).unlink()
    os.symlink("/etc/passwd", b / README_NAME)


def symlink_weights_inside(b: Path) -> None:
    (b / WEIGHTS_NAME).rename(b / "real.safetensors")
    os.symlink("real.safetensors", b / WEIGHTS_NAME)
    write_checksums(b)


def extra_file(b: Path) -> None:
    (b / "extra.py").write_text("import os")


def sub_folder(b: Path) -> None:
    (b / "nested").mkdir()


TAMPERING = {
    "flipped-byte": (tamper_byte, f"checksum mismatch for bundle file '{WEIGHTS_NAME}'"),
    "missing-weights": (lambda b: (b / WEIGHTS_NAME).unlink(), f"{WEIGHTS_NAME} is missing"),
    "missing-readme": (lambda b: (b / README_NAME).unlink(), f"{README_NAME} is missing"),
    "missing-config": (lambda b: (b / CONFIG_NAME).unlink(), f"{CONFIG_NAME} is missing"),
    "missing-checksums": (lambda b: (b / CHECKSUMS_NAME).unlink(), f"{CHECKSUMS_NAME} is missing"),
    "pickle-renamed": (pickle_as_safetensors, "is not a safetensors file"),
    "torch-save-renamed": (torch_save_as_safetensors, "is not a safetensors file"),
    "weights-path-escapes": (
        lambda b: _edit_config(b, lambda c: c["files"].update(weights="../../etc/passwd")),
        "'../../etc/passwd' is not a plain file name",
    ),
    "weights-path-absolute": (
        lambda b: _edit_config(b, lambda c: c["files"].update(weights="/etc/passwd")),
        "'/etc/passwd' is not a plain file name",
    ),
    "card-path-escapes": (
        lambda b: _edit_config(b, lambda c: c["files"].update(model_card="..")),
        "'..' is not a plain file name",
    ),
    "symlink-out": (symlink_readme, f"'{README_NAME}' is a symbolic link"),
    "symlink-inside": (symlink_weights_inside, f"'{WEIGHTS_NAME}' is a symbolic link"),
    "future-version": (
        lambda b: _edit_config(b, lambda c: c.update(format_version=2)),
        "format version 2 is not supported",
    ),
    "not-a-bundle": (
        lambda b: _edit_config(b, lambda c: c.update(format="other")),
        "not an ipt-ray bundle config",
    ),
    "missing-field": (
        lambda b: _edit_config(b, lambda c: c.pop("pooling")),
        "lacks field 'pooling'",
    ),
    "wrong-type": (
        lambda b: _edit_config(b, lambda c: c.update(max_length="16")),
        "field 'max_length' must be int",
    ),
    "bad-labels": (
        lambda b: _edit_config(b, lambda c: c.update(label_names=["a", "b", "c"])),
        "label_names must be 2 distinct names",
    ),
    "extra-file": (extra_file, "'extra.py' is not listed"),
    "sub-folder": (sub_folder, "'nested', which is not a plain file"),
    "config-not-json": (
        lambda b: ((b / CONFIG_NAME).write_text("{nope"), write_checksums(b)),
        f"{CONFIG_NAME} is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_loading_refuses_incomplete_tampered_or_unsafe_bundles(bundle, tmp_path, case):
    tamper, message = TAMPERING[case]
    target = copy_bundle(bundle, tmp_path)
    tamper(target)
    with pytest.raises(UserError, match=_escape(message)) as info:
        load_bundle(target)
    assert "\n" not in str(info.value), "one line"
    assert not (tmp_path / "pwned").exists(), "the pickle never ran"


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_remote_code_needs_the_bundle_and_the_caller_to_agree(bundle, tmp_path):
    target = copy_bundle(bundle, tmp_path)
    _edit_config(target, lambda c: c["backbone"].update(trust_remote_code=True))
    with pytest.raises(UserError, match="trust_remote_code=True"):
        load_bundle(target)
    assert load_bundle(target, trust_remote_code=True).predict(["good"])[0]["label"]


def test_a_moved_local_backbone_is_replaced_with_backbone_argument(bundle, tmp_path):
    target = copy_bundle(bundle, tmp_path)
    real = verify_bundle(bundle)["backbone"]["model"]
    _edit_config(target, lambda c: c["backbone"].update(model=str(tmp_path / "gone")))
    with pytest.raises(UserError, match="could not load model"):
        load_bundle(target)
    moved = load_bundle(target, backbone=real)
    np.testing.assert_allclose(moved.logits(TEXTS), load_bundle(bundle).logits(TEXTS))


def test_texts_and_pairs_must_fit_the_bundle(checkpoints, bundle, tmp_path):
    single = load_bundle(bundle)
    with pytest.raises(UserError, match="single texts"):
        single.predict(TEXTS, PAIRS)
    with pytest.raises(UserError, match="list of strings"):
        single.predict("one string")
    assert single.predict([]) == []
    pair = load_bundle(write_bundle(checkpoints["bert-pair"], tmp_path / "pair"))
    with pytest.raises(UserError, match="text pairs"):
        pair.predict(TEXTS)
    with pytest.raises(UserError, match="4 texts but 2 text_pairs"):
        pair.predict(TEXTS, PAIRS[:2])


def test_loading_imports_neither_ray_nor_mlflow(bundle):
    script = (
        "import json, sys\n"
        "import ipt_ray\n"
        f"b = ipt_ray.load_bundle({str(bundle)!r})\n"
        f"rows = b.predict({TEXTS!r})\n"
        f"ipt_ray.predict_file({str(bundle)!r}, texts={TEXTS!r})\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')]\n"
        "assert not loaded, loaded\n"
        "print(json.dumps(rows))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert rows == load_bundle(bundle).predict(TEXTS)


# -- predict.py: readers and writers --------------------------------------------------------
def test_read_texts_from_txt_csv_and_jsonl(tmp_path):
    (tmp_path / "in.txt").write_text("good movie\n\n  \nbad plot\n", encoding="utf-8")
    assert read_texts(tmp_path / "in.txt") == (["good movie", "bad plot"], None)

    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows(
            [["id", "text", "text_pair"], ["1", "a, quoted\nline", "x"], ["2", "", "y"]]
        )
    assert read_texts(tmp_path / "in.csv") == (["a, quoted\nline", ""], ["x", "y"])
    assert read_texts(tmp_path / "in.csv", text_column="text_pair", text_pair_column="id") == (
        ["x", "y"],
        ["1", "2"],
    )

    lines = [json.dumps({"review": "fine", "other": 1}), "", json.dumps({"review": "dull"})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    assert read_texts(tmp_path / "in.jsonl", text_column="review") == (["fine", "dull"], None)


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("in.tsv", "a\tb", {}, "in.tsv'; allowed: .txt, .csv, .jsonl"),
        ("none.csv", None, {}, "does not exist"),
        ("in.csv", "review\nx\n", {}, "has no column 'text'; columns: review"),
        ("in.csv", "text\nx\n", {"text_pair_column": "second"}, "has no column 'second'"),
        ("in.jsonl", '{"text": "a"}\n{"text": 3}\n', {}, "line 2: 'text' must be a string, got 3"),
        ("in.jsonl", '{"text": "a"}\nnot json\n', {}, "line 2 is not valid JSON"),
        ("in.jsonl", '["a"]\n', {}, "line 1 must be a JSON object"),
        ("in.txt", "\n\n", {}, "holds no texts"),
        ("in.txt", "a\n", {"text_pair_column": "p"}, "a .txt input holds single texts"),
        ("in.csv", b"text\n\xff\xfe\n", {}, "is not UTF-8 text"),
    ],
)
def test_read_texts_refuses_bad_input(tmp_path, name, content, kwargs, message):
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=_escape(message)):
        read_texts(tmp_path / name, **kwargs)


ROWS = [
    {"label": "positive", "probabilities": {"negative": 0.25, "positive": 0.75}},
    {"label": "negative", "probabilities": {"negative": 0.5, "positive": 0.5}},
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_predictions_has_one_column_per_label(tmp_path, suffix):
    path = write_predictions(
        ROWS,
        tmp_path / "out" / f"pred{suffix}",
        texts=['great, "fun"', "meh"],
        text_pairs=["x", "y"],
    )
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
        records = [
            {
                **r,
                "prob_negative": float(r["prob_negative"]),
                "prob_positive": float(r["prob_positive"]),
            }
            for r in records
        ]
    else:
        records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {
            "text": 'great, "fun"',
            "text_pair": "x",
            "label": "positive",
            "prob_negative": 0.25,
            "prob_positive": 0.75,
        },
        {
            "text": "meh",
            "text_pair": "y",
            "label": "negative",
            "prob_negative": 0.5,
            "prob_positive": 0.5,
        },
    ]
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary files"


def test_write_predictions_refuses_unknown_suffix_and_mismatched_texts(tmp_path):
    with pytest.raises(UserError, match=r"allowed: \.csv, \.jsonl"):
        write_predictions(ROWS, tmp_path / "pred.xlsx", texts=["a", "b"])
    with pytest.raises(UserError, match="2 predictions but 1 texts"):
        write_predictions(ROWS, tmp_path / "pred.csv", texts=["a"])
    assert not list(tmp_path.iterdir())


def test_write_prompts_npy_and_safetensors(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(3, 4, 8)).astype(np.float32)
    kv = np.ones((3, 2, 2, 1, 4, 8), dtype=np.float32)
    write_prompts({"input": inputs}, tmp_path / "p.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy", allow_pickle=False), inputs)
    with pytest.raises(UserError, match=r"layer_kv.*write kv\.safetensors instead"):
        write_prompts({"layer_kv": kv}, tmp_path / "kv.npy")
    assert not (tmp_path / "kv.npy").exists()
    write_prompts({"input": inputs, "layer_kv": kv}, tmp_path / "both.safetensors")
    from safetensors.numpy import load_file as load_np

    back = load_np(str(tmp_path / "both.safetensors"))
    np.testing.assert_array_equal(back["input"], inputs)
    np.testing.assert_array_equal(back["layer_kv"], kv)
    with pytest.raises(UserError, match=r"allowed: \.npy, \.safetensors"):
        write_prompts({"input": inputs}, tmp_path / "p.pt")


def test_predict_and_prompts_files_end_to_end(bundle, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    loaded = load_bundle(bundle)
    records = predict_file(loaded, tmp_path / "in.txt", tmp_path / "pred.jsonl")
    written = [json.loads(x) for x in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert records == written
    assert [r["text"] for r in records] == TEXTS
    assert [r["label"] for r in records] == [r["label"] for r in loaded.predict(TEXTS)]
    shapes = prompts_file(loaded, tmp_path / "in.txt", tmp_path / "prompts.npy")
    assert shapes == {"input": (len(TEXTS), 4, 32)}
    assert np.load(tmp_path / "prompts.npy").shape == (len(TEXTS), 4, 32)


def test_predict_file_takes_a_bundle_folder_and_a_list_of_texts(bundle, tmp_path):
    records = predict_file(bundle, texts=TEXTS)
    assert [r["label"] for r in records] == [r["label"] for r in load_bundle(bundle).predict(TEXTS)]
    assert not list(tmp_path.iterdir())  # no output_path: nothing written
    shapes = prompts_file(bundle, None, tmp_path / "p.safetensors", texts=TEXTS[:2])
    assert shapes == {"input": (2, 4, 32)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give either input_path (a file) or texts"),
        ({"texts": ["a"], "input_path": "in.txt"}, "give either input_path (a file) or texts"),
        ({"texts": ["a"], "output_path": "out.tsv"}, "allowed: .csv, .jsonl"),
        ({"texts": []}, "texts is empty"),
    ],
)
def test_predict_file_refuses_bad_arguments_before_loading(kwargs, message, tmp_path):
    # the bundle folder does not exist: each refusal must come before it is loaded
    with pytest.raises(UserError, match=_escape(message)):
        predict_file(tmp_path / "no-bundle", **kwargs)


def test_a_missing_column_names_the_setting(tmp_path):
    (tmp_path / "in.csv").write_text("review\nx\n")
    with pytest.raises(ColumnNotFound) as caught:
        read_texts(tmp_path / "in.csv")
    assert caught.value.setting == "text_column"
    assert str(caught.value).endswith("set text_column to the column that holds the texts")
    assert "set --text-column to" in caught.value.naming("--text-column")
