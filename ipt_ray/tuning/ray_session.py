"""The Ray a search runs on (this process's, a cluster's or a private local one) and quiet
Tune and Optuna output while it runs."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from ipt_ray.errors import UserError


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def ray_session(address: str | None, init_kwargs: Mapping[str, Any]) -> Iterator[str]:
    """Use the Ray of this process, connect to ``address``, or start a local Ray (stopped at
    the end). Yields a description of the cluster."""
    import ray

    if ray.is_initialized():
        yield "the Ray session of this process"
        return
    temp_dir: str | None = None
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
        where = f"Ray cluster at {address}"
    else:
        # A private temp dir isolates this Ray from other Ray instances on the machine.
        # The dashboard stays on: without it (and ray[default]) ASHA-stopped trials leak
        # their workers' resources in Ray 2.60.
        temp_dir = tempfile.mkdtemp(prefix="ipt-ray-")
        # address="local": start a new Ray even when RAY_ADDRESS is exported (e.g. after
        # `ipt-ray cluster up`); connecting is what --address is for.
        kwargs.update(
            address="local", num_cpus=_local_cpus(), _temp_dir=temp_dir, include_dashboard=True
        )
        where = f"local Ray ({kwargs['num_cpus']} CPUs)"
    kwargs.update(init_kwargs)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    try:
        yield where
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def quiet_tune() -> Iterator[None]:
    """Silence Tune's own console output (its experiment banner and tables) and Optuna's
    info logs while the search runs; progress goes through :class:`ProgressEvent`."""
    import optuna

    overrides = {
        # The new output engine prints its banner even at verbose=0; the old one does not.
        "RAY_AIR_NEW_OUTPUT": "0",
    }
    old_env = {key: os.environ.get(key) for key in overrides}
    old_level = optuna.logging.get_verbosity()
    os.environ.update(overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old_level)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
