"""Reading one data file (CSV, JSON Lines / JSON, Parquet) into a :class:`Table` of columns,
with the row locations that messages about a bad value name."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipt_ray.errors import DataError

#: File extensions read as data files.
EXTENSIONS = (".csv", ".jsonl", ".json", ".parquet")


@dataclass
class Table:
    """Rows of one data file as columns of Python values.

    Attributes:
        source: the file, for messages.
        columns: column name -> one value per row (None where a row lacks the field).
        locations: one number per row for messages: the line in the file for CSV and JSON
            Lines, the 1-based row otherwise (``location_kind`` says which).
    """

    source: str
    columns: dict[str, list[Any]]
    locations: list[int]
    location_kind: str

    def __len__(self) -> int:
        return len(self.locations)

    def where(self, row: int) -> str:
        return f"{self.source} {self.location_kind} {self.locations[row]}"


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise DataError(
            f"{source} is not UTF-8 (byte 0x{bad} at byte offset {exc.start}); re-save it as UTF-8"
        ) from None


def _read_csv(path: Path, source: str) -> Table:
    text = _decode(path.read_bytes(), source)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        rows: list[list[str]] = []
        locations: list[int] = []
        for fields in reader:
            if not fields:  # a blank line
                continue
            if header is None:
                header = [name.strip() for name in fields]
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{source} line {reader.line_num} is malformed CSV: {len(fields)} fields, "
                    f"but the header has {len(header)}"
                )
            rows.append(fields)
            locations.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{source} line {reader.line_num} is malformed CSV: {exc}") from None
    if header is None or not rows:
        raise DataError(f"{source} is empty: it needs a header line and at least one row")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return Table(source, columns, locations, "line")


def _records_to_table(
    records: Sequence[Any], locations: list[int], kind: str, source: str
) -> Table:
    names: dict[str, None] = {}
    for record, location in zip(records, locations, strict=True):
        if not isinstance(record, dict):
            raise DataError(
                f"{source} {kind} {location} is a JSON {type(record).__name__}, "
                'expected an object like {"text": ..., "label": ...}'
            )
        names.update(dict.fromkeys(record))
    if not records:
        raise DataError(f"{source} is empty: it needs at least one row")
    columns = {name: [record.get(name) for record in records] for name in names}
    return Table(source, columns, locations, kind)


def _read_json(path: Path, source: str) -> Table:
    text = _decode(path.read_bytes(), source)
    if text.lstrip().startswith("["):  # one JSON array of objects
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source} is malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        return _records_to_table(records, list(range(1, len(records) + 1)), "row", source)
    records = []
    locations = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source} line {number} is malformed JSON (column {exc.colno}): {exc.msg}; "
                "expected one JSON object per line"
            ) from None
        locations.append(number)
    return _records_to_table(records, locations, "line", source)


def _read_parquet(path: Path, source: str) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise DataError(f"{source} is not a readable Parquet file: {reason}") from None
    if table.num_rows == 0:
        raise DataError(f"{source} is empty: it needs at least one row")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    return Table(source, columns, list(range(1, table.num_rows + 1)), "row")


def read_table(path: Path) -> Table:
    """Read one data file into a :class:`Table`.

    Raises:
        DataError: the file is missing, has an unsupported extension, is not UTF-8, is
            malformed or empty.
    """
    source = str(path)
    if not path.exists():
        raise DataError(f"data file {source} not found")
    if not path.is_file():
        raise DataError(f"{source} is not a file")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataError(
            f"{source} has unsupported extension {suffix or '(none)'!r}; "
            f"allowed: {', '.join(EXTENSIONS)}"
        )
    if suffix == ".csv":
        return _read_csv(path, source)
    if suffix == ".parquet":
        return _read_parquet(path, source)
    return _read_json(path, source)
