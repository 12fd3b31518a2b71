"""MLflow for tests: a finished search's runs, a metric's logged steps, a client that can be
switched off (an outage), and a real ``mlflow server`` on localhost."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def search_runs(tracking_uri: str, summary: Any) -> tuple[Any, list[Any]]:
    """(parent run, child runs) in MLflow of a finished search's :class:`SearchSummary`."""
    from mlflow import MlflowClient

    from ipt_ray import constants as C

    runs = list(MlflowClient(tracking_uri=tracking_uri).search_runs([summary.experiment_id]))
    parent = [r for r in runs if r.info.run_id == summary.parent_run_id]
    children = [r for r in runs if r.data.tags.get(C.TAG_PARENT_RUN) == summary.parent_run_id]
    if len(parent) != 1:
        raise AssertionError(f"{len(parent)} parent runs {summary.parent_run_id} in MLflow")
    return parent[0], children


def metric_steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    """The steps (epochs) at which ``key`` was logged to the run, in logging order."""
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)
    return [m.step for m in history]


class FlakyMlflowClient:
    """An MlflowClient (or anything with its methods) that can be switched off: while
    ``error`` is set every call raises it before reaching the store, and methods named in
    ``failing`` raise a dropped connection; ``calls`` lists, in order, the calls that got
    through. Tests of the tracker's outage handling use it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.error: BaseException | None = None
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.error is not None:
                raise self.error
            if name in self.failing:
                raise ConnectionError("Connection reset by peer")
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with its store and artifacts under ``root``.

    :meth:`start` and :meth:`stop` may be called again (the same port and store: a restart,
    as in an outage). Job execution is off (it would start extra processes).
    """

    def __init__(self, root: str | Path, *, port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> str:
        """Start the server and wait until ``/health`` answers; returns its URL.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        import os
        import sys
        import time
        import urllib.request

        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        mlflow = Path(sys.executable).with_name("mlflow")
        with self.log_path.open("a") as log:
            self._process = subprocess.Popen(
                [
                    str(mlflow),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'server.db'}",
                    "--artifacts-destination",
                    str(self.root / "server-artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self.url
            except OSError:
                pass
            if self._process is None or self._process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(
                    "mlflow server did not start: " + self.log_path.read_text()[-2000:]
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server (its whole process group), killing it if it does not stop."""
        import os
        import signal

        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def mlflow_server(root: str | Path, *, timeout: float = 120.0) -> Iterator[str]:
    """A started :class:`MlflowServer` for the block; yields its URL. It is stopped when the
    block ends, also on failure."""
    server = MlflowServer(root)
    try:
        yield server.start(timeout)
    finally:
        server.stop()
