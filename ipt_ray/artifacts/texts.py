"""Reading the texts to predict from files: ``.txt``, ``.csv`` and ``.jsonl``.

Needs: nothing heavy (no torch). Provides :func:`read_texts` and :class:`ColumnNotFound`.

- ``.txt``: one text per line (UTF-8); blank lines are skipped; no pairs.
- ``.csv``: a header row; column ``text`` and, optionally, ``text_pair`` (names settable).
- ``.jsonl``: one JSON object per line with the same keys; blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipt_ray.errors import DataError, UserError

INPUT_SUFFIXES = (".txt", ".csv", ".jsonl")


class ColumnNotFound(DataError):
    """An input file lacks the column that a setting names.

    Attributes:
        path: the input file.
        column: the column asked for.
        columns: the columns the file has.
        setting: ``"text_column"`` or ``"text_pair_column"``: the setting that names it; a
            command line words it as its own flag with :meth:`naming`.
    """

    def __init__(self, path: Path, column: str, columns: Sequence[str], setting: str) -> None:
        self.path, self.column, self.setting = path, column, setting
        self.columns = [str(c) for c in columns]
        super().__init__(self.naming(setting))

    def naming(self, setting: str) -> str:
        """The message, with the setting to change called ``setting`` (``--text-column``)."""
        which = "second texts" if self.setting == "text_pair_column" else "texts"
        return (
            f"input file {str(self.path)!r} has no column {self.column!r}; columns: "
            f"{', '.join(self.columns) or '(none)'}; set {setting} to the column that holds "
            f"the {which}"
        )


def check_suffix(path: Path, allowed: Sequence[str], what: str) -> str:
    """``path``'s lowercase suffix.

    Raises:
        UserError: the suffix is not one of ``allowed`` (``what`` names the file's role).
    """
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
    suffix = check_suffix(path, INPUT_SUFFIXES, "input")
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
        raise ColumnNotFound(path, text_column, header, "text_column")
    pair_column = text_pair_column
    if pair_column is None:
        pair_column = "text_pair" if "text_pair" in header else None
    elif rows and pair_column not in header:
        raise ColumnNotFound(path, pair_column, header, "text_pair_column")
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


__all__ = ["INPUT_SUFFIXES", "ColumnNotFound", "check_suffix", "read_texts"]
