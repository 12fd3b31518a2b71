"""MLflow calls made off the caller's thread: :class:`BackgroundBacklog`.

A search's driver logs every trial from Ray Tune's event loop. Made there, each MLflow call
(a SQLite transaction with its own commit, or an HTTP round trip) holds the loop: in a
2,000-trial search of one-second trials that was 8.5 ms a call, 148 s in all. Here the
caller only queues the call; one writer thread makes the calls in order, with
:class:`~ipt_ray.tracking.backlog.CallBacklog`'s retries, journal and accounting.

What does not change: the calls reach MLflow in the order they were submitted (a trial's run
is created before its metrics, its metrics before it is closed); a call the store cannot take
is retried every ``retry_interval`` seconds; :meth:`flush` waits up to ``flush_timeout``. What
does: a call is made a moment after :meth:`submit` returns, so every call is journaled (when
there is a journal) before it is queued, and a driver killed with calls still queued loses
none: the resumed search replays them (the journal's ``done`` lines are written by the writer
before it tries the next call, so at most the first pending call may have been made already,
as before). :meth:`settled` waits for the writer where the caller must read what it wrote.
"""

from __future__ import annotations

import logging
import threading
import time

from ipt_ray.tracking.backlog import COMPACT_AFTER, CallBacklog
from ipt_ray.tracking.journal import PendingCall

logger = logging.getLogger(__name__)

#: Seconds the writer thread waits for a call before it ends (the next call starts another).
WRITER_IDLE_S = 10.0


class BackgroundBacklog(CallBacklog):
    """A :class:`~ipt_ray.tracking.backlog.CallBacklog` whose calls a writer thread makes
    (see the module docstring). ``apply``, ``done_fields`` and ``runs_of`` are called from
    that thread; ``len()`` counts the calls not made yet. Same arguments."""

    def _init_threads(self) -> None:
        super()._init_threads()
        self._writer: threading.Thread | None = None
        self._failing = False  # the writer's last attempt failed
        self._outage = False  # a call failed since the queue was last empty
        self._since_outage = 0  # calls the writer made since then
        self._retry_now = False  # a waiter asks the writer not to wait for retry_interval

    def _submit(self, call: PendingCall) -> None:
        """Queue ``call``, journaled first, for the writer."""
        with self._cond:
            self._enqueue(call)
            self._start_writer()
            self._cond.notify_all()

    def drain(self, *, force: bool = False) -> None:
        """With ``force``: wake the writer and wait until it has made every queued call or
        failed again (without: the writer keeps its own pace)."""
        if force:
            self._wait_writer(None, until_failure=True)

    def settled(self, timeout: float) -> bool:
        """Whether every call submitted so far has been made (or dropped), after waiting up to
        ``timeout`` seconds for the writer (less if the store fails again)."""
        return self._wait_writer(timeout, until_failure=True)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`CallBacklog.flush`: wait for the writer to make every queued call."""
        timeout = self.flush_timeout if timeout is None else timeout
        with self._cond:
            if self._queue and self._outage:
                self._warn_waiting(timeout)
        if self._wait_writer(timeout, until_failure=False):
            with self._cond:
                if self._done_since_rewrite:
                    self._rewrite_journal()  # nothing pending: the journal goes
            return True
        with self._cond:
            if not self._queue:
                return True
            self._give_up(timeout)
            self._cond.notify_all()
        return False

    def _wait_writer(self, timeout: float | None, *, until_failure: bool) -> bool:
        """Wake the writer and wait until the queue is empty (True), or ``timeout`` seconds
        pass, or (``until_failure``) an attempt made after this call fails (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._queue:
                return True
            attempts = self.attempts
            self._start_writer()
            self._retry_now = True
            self._cond.notify_all()
            while self._queue:
                if until_failure and self._failing and self.attempts > attempts:
                    return False
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _start_writer(self) -> None:
        """Start the writer thread unless it runs (called under the lock)."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write, name="ipt-ray-mlflow-writer", daemon=True
            )
            self._writer.start()

    def _write(self) -> None:
        """The writer thread: make the queued calls in order, retrying the first one every
        ``retry_interval`` while the store is away; end after ``WRITER_IDLE_S`` idle."""
        while True:
            with self._cond:
                idle_until = time.monotonic() + WRITER_IDLE_S
                while not self._queue:
                    remaining = idle_until - time.monotonic()
                    if remaining <= 0:
                        self._writer = None
                        return
                    self._cond.wait(remaining)
                call = self._queue[0]
            done = self._attempt(call)  # not under the lock: the caller goes on queueing
            with self._cond:
                self._failing = not done
                if done:
                    if self._queue and self._queue[0] is call:  # (not given up meanwhile)
                        self._dequeue()
                    self._after_made()
                    self._cond.notify_all()
                    continue
                if not self._outage:
                    self._outage, self._since_outage = True, 0
                    self._warn_unreachable(call)
                self._cond.notify_all()
                retry_at = time.monotonic() + self.retry_interval
                self._retry_now = False
                while self._queue and not self._retry_now:
                    remaining = retry_at - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)

    def _after_made(self) -> None:
        """The writer made a call (under the lock): say when the store is back, and compact
        the journal when nothing is pending."""
        if self._outage:
            self._since_outage += 1
        if self._queue:
            return
        if self._outage:
            self._outage = False
            logger.warning("MLflow answers again: %d buffered call(s) replayed", self._since_outage)
            self._rewrite_journal()
        elif self._done_since_rewrite >= COMPACT_AFTER:
            self._rewrite_journal()


__all__ = ["WRITER_IDLE_S", "BackgroundBacklog"]
