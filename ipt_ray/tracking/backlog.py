"""The tracker's queue of MLflow calls that the store could not take yet (:class:`CallBacklog`).

A call is tried at once. One that fails because the store is unreachable (connection refused
or dropped, a timeout, a locked database, a 5xx answer: :func:`is_transient`) is kept, in
order, and every later call queues behind it, so a trial's run is created before its metrics
are logged, and metrics before the run is closed. The queue is replayed at most every
``retry_interval`` seconds, when the next call comes; :meth:`CallBacklog.flush` waits up to
``flush_timeout`` seconds for it to drain. A call the store refuses (a 4xx answer, a bad
value) is logged as a warning and dropped.

With a journal (:mod:`ipt_ray.tracking.journal`) every kept call is also appended to a file as it is
queued, and a backlog built on the same file (a resumed search) replays what a killed driver
left, in order, before any new call.

:class:`~ipt_ray.tracking.background.BackgroundBacklog` (what a search's driver uses) makes the
same calls from a writer thread instead, so that the Tune loop never waits on MLflow.

The calls are :class:`~ipt_ray.tracking.journal.PendingCall` records; what one *does* is the owner's
business (``apply``: :meth:`ipt_ray.tracking.writer.RunWriter._apply`). MLflow is imported only
to classify its errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ipt_ray.tracking.journal import Journal, JournalContents, PendingCall

logger = logging.getLogger(__name__)

#: MLflow error codes that mean "try again later" (the store is down, busy or overloaded).
_TRANSIENT_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
)
#: MLflow's own per-request HTTP retries while a call is tried (unless the user set them):
#: the backlog retries by itself, so one call must not hold the Tune loop for minutes.
_QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
#: Default of ``flush_timeout`` (seconds); the environment variable overrides it.
FLUSH_TIMEOUT_ENV = "IPT_RAY_MLFLOW_FLUSH_TIMEOUT"
DEFAULT_FLUSH_TIMEOUT = 600.0
#: How often a call the store *answered* with a server-side error is tried before it is
#: dropped (an unreachable store is waited for without a limit: see ``flush_timeout``).
_SERVER_ERROR_ATTEMPTS = 3
#: What a pickled backlog leaves out (rebuilt by ``_init_threads``).
_THREAD_STATE = ("_cond", "_writer")
#: Calls done with before the journal is compacted although some are still pending (a store
#: that keeps coming and going must not grow the file without bound).
COMPACT_AFTER = 1000


class NoRun(Exception):
    """Raised by ``apply`` for a call that names a trial whose run was never created: the
    call is dropped and counted lost."""


def is_transient(exc: BaseException, attempts: int = 1) -> bool:
    """Whether a call that failed ``attempts`` times may succeed later: the store could not be
    reached (connection refused or dropped, a timeout, a locked database), or it answered with
    a server-side error fewer than ``_SERVER_ERROR_ATTEMPTS`` times. A refusal (a bad value, a
    missing run) or a local error (a file gone) is not."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, (ConnectionError, TimeoutError, requests.RequestException)):
        return True
    if isinstance(exc, RestException):
        return str(exc.error_code) in _TRANSIENT_CODES and attempts < _SERVER_ERROR_ATTEMPTS
    if isinstance(exc, MlflowException):  # raised by the client: no answer came
        return str(exc.error_code) in _TRANSIENT_CODES
    return False


