"""Tasks from local files: CSV, JSON Lines / JSON, Parquet, or a directory of split files.

A file holds one row per example with a text column, an optional text-pair column and a
label column (names configurable). Labels may be strings or integers; integers written as
strings (``"1"``) count as integers. Without explicit ``label_names`` the label names are the
sorted distinct values, integers sorted numerically. With explicit ``label_names`` a label
matches a name, or else an integer label is an index into the names.

Where the splits come from, first match wins:

1. a directory with ``train.*``, ``validation.*`` (or ``dev.*`` / ``valid.*``) and ``test.*``;
2. a ``split`` column with values ``train``, ``validation`` (or ``dev``/``valid``), ``test``;
3. otherwise a seeded, stratified 80/10/10 split.

In 1 and 2 a missing validation split is carved from train (10%, at most 5,000).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipt_ray.constants import ACCURACY
from ipt_ray.data.splits import carve_validation, split_three_ways
from ipt_ray.data.tables import EXTENSIONS, Table, read_table
from ipt_ray.data.task import Split, TaskData
from ipt_ray.errors import DataError, did_you_mean

SPLIT_COLUMN = "split"
#: Accepted values of the split column (and split file stems), mapped to our split names.
SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
_INT = re.compile(r"[+-]?\d+")


def _require_column(table: Table, column: str, option: str) -> list[Any]:
    if column not in table.columns:
        found = ", ".join(table.columns) or "none"
        raise DataError(
            f"{table.source} has no {option.replace('_', ' ')} {column!r}"
            f"{did_you_mean(column, table.columns)}; columns found: {found} "
            f"(choose another with {option})"
        )
    return table.columns[column]


def _texts(table: Table, values: list[Any], column: str) -> list[str]:
    texts: list[str] = []
    for row, value in enumerate(values):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            what = "no value (null)" if value is None else f"a {type(value).__name__}"
            raise DataError(f"{table.where(row)}: column {column!r} has {what}, expected text")
        if not value.strip():
            raise DataError(f"{table.where(row)}: column {column!r} is empty, expected text")
        texts.append(value)
    return texts


def _label(value: Any) -> int | str | None:
    """Normalise one label: integers (also written as strings or integral floats) become
    ints, other strings are stripped; None for a missing or unusable value."""
    if isinstance(value, str):
        value = value.strip()
        if _INT.fullmatch(value):
            return int(value)
        return value or None
    if isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _raw_labels(table: Table, values: list[Any], column: str) -> list[int | str]:
    labels: list[int | str] = []
    for row, value in enumerate(values):
        label = _label(value)
        if label is None:
            what = "no label" if value is None or value == "" else f"label {value!r}"
            raise DataError(
                f"{table.where(row)}: column {column!r} has {what}; "
                "labels must be strings or integers"
            )
        labels.append(label)
    return labels


@dataclass(frozen=True)
class Columns:
    """Which columns hold the texts, the optional text pairs and the labels.

    ``pair_required``: the text-pair column was named explicitly, so it must exist.
    """

    text: str = "text"
    text_pair: str = "text_pair"
    label: str = "label"
    pair_required: bool = False


@dataclass
class _RawSplit:
    table: Table
    texts: list[str]
    pairs: list[str] | None
    labels: list[int | str]
    rows: list[int]  # row indices into table


def _extract(table: Table, columns: Columns) -> _RawSplit:
    text_values = _require_column(table, columns.text, "text_column")
    label_values = _require_column(table, columns.label, "label_column")
    pairs: list[str] | None = None
    if columns.text_pair in table.columns:
        pairs = _texts(table, table.columns[columns.text_pair], columns.text_pair)
    elif columns.pair_required:
        _require_column(table, columns.text_pair, "text_pair_column")
    return _RawSplit(
        table=table,
        texts=_texts(table, text_values, columns.text),
        pairs=pairs,
        labels=_raw_labels(table, label_values, columns.label),
        rows=list(range(len(table))),
    )


def _encode_labels(
    parts: Sequence[_RawSplit], label_names: list[str] | None, source: str
) -> tuple[list[str], list[list[int]]]:
    """Map raw labels to ids; return the label names and one id list per part.

    Raises:
        DataError: a label is not among explicit ``label_names``, or there is only one label.
    """
    distinct = {y for part in parts for y in part.labels}
    if len(distinct) < 2:
        only = next(iter(distinct), None)
        raise DataError(
            f"{source}: every row has the label {only!r}; classification needs at least "
            "2 distinct labels"
        )
    if label_names is None:
        if all(isinstance(y, int) for y in distinct):
            ordered = sorted(distinct, key=int)
        else:
            ordered = sorted(distinct, key=str)
        names = [str(y) for y in ordered]
        index: dict[int | str, int] = {str(y): i for i, y in enumerate(ordered)}
        return names, [[index[str(y)] for y in part.labels] for part in parts]
    by_name = {name: i for i, name in enumerate(label_names)}
    encoded: list[list[int]] = []
    for part in parts:
        ids: list[int] = []
        for row, y in zip(part.rows, part.labels, strict=True):
            if str(y) in by_name:
                ids.append(by_name[str(y)])
            elif isinstance(y, int) and 0 <= y < len(label_names):
                ids.append(y)
            else:
                raise DataError(
                    f"{part.table.where(row)}: label {y!r} is not one of the label names "
                    f"{', '.join(label_names)} (nor an index 0-{len(label_names) - 1})"
                    f"{did_you_mean(str(y), label_names)}"
                )
        encoded.append(ids)
    return list(label_names), encoded


def _to_split(part: _RawSplit, ids: list[int]) -> Split:
    return Split(texts=part.texts, text_pairs=part.pairs, labels=ids)


def _select(part: _RawSplit, rows: list[int]) -> _RawSplit:
    return _RawSplit(
        table=part.table,
        texts=[part.texts[r] for r in rows],
        pairs=None if part.pairs is None else [part.pairs[r] for r in rows],
        labels=[part.labels[r] for r in rows],
        rows=rows,
    )


def _split_by_column(part: _RawSplit) -> dict[str, _RawSplit]:
    table = part.table
    rows: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for row, value in enumerate(table.columns[SPLIT_COLUMN]):
        key = str(value).strip().lower() if value is not None else ""
        if key not in SPLIT_ALIASES:
            raise DataError(
                f"{table.where(row)}: split {value!r} is not one of "
                f"{', '.join(SPLIT_ALIASES)}{did_you_mean(key, SPLIT_ALIASES)}"
            )
        rows[SPLIT_ALIASES[key]].append(row)
    return {name: _select(part, r) for name, r in rows.items() if r}


def _find_split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        split = SPLIT_ALIASES.get(path.stem.lower())
        if split is None or path.suffix.lower() not in EXTENSIONS or not path.is_file():
            continue
        if split in found:
            raise DataError(
                f"{directory} has two {split} files, {found[split].name} and {path.name}; keep one"
            )
        found[split] = path
    missing = [s for s in ("train", "test") if s not in found]
    if missing:
        listing = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise DataError(
            f"directory {directory} has no {missing[0]} file; it needs train.*, test.* and "
            f"optionally validation.* (or dev.*) with extension {', '.join(EXTENSIONS)}; "
            f"found: {listing}"
        )
    return found


def load_local_task(
    spec: str, *, seed: int, columns: Columns, label_names: list[str] | None
) -> TaskData:
    """Load a task from a data file or a directory of split files (see the module docstring).

    Args:
        spec: path to a .csv/.jsonl/.json/.parquet file or to a directory.
        seed: fixes the 80/10/10 split or the carved validation split.
        columns: the column names to read.
        label_names: explicit label names, or None to use the sorted distinct labels.

    Raises:
        DataError: any problem with the files or their content, in one line naming the file,
            the row and what is allowed.
    """
    path = Path(spec).expanduser()
    parts: dict[str, _RawSplit]
    if path.is_dir():
        parts = {
            split: _extract(read_table(file), columns)
            for split, file in _find_split_files(path).items()
        }
        kinds = {split: part.pairs is not None for split, part in parts.items()}
        if len(set(kinds.values())) > 1:
            with_pair = [s for s, k in kinds.items() if k]
            raise DataError(
                f"{spec}: only the {', '.join(with_pair)} file(s) have a {columns.text_pair!r} "
                "column; give it in every split file or in none"
            )
    else:
        whole = _extract(read_table(path), columns)
        if SPLIT_COLUMN in whole.table.columns:
            parts = _split_by_column(whole)
            missing = [s for s in ("train", "test") if s not in parts]
            if missing:
                raise DataError(
                    f"{spec} has a {SPLIT_COLUMN!r} column but no row with split "
                    f"{missing[0]!r}; it needs train and test rows (validation is optional)"
                )
        else:
            parts = {"all": whole}
    names, encoded = _encode_labels(list(parts.values()), label_names, spec)
    splits = {
        name: _to_split(part, ids) for (name, part), ids in zip(parts.items(), encoded, strict=True)
    }
    if "all" in splits:
        train, validation, test = split_three_ways(splits["all"], seed=seed, source=spec)
    else:
        train, test = splits["train"], splits["test"]
        if "validation" in splits:
            validation = splits["validation"]
        else:
            train, validation = carve_validation(train, seed=seed, source=spec)
    return TaskData(
        name=spec,
        label_names=names,
        metric=ACCURACY,
        train=train,
        validation=validation,
        test=test,
    )
