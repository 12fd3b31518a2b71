"""Texts in, predictions and prompt vectors out: the file side of ``ipt-ray predict/prompts``.

Needs: a :class:`~ipt_ray.artifacts.bundle.LoadedBundle` (or anything with its ``predict`` /
``prompt_vectors``). Provides readers for input files and atomic writers for the results.

Input files (:func:`read_texts`):

- ``.txt``: one text per line (UTF-8); blank lines are skipped; no pairs.
- ``.csv``: a header row; column ``text`` and, optionally, ``text_pair`` (names settable).
- ``.jsonl``: one JSON object per line with the same keys; blank lines are skipped.

Predictions (:func:`write_predictions`), by extension, with the same columns in both formats
so that ``pandas.read_csv`` and ``pandas.read_json(lines=True)`` give the same table:
``text``, ``text_pair`` (pair bundles), ``label``, then ``prob_<label name>`` per label.

Prompt vectors (:func:`write_prompts`): ``.npy`` holds the input prompts (N, P, H) only;
``.safetensors`` holds every kind (``input`` (N, P, H), ``layer_kv`` (N, L, 2, KV, P, D)).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ipt_ray.errors import UserError

INPUT_SUFFIXES = (".txt", ".csv", ".jsonl")
PREDICTION_SUFFIXES = (".csv", ".jsonl")
PROMPT_SUFFIXES = (".npy", ".safetensors")
PROB_PREFIX = "prob_"


# -- reading -----------------------------------------------------------------------------------
def _suffix(path: Path, allowed: Sequence[str], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise UserError(
            f"unsupported {what} file type {suffix or '(none)'!r} for "
            f"{str(path)!r}; allowed: {', '.join(allowed)}"
        )
    return suffix


def read_texts(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
) -> tuple[list[str], list[str] | None]:
    """Read the texts to predict from a .txt, .csv or .jsonl file.

    Args:
        path: the input file.
        text_column: the column (CSV) or key (JSONL) holding the text.
        text_pair_column: the column of the second text of a pair. ``None``: use
            ``text_pair`` when the file has it; a name: the file must have it.

    Returns:
        ``(texts, pairs)``, ``pairs`` None when the file has no pair column.

    Raises:
        UserError: missing or unreadable file, unknown file type, missing column, a value
            that is not a string, or no texts at all.
    """
    path = Path(path)
    suffix = _suffix(path, INPUT_SUFFIXES, "input")
    if not path.is_file():
        raise UserError(f"input file {str(path)!r} does not exist")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"input file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    if suffix == ".txt":
        if text_pair_column is not None:
            raise UserError(
                f"a .txt input holds single texts; text pairs need a .csv or .jsonl "
                f"file with a {text_pair_column!r} column"
            )
        texts = [line for line in raw.splitlines() if line.strip()]
        pairs = None
    else:
        rows = _csv_rows(raw, path) if suffix == ".csv" else _jsonl_rows(raw, path)
        texts, pairs = _columns(rows, path, text_column, text_pair_column)
    if not texts:
        raise UserError(f"input file {str(path)!r} holds no texts")
    return texts, pairs


def _csv_rows(raw: str, path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    try:
        reader = csv.DictReader(io.StringIO(raw, newline=""))
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, dict(row)) for row in reader]
    except csv.Error as exc:
        raise UserError(f"input file {str(path)!r} is not valid CSV: {exc}") from None
    return header, rows


def _jsonl_rows(raw: str, path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    keys: dict[str, None] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{str(path)!r} line {number} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise UserError(
                f'{str(path)!r} line {number} must be a JSON object, e.g. {{"text": "..."}}'
            )
        keys.update(dict.fromkeys(value))
        rows.append((number, value))
    return list(keys), rows


def _columns(
    table: tuple[list[str], list[tuple[int, dict[str, Any]]]],
    path: Path,
    text_column: str,
    text_pair_column: str | None,
) -> tuple[list[str], list[str] | None]:
    header, rows = table
    if rows and text_column not in header:
        raise UserError(
            f"input file {str(path)!r} has no column {text_column!r}; columns: "
            f"{', '.join(map(str, header)) or '(none)'}"
        )
    pair_column = text_pair_column
    if pair_column is None:
        pair_column = "text_pair" if "text_pair" in header else None
    elif rows and pair_column not in header:
        raise UserError(
            f"input file {str(path)!r} has no column {pair_column!r}; columns: "
            f"{', '.join(map(str, header))}"
        )
    texts: list[str] = []
    pairs: list[str] | None = [] if pair_column is not None else None
    for number, row in rows:
        for column in (text_column, pair_column):
            if column is not None and not isinstance(row.get(column), str):
                raise UserError(
                    f"{str(path)!r} row at line {number}: {column!r} must be a "
                    f"string, got {row.get(column)!r}"
                )
        texts.append(row[text_column])
        if pairs is not None and pair_column is not None:
            pairs.append(row[pair_column])
    return texts, pairs


# -- writing -----------------------------------------------------------------------------------
@contextmanager
def _atomic_open(path: Path, mode: str) -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prediction_table(
    rows: Sequence[Mapping[str, Any]],
    texts: Sequence[str] | None = None,
    text_pairs: Sequence[str] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Flatten predictions into (columns, records): text, text_pair, label, prob_<label>...

    ``rows`` are :meth:`LoadedBundle.predict` results; texts come from ``texts`` /
    ``text_pairs`` or from the rows' own ``text`` / ``text_pair`` keys.
    """
    for name, values in (("texts", texts), ("text_pairs", text_pairs)):
        if values is not None and len(values) != len(rows):
            raise UserError(f"got {len(rows)} predictions but {len(values)} {name}")
    labels: list[str] = []
    for row in rows:
        for name in row.get("probabilities", {}):
            if name not in labels:
                labels.append(str(name))
    has_pairs = text_pairs is not None or any("text_pair" in r for r in rows)
    columns = [
        "text",
        *(["text_pair"] if has_pairs else []),
        "label",
        *(f"{PROB_PREFIX}{name}" for name in labels),
    ]
    records = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {"text": texts[i] if texts is not None else row.get("text", "")}
        if has_pairs:
            record["text_pair"] = text_pairs[i] if text_pairs is not None else row.get("text_pair")
        record["label"] = row["label"]
        probabilities = row.get("probabilities", {})
        for name in labels:
            record[f"{PROB_PREFIX}{name}"] = probabilities.get(name)
        records.append(record)
    return columns, records