@contextlib.contextmanager
def quick_http_requests() -> Iterator[None]:
    """Cut MLflow's own HTTP retries for one call (variables the user set are kept)."""
    added = [k for k in _QUICK_HTTP if k not in os.environ]
    for k in added:
        os.environ[k] = _QUICK_HTTP[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class CallBacklog:
    """The ordered, retrying, optionally journaled queue of one tracker's MLflow calls.

    Args:
        apply: makes the MLflow call a :class:`PendingCall` describes; raises what the client
            raises, or :class:`NoRun`.
        tracking_uri: named in warnings.
        retry_interval: seconds between attempts to replay kept calls.
        flush_timeout: how long :meth:`flush` waits for an unreachable store (default:
            ``$IPT_RAY_MLFLOW_FLUSH_TIMEOUT`` or 600 s).
        journal: the file kept calls are appended to; None: they live in memory only.
        done_fields: for a journaled call that is done with, what its ``done`` line carries
            (``(trial, run_id)`` of a trial run it created, else ``(None, None)``).
        runs_of: the known ``trial -> run id`` of the trials that calls name by trial (kept
            by a journal rewrite, since those calls cannot find the id otherwise).
    """

    def __init__(
        self,
        apply: Callable[[PendingCall], None],
        *,
        tracking_uri: str,
        retry_interval: float = 5.0,
        flush_timeout: float | None = None,
        journal: str | Path | None = None,
        done_fields: Callable[[PendingCall], tuple[str | None, str | None]],
        runs_of: Callable[[Sequence[PendingCall]], dict[str, str]],
    ) -> None:
        self.apply = apply
        self.tracking_uri = tracking_uri
        self.retry_interval = retry_interval
        if flush_timeout is None:
            flush_timeout = float(os.environ.get(FLUSH_TIMEOUT_ENV, DEFAULT_FLUSH_TIMEOUT))
        self.flush_timeout = flush_timeout
        self.done_fields = done_fields
        self.runs_of = runs_of
        self.failed_calls = 0  # calls that failed at least once (refused or kept)
        self.lost_calls = 0  # calls that never reached MLflow (refused, or given up on)
        self.attempts = 0  # MLflow calls tried (a replayed call counts each time)
        self.seconds = 0.0  # wall time spent in them (by the caller, or the writer thread)
        self.caller_seconds = 0.0  # wall time the caller spent in submit() (the Tune loop)
        self.peak = 0  # the most calls kept at once
        self._queue: deque[PendingCall] = deque()
        self._next_retry = 0.0
        # Calls flush() gave up on: lost to this process, but kept in the journal for a resume.
        self._given_up: list[PendingCall] = []
        self._seq = 0
        self._done_since_rewrite = 0
        self.journal = Journal(journal) if journal is not None else None
        self._init_threads()

    def _init_threads(self) -> None:
        # Guards the queue, the journal and the counters: BackgroundBacklog's writer thread
        # shares them with the caller (uncontended here).
        self._cond = threading.Condition()

    # A tracker pickled by Tune (tests without a live-tracker key) carries no thread or lock.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _THREAD_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_threads()

    def __len__(self) -> int:
        """Calls kept while the store is unreachable."""
        return len(self._queue)

    # -- the journal -----------------------------------------------------------------------
    def load_journal(self, learn_runs: Callable[[Mapping[str, str]], None]) -> None:
        """Queue the calls an earlier driver journaled (replayed before any new call), hand
        the run ids it learned to ``learn_runs``, and rewrite the journal without its done
        calls and a truncated last line (appends must not land on a half-written line)."""
        if self.journal is None:
            return
        try:
            contents = self.journal.read()
        except OSError as exc:
            logger.warning("MLflow journal %s cannot be read (ignored): %s", self.journal.path, exc)
            contents = JournalContents()
        learn_runs(contents.runs)
        self._seq = contents.next_seq - 1
        if contents.pending:
            # Every done line is fsynced before the next call is tried: only the first
            # pending call may have reached MLflow without one (see SearchTracker._apply).
            contents.pending[0].attempts = 1
            self._queue.extend(contents.pending)
            logger.warning(
                "MLflow: %d call(s) an earlier driver could not make are in %s; they are "
                "replayed, in order, before any new call",
                len(contents.pending),
                self.journal.path,
            )
        if contents.pending or contents.runs or contents.truncated or contents.bad_lines:
            self._rewrite_journal()

    def _journal_failed(self, exc: OSError) -> None:
        """Go on without a journal (the calls stay in memory): a disk that cannot take it
        must not stop the search. The file is removed: a partial journal replayed later
        would miss calls."""
        assert self.journal is not None
        logger.warning(
            "MLflow journal %s cannot be written (%s): buffered calls are kept in memory only",
            self.journal.path,
            exc,
        )
        journal, self.journal = self.journal, None
        with contextlib.suppress(OSError):
            journal.close()
            journal.path.unlink()

    def _rewrite_journal(self) -> None:
        """Compact the journal to what is still pending (removed when nothing is)."""
        if self.journal is None:
            return
        calls = [*self._given_up, *self._queue]
        try:
            self.journal.rewrite(calls, self.runs_of(calls))
        except OSError as exc:
            self._journal_failed(exc)
        self._done_since_rewrite = 0

    def _enqueue(self, call: PendingCall) -> None:
        """Keep ``call``, journaled first (durable before it is queued)."""
        self._seq += 1
        call.seq = self._seq
        if self.journal is not None:
            try:
                self.journal.append(call)
            except OSError as exc:
                self._journal_failed(exc)
        self._queue.append(call)
        self.peak = max(self.peak, len(self._queue))

    def _dequeue(self) -> None:
        """Done with the first kept call: drop it, and say so in the journal."""
        call = self._queue.popleft()
        if self.journal is None or not call.journaled:
            return
        trial, run_id = self.done_fields(call)
        try:
            self.journal.done(call.seq, trial=trial, run_id=run_id)
        except OSError as exc:
            self._journal_failed(exc)
        self._done_since_rewrite += 1

    # -- calls -----------------------------------------------------------------------------
    def _attempt(self, call: PendingCall) -> bool:
        """Try ``call``: True when done with it (succeeded, or refused and dropped). The
        counters change under the lock: the writer thread and :meth:`flush` both count."""
        call.attempts += 1
        started = time.perf_counter()
        failed = lost = False
        try:
            with quick_http_requests():
                self.apply(call)
            return True
        except NoRun as exc:
            lost = True
            logger.warning("MLflow: %s dropped: %s", call.what, exc)
            return True
        except Exception as exc:
            failed = True
            if is_transient(exc, call.attempts):
                return False
            lost = True
            logger.warning("MLflow: %s failed (the search goes on): %s", call.what, exc)
            return True
        finally:
            with self._cond:
                self.attempts += 1
                self.failed_calls += failed
                self.lost_calls += lost
                self.seconds += time.perf_counter() - started

    def submit(self, call: PendingCall) -> None:
        """Make ``call`` now, or keep it behind the calls already kept; never raises."""
        started = time.perf_counter()
        try:
            self._submit(call)
        finally:
            self.caller_seconds += time.perf_counter() - started

    def _submit(self, call: PendingCall) -> None:
        if self._queue:
            self.drain()
        if self._queue:
            self._enqueue(call)
        elif not self._attempt(call):
            self._enqueue(call)
            self._next_retry = time.monotonic() + self.retry_interval
            self._warn_unreachable(call)

    def _warn_unreachable(self, call: PendingCall) -> None:
        logger.warning(
            "MLflow at %s is unreachable (%s failed); the search goes on and its calls "
            "are kept%s and replayed when it answers again",
            self.tracking_uri,
            call.what,
            f" (journaled in {self.journal.path})" if self.journal is not None else "",
        )

    def drain(self, *, force: bool = False) -> None:
        """Replay kept calls in order until one fails again (at most once per
        ``retry_interval`` unless ``force``)."""
        if not self._queue or (not force and time.monotonic() < self._next_retry):
            return
        replayed = 0
        while self._queue:
            if not self._attempt(self._queue[0]):
                self._next_retry = time.monotonic() + self.retry_interval
                if self._done_since_rewrite >= COMPACT_AFTER:
                    self._rewrite_journal()
                return
            self._dequeue()
            replayed += 1
        self._rewrite_journal()  # nothing pending: the journal goes
        logger.warning("MLflow answers again: %d buffered call(s) replayed", replayed)

    def settled(self, timeout: float) -> bool:
        """Whether every call submitted so far has been made (or dropped); ``timeout``: how
        long a background writer may be waited for."""
        return not self._queue

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every kept call has reached MLflow, at most ``timeout`` seconds
        (default ``flush_timeout``). Returns True when nothing is left; otherwise the calls
        left are dropped from memory, counted in ``lost_calls`` and reported; a journal keeps
        them (they are replayed if the search is resumed)."""
        timeout = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._queue:
            self._warn_waiting(timeout)
        while self._queue:
            self.drain(force=True)
            if not self._queue:
                break
            if time.monotonic() >= deadline:
                self._give_up(timeout)
                return False
            time.sleep(min(self.retry_interval, max(0.0, deadline - time.monotonic())))
        return True

    def _warn_waiting(self, timeout: float) -> None:
        logger.warning(
            "waiting up to %.0f s for MLflow at %s to take %d buffered call(s)",
            timeout,
            self.tracking_uri,
            len(self._queue),
        )

    def _give_up(self, timeout: float) -> None:
        """Drop the kept calls from memory (a journal keeps them for a resume)."""
        self.lost_calls += len(self._queue)
        logger.warning(
            "MLflow at %s did not answer for %.0f s: %d call(s) not logged (%s, ...)%s",
            self.tracking_uri,
            timeout,
            len(self._queue),
            self._queue[0].what,
            f"; they stay in {self.journal.path} and are replayed if the search is resumed"
            if self.journal is not None
            else "",
        )
        if self.journal is not None:
            self._given_up.extend(self._queue)
        self._queue.clear()


__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "FLUSH_TIMEOUT_ENV",
    "CallBacklog",
    "NoRun",
    "is_transient",
    "quick_http_requests",
]
