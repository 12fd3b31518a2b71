"""The record of a search beside its Ray results: ``<storage>/<name>.search.json``.

It tells a later ``ipt-ray search`` with the same name (or ``--resume NAME``) where the
interrupted search lives (its Tune experiment folder), which MLflow parent run to reuse and
whether it finished. Written atomically; readable on any storage pyarrow reaches (local
paths, ``s3://``, ``gs://``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING, FINISHED, INTERRUPTED = "running", "finished", "interrupted"


@dataclass
class SearchRecord:
    name: str
    experiment_dir: str
    parent_run_id: str
    tracking_uri: str
    status: str = RUNNING
    updated: float = field(default_factory=time.time)

    @property
    def unfinished(self) -> bool:
        return self.status != FINISHED


def _fs(storage: str) -> tuple[Any, str]:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(storage)
    return fs, str(path)


def record_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}.search.json"


def read_record(storage: str, name: str) -> SearchRecord | None:
    """The record of search ``name`` under ``storage``, or None."""
    fs, root = _fs(storage)
    path = f"{root.rstrip('/')}/{name}.search.json"
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    try:
        return SearchRecord(**data)
    except TypeError:
        return None


def write_record(storage: str, record: SearchRecord) -> None:
    """Write (replace) the record; the temporary file is moved over the old one."""
    fs, root = _fs(storage)
    record.updated = time.time()
    root = root.rstrip("/")
    fs.create_dir(root, recursive=True)
    final = f"{root}/{record.name}.search.json"
    tmp = f"{final}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(asdict(record), indent=2).encode("utf-8"))
    fs.move(tmp, final)
