"""Texts in, predictions and prompt vectors out: the file side of ``ipt-ray predict/prompts``.

Needs: a :class:`~ipt_ray.artifacts.bundle.LoadedBundle` or a bundle folder, and texts (a list,
or a file read by :func:`~ipt_ray.artifacts.texts.read_texts`). Provides
:func:`predict_file` and :func:`prompts_file` (what the two commands run) and atomic writers
for the results.

Predictions (:func:`write_predictions`), by extension, with the same columns in both formats
so that ``pandas.read_csv`` and ``pandas.read_json(lines=True)`` give the same table:
``text``, ``text_pair`` (pair bundles), ``label``, then ``prob_<label name>`` per label.

Prompt vectors (:func:`write_prompts`): ``.npy`` holds the input prompts (N, P, H) only;
``.safetensors`` holds every kind (``input`` (N, P, H), ``layer_kv`` (N, L, 2, KV, P, D)).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ipt_ray.artifacts.texts import check_suffix, read_texts
from ipt_ray.errors import UserError

if TYPE_CHECKING:
    from ipt_ray.artifacts.bundle.load import LoadedBundle

PREDICTION_SUFFIXES = (".csv", ".jsonl")
PROMPT_SUFFIXES = (".npy", ".safetensors")
PROB_PREFIX = "prob_"


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
    suffix = check_suffix(path, PREDICTION_SUFFIXES, "predictions")
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
    suffix = check_suffix(path, PROMPT_SUFFIXES, "prompt vectors")
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


def _inputs(
    input_path: str | os.PathLike[str] | None,
    texts: Sequence[str] | None,
    text_column: str,
    text_pair_column: str | None,
) -> tuple[list[str], list[str] | None]:
    """Texts (and pairs) from a file or from a list, exactly one of them."""
    if (input_path is None) == (texts is None):
        raise UserError("give either input_path (a file) or texts (a list of strings)")
    if input_path is not None:
        return read_texts(input_path, text_column=text_column, text_pair_column=text_pair_column)
    if not texts:
        raise UserError("texts is empty: give at least one text")
    return list(texts or []), None


def _loaded(
    bundle: LoadedBundle | str | os.PathLike[str], backbone: str | None, device: str
) -> LoadedBundle:
    if isinstance(bundle, (str, os.PathLike)):
        from ipt_ray.artifacts.bundle.load import load_bundle

        return load_bundle(Path(bundle), backbone=backbone, device=device)
    return bundle


def predict_file(
    bundle: LoadedBundle | str | os.PathLike[str],
    input_path: str | os.PathLike[str] | None = None,
    output_path: str | os.PathLike[str] | None = None,
    *,
    texts: Sequence[str] | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    backbone: str | None = None,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """``ipt-ray predict``: texts in, one prediction record per text out.

    Everything that can be refused (the output's type, the input) is checked before the
    bundle is loaded.

    Args:
        bundle: a :class:`~ipt_ray.artifacts.bundle.LoadedBundle`, or a bundle folder to load
            (with ``backbone`` and ``device``, see :func:`~ipt_ray.artifacts.bundle.load_bundle`).
        input_path: a .txt, .csv or .jsonl file (see :func:`read_texts`); or None with ``texts``.
        output_path: .csv or .jsonl to write (see :func:`write_predictions`), or None.
        texts: the texts themselves, instead of ``input_path``.
        text_column, text_pair_column: see :func:`read_texts`.
        batch_size: texts per forward pass.

    Returns:
        The records, in input order: ``text``, ``text_pair`` (pairs only), ``label``,
        ``prob_<label>`` per label; the rows of the output file when one is written.

    Raises:
        UserError: neither or both of ``input_path`` and ``texts``; an unknown output type;
            what :func:`read_texts` and :func:`~ipt_ray.artifacts.bundle.load_bundle` raise
            (:class:`ColumnNotFound` for a missing column).
    """
    if output_path is not None:
        check_suffix(Path(output_path), PREDICTION_SUFFIXES, "predictions")  # fail before the work
    inputs, pairs = _inputs(input_path, texts, text_column, text_pair_column)
    rows = _loaded(bundle, backbone, device).predict(inputs, pairs, batch_size=batch_size)
    if output_path is not None:
        write_predictions(rows, output_path, texts=inputs, text_pairs=pairs)
    return prediction_table(rows, inputs, pairs)[1]


def prompts_file(
    bundle: LoadedBundle | str | os.PathLike[str],
    input_path: str | os.PathLike[str] | None,
    output_path: str | os.PathLike[str],
    *,
    texts: Sequence[str] | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    backbone: str | None = None,
    device: str = "cpu",
) -> dict[str, tuple[int, ...]]:
    """``ipt-ray prompts``: write the prompt vectors of texts; returns name -> shape.

    Arguments as :func:`predict_file`; ``output_path`` is .npy or .safetensors (see
    :func:`write_prompts`). Every shape starts with the number of texts.

    Raises:
        UserError: as :func:`predict_file`, and what :func:`write_prompts` raises.
    """
    check_suffix(Path(output_path), PROMPT_SUFFIXES, "prompt vectors")  # fail before the work
    inputs, pairs = _inputs(input_path, texts, text_column, text_pair_column)
    vectors = _loaded(bundle, backbone, device).prompt_vectors(inputs, pairs, batch_size=batch_size)
    write_prompts(vectors, output_path)
    return {k: tuple(v.shape) for k, v in vectors.items()}


__all__ = [
    "PREDICTION_SUFFIXES",
    "PROMPT_SUFFIXES",
    "predict_file",
    "prediction_table",
    "prompts_file",
    "write_predictions",
    "write_prompts",
]