def write_predictions(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    texts: Sequence[str] | None = None,
    text_pairs: Sequence[str] | None = None,
) -> Path:
    """Write predictions as .csv or .jsonl (by extension), atomically.

    Columns (both formats): ``text``, ``text_pair`` (when pairs are given), ``label``, and one
    ``prob_<label>`` per label, in the bundle's label order.

    Args:
        rows: :meth:`LoadedBundle.predict` results (``label``, ``probabilities``), optionally
            with their own ``text`` / ``text_pair``.
        path: the output file; its folder is created.
        texts, text_pairs: the inputs, in the same order as ``rows``.

    Raises:
        UserError: unknown extension, or ``texts`` of another length than ``rows``.
    """
    path = Path(path)
    suffix = _suffix(path, PREDICTION_SUFFIXES, "predictions")
    columns, records = prediction_table(rows, texts, text_pairs)
    with _atomic_open(path, "w") as f:
        if suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
        else:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def write_prompts(vectors: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write :meth:`LoadedBundle.prompt_vectors` output, atomically.

    ``.npy``: the ``input`` array (N, P, H) alone. ``.safetensors``: every array under its
    name (``input``, ``layer_kv``), float32, with the shapes' meaning in the metadata.

    Raises:
        UserError: unknown extension; ``.npy`` for per-layer prefixes (``layer_kv``).
    """
    path = Path(path)
    suffix = _suffix(path, PROMPT_SUFFIXES, "prompt vectors")
    if not vectors:
        raise UserError("there are no prompt vectors to write")
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in vectors.items()}
    if suffix == ".npy":
        if "layer_kv" in arrays:
            raise UserError(
                "this generator makes per-layer key/value prefixes (layer_kv), which "
                f"a .npy file cannot hold with their layout; write {path.stem}"
                ".safetensors instead"
            )
        with _atomic_open(path, "wb") as f:
            np.save(f, arrays["input"], allow_pickle=False)
        return path
    from safetensors.numpy import save

    metadata = {
        "input": "(N, P, H): input prompt vectors per text",
        "layer_kv": "(N, L, 2, KV, P, D): per-layer key (0) and value (1) prefixes per text",
    }
    data = save(arrays, metadata={k: metadata.get(k, "") for k in arrays})
    with _atomic_open(path, "wb") as f:
        f.write(data)
    return path


def predict_file(
    bundle: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
) -> int:
    """``ipt-ray predict``: read texts, predict with a loaded bundle, write; returns the count."""
    texts, pairs = read_texts(
        input_path, text_column=text_column, text_pair_column=text_pair_column
    )
    rows = bundle.predict(texts, pairs, batch_size=batch_size)
    write_predictions(rows, output_path, texts=texts, text_pairs=pairs)
    return len(rows)


def prompts_file(
    bundle: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
) -> dict[str, tuple[int, ...]]:
    """``ipt-ray prompts``: read texts, write their prompt vectors; returns name -> shape."""
    _suffix(Path(output_path), PROMPT_SUFFIXES, "prompt vectors")  # fail before the work
    texts, pairs = read_texts(
        input_path, text_column=text_column, text_pair_column=text_pair_column
    )
    vectors = bundle.prompt_vectors(texts, pairs, batch_size=batch_size)
    write_prompts(vectors, output_path)
    return {k: tuple(v.shape) for k, v in vectors.items()}


__all__ = [
    "INPUT_SUFFIXES",
    "PREDICTION_SUFFIXES",
    "PROMPT_SUFFIXES",
    "predict_file",
    "prediction_table",
    "prompts_file",
    "read_texts",
    "write_predictions",
    "write_prompts",
]
