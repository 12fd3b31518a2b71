"""The ``ipt-ray`` command as a user runs it: a new process, and what its one-line errors look
like."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any


def cli_command(*args: str | Path) -> list[str]:
    """The argv of ``ipt-ray ARGS`` run by this interpreter (the checkout under test)."""
    return [sys.executable, "-m", "ipt_ray.cli", *map(str, args)]


def _cli_env(env: Mapping[str, str] | None, inherit: bool) -> dict[str, str]:
    return {**(os.environ if inherit else {}), "HF_HUB_OFFLINE": "1", **(env or {})}


def run_cli(
    *args: str | Path,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    inherit: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``ipt-ray ARGS`` as a user runs it: a new process (in ``cwd``), offline
    (``HF_HUB_OFFLINE=1``), with ``env`` added to this process's environment (or, with
    ``inherit=False``, as the whole environment: a cluster's client environment with some keys
    removed, say); text output captured.

    Raises:
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
    """
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=_cli_env(env, inherit),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    *args: str | Path,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    inherit: bool = True,
    stdout: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``ipt-ray ARGS`` started in the background, as :func:`run_cli` runs it, with stderr
    joined to ``stdout`` (a pipe unless given: a file, say), text mode. It gets a session of its
    own, so that killing its process group stops what it started too."""
    return subprocess.Popen(
        cli_command(*args),
        cwd=cwd,
        env=_cli_env(env, inherit),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def assert_one_line_error(
    proc: subprocess.CompletedProcess[str] | Any, *fragments: str, prefix: str = ""
) -> str:
    """Assert a refused command: exit status 2, no traceback, and exactly one non-blank line on
    stderr that starts ``ipt-ray: error: `` + ``prefix`` and holds every fragment; returns it.

    ``proc`` is what :func:`run_cli` returns (anything with ``returncode`` and ``stderr``).
    """
    stderr = str(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, getattr(proc, "stdout", ""), stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("ipt-ray: error: " + prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]
