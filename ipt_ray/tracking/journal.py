"""The on-disk journal of MLflow calls a search could not make yet (the store was unreachable).

:class:`ipt_ray.tracking.tracker.SearchTracker` keeps such calls, in order, as :class:`PendingCall`
records: an operation name and JSON-able arguments. With a journal, each record is also
appended here as it is queued, so that a driver killed during an MLflow outage loses none of
them: the resumed search's tracker reads the journal and replays it before any new call.

Format: JSON lines, appended and fsynced one at a time (no rewrite in place):

- a call: ``{"seq": 7, "op": "log_metrics", "args": {...}, "what": "log metrics (step 2)"}``;
- a call is done with (applied, or refused and dropped): ``{"done": 7}``, plus
  ``"trial"``/``"run_id"`` when it created a trial's run (later calls may name the run by
  its trial only, its id was not known when they were queued);
- a trial's run id kept by a rewrite: ``{"trial": "abc_00001", "run_id": "..."}``.

A kill in the middle of an append leaves a truncated last line: it is ignored (the call it
held had not been queued yet as far as the dead driver's callers knew, and no later line
exists). The file is rewritten only whole (a temporary file, fsynced, moved over it), and
removed once nothing is pending.

Since every ``done`` line is fsynced before the next call is tried, at most one call of a
journal (the first pending one) can have reached MLflow without its ``done`` line: only that
one is replayed as "maybe applied already" (see ``RunWriter._apply``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The journal's file name, in the search's Ray experiment folder (beside Tune's state).
JOURNAL_FILE = "mlflow-journal.jsonl"
#: Folder (under the ipt-ray cache) of journals of searches whose Ray storage is a URI.
REMOTE_JOURNALS_DIR = "mlflow-journals"

# Keys of a journal line (the writer and the reader are this module).
KEY_SEQ = "seq"
KEY_OP = "op"
KEY_ARGS = "args"
KEY_WHAT = "what"
KEY_DONE = "done"
KEY_TRIAL = "trial"
KEY_RUN_ID = "run_id"


@dataclass
class PendingCall:
    """One MLflow call waiting for the store: what the in-memory backlog holds and what the
    journal stores (``attempts`` is this process's count and is not written).

    ``op`` names the operation and ``args`` are its JSON-able arguments;
    ``RunWriter._apply`` turns them into the MlflowClient call. ``what`` describes it in
    warnings. ``seq`` orders the calls of one search (unique within its journal).
    """

    op: str
    args: dict[str, Any]
    what: str
    seq: int = 0
    attempts: int = 0
    journaled: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {KEY_SEQ: self.seq, KEY_OP: self.op, KEY_ARGS: self.args, KEY_WHAT: self.what}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingCall:
        """The call of a journal line.

        Raises:
            ValueError: the line is not a call (a key is missing or has the wrong type).
        """
        seq, op, args, what = (data.get(k) for k in (KEY_SEQ, KEY_OP, KEY_ARGS, KEY_WHAT))
        if not isinstance(seq, int) or not isinstance(op, str) or not isinstance(args, dict):
            raise ValueError(f"not a journaled call: {dict(data)!r:.200}")
        return cls(op, args, str(what or op), seq=seq, journaled=True)


@dataclass
class JournalContents:
    """What a journal holds: the calls not done yet, in order, and the run ids of trials
    learned so far (``trial id -> run id``)."""

    pending: list[PendingCall] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    truncated: bool = False  # the last line was cut short (a kill mid-append); ignored
    bad_lines: int = 0  # lines in the middle that are not JSON (skipped)

    @property
    def next_seq(self) -> int:
        return max((c.seq for c in self.pending), default=0) + 1


def _line(data: Mapping[str, Any]) -> bytes:
    # NaN/inf are valid metric values: Python's json writes and reads them (allow_nan).
    # default=str: a value that is not JSON (a numpy scalar...) is written as its text
    # rather than costing the record; MLflow would have stringified a param or tag anyway.
    return (json.dumps(data, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def read_journal(path: str | Path) -> JournalContents:
    """Read a journal without changing it (an absent file is an empty journal).

    Raises:
        OSError: the file exists but cannot be read.
    """
    contents = JournalContents()
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return contents
    lines = raw.split(b"\n")
    # The text after the last newline is a line the writer never finished (or b"").
    tail = lines.pop()
    calls: dict[int, PendingCall] = {}
    for number, line in enumerate([*lines, tail], start=1):
        if not line.strip():
            continue
        is_tail = number == len(lines) + 1
        try:
            data = json.loads(line.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            if KEY_RUN_ID in data and isinstance(data.get(KEY_TRIAL), str):
                contents.runs[data[KEY_TRIAL]] = str(data[KEY_RUN_ID])
            if KEY_DONE in data:
                calls.pop(int(data[KEY_DONE]), None)
            elif KEY_OP in data:
                call = PendingCall.from_json(data)
                calls[call.seq] = call
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            if is_tail:
                contents.truncated = True
                logger.warning("%s: ignoring a truncated last line (%d bytes)", path, len(line))
            else:
                contents.bad_lines += 1
                logger.warning("%s: skipping unreadable line %d: %s", path, number, exc)
    contents.pending = sorted(calls.values(), key=lambda c: c.seq)
    return contents


def _fsync_dir(directory: Path) -> None:
    """Make a rename or removal in ``directory`` durable (not supported everywhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """Appends to and rewrites one journal file (see the module docstring).

    Not thread-safe: the tracker calls it from the Tune driver's loop only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    # A tracker pickled by Tune (tests without a live-tracker key) carries no open file.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_fd": None}

    def read(self) -> JournalContents:
        """See :func:`read_journal`.

        Raises:
            OSError: the file exists but cannot be read.
        """
        return read_journal(self.path)

    def _append(self, data: Mapping[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = _line(data)
        written = os.write(self._fd, line)  # one write of an O_APPEND file: never interleaved
        if written != len(line):
            raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")
        os.fsync(self._fd)

    def append(self, call: PendingCall) -> None:
        """Journal a queued call (durable when this returns).

        Raises:
            OSError: it could not be written.
        """
        self._append(call.to_json())
        call.journaled = True

    def done(self, seq: int, *, trial: str | None = None, run_id: str | None = None) -> None:
        """Mark call ``seq`` done (durable when this returns); ``trial``/``run_id``: the run
        it created.

        Raises:
            OSError: it could not be written.
        """
        data: dict[str, Any] = {KEY_DONE: seq}
        if trial is not None and run_id is not None:
            data.update({KEY_TRIAL: trial, KEY_RUN_ID: run_id})
        self._append(data)

    def rewrite(self, pending: Iterable[PendingCall], runs: Mapping[str, str]) -> None:
        """Replace the file with ``runs`` and ``pending`` only (atomically: a kill leaves the
        old file or the new one); remove it when both are empty.

        Raises:
            OSError: it could not be written (the old file is then left as it was).
        """
        self.close()
        calls = list(pending)
        if not calls and not runs:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return
            _fsync_dir(self.path.parent)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            for trial, run_id in runs.items():
                f.write(_line({KEY_TRIAL: trial, KEY_RUN_ID: run_id}))
            for call in calls:
                f.write(_line(call.to_json()))
                call.journaled = True
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        """Close the append handle (reopened on the next append)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def journal_path(experiment_path: str) -> Path:
    """Where the journal of the search whose Ray experiment folder is ``experiment_path``
    lives: in that folder when it is a local path (``file://`` included), so that it moves
    and is removed with the search's results. A URI storage (``s3://``, ``gs://``...) cannot
    take an fsynced append, so its journal lives on this machine instead, under
    ``<ipt-ray cache>/mlflow-journals/`` (``$IPT_RAY_CACHE``, default ``~/.cache/ipt-ray``),
    keyed by the experiment URI: a driver killed during an outage replays it when the search
    is resumed from the same machine (or one sharing that cache folder).
    """
    if experiment_path.startswith("file://"):
        return Path(experiment_path[len("file://") :]) / JOURNAL_FILE
    if "://" not in experiment_path:
        return Path(experiment_path) / JOURNAL_FILE
    from ipt_ray.data.cache import cache_root

    key = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_path).strip("._") or "search"
    return cache_root() / REMOTE_JOURNALS_DIR / key / JOURNAL_FILE


__all__ = [
    "JOURNAL_FILE",
    "REMOTE_JOURNALS_DIR",
    "Journal",
    "JournalContents",
    "PendingCall",
    "journal_path",
    "read_journal",
]
