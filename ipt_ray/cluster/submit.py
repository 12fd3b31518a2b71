"""Submit a search to a running Ray cluster as a Ray Job, follow it, and manage jobs.

``ipt-ray search SPACE --address http://HEAD:8265`` lands here. The job's entrypoint is the
same command with ``--address auto`` (the driver then runs on the cluster, next to its
trials). What reaches the cluster through the job's runtime environment:

- the space file, in the job's ``working_dir`` (nothing else of the submitter's folder);
- ipt-ray's own code as a ``py_modules`` entry (``--code ship``, the default), so that the
  cluster runs the submitter's version; with ``--code installed`` the nodes' preinstalled
  ipt-ray is used (the KubeRay image in ``cluster/``). Either way the nodes need ipt-ray's
  dependencies (torch, transformers, ray, mlflow, ...) installed.

A submitted search cannot use the submitter's local MLflow store or results folder: it needs
``--tracking-uri`` (an MLflow server the cluster reaches, or a sqlite path on a shared file
system) and, with a server, ``--storage`` (shared by all nodes, or an object-store URI). A
sqlite store on a shared file system keeps the Ray results beside it (``DIR/ray``, the rule of
:func:`ipt_ray.tracking.store.runs_dir`) unless ``--storage`` says otherwise.

Token authentication (on by default in Ray 2.60) is read by Ray's client from the
environment: ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` (or ``RAY_AUTH_TOKEN``).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.errors import SettingError, UserError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from ipt_ray.tuning.options import SearchOptions
    from ipt_ray.tuning.space import SearchSpace

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


def default_address() -> str:
    """``$RAY_API_SERVER_ADDRESS``, an http ``$RAY_ADDRESS``, else the local dashboard."""
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(name, "")
        if value.startswith(("http://", "https://")):
            return value
    return DEFAULT_DASHBOARD


def job_client(address: str) -> JobSubmissionClient:
    """A job client for the dashboard at ``address``.

    Raises:
        UserError: unreachable, not a Ray dashboard, or the token is missing or wrong.
    """
    from ray.job_submission import JobSubmissionClient

    # Ray's job SDK lets $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS override the address it is
    # given; an address named on the command line must win (both are exported after
    # `ipt-ray cluster up`, possibly for another cluster).
    saved = {
        k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ
    }
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # Ray raises ConnectionError/RuntimeError with long texts
        raise UserError(explain_job_error(address, exc)) from None
    finally:
        os.environ.update(saved)


def explain_job_error(address: str, exc: BaseException) -> str:
    """One line for a failed call to the job API at ``address``."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "401" in text or "authentication required" in lowered or "no token" in lowered:
        return (
            f"the Ray dashboard at {address} requires a token: set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN); `ipt-ray cluster up` prints them"
        )
    if "403" in text or ("invalid" in lowered and "token" in lowered):
        return (
            f"the Ray dashboard at {address} refused the token: check RAY_AUTH_TOKEN_PATH "
            "/ RAY_AUTH_TOKEN against the cluster's token"
        )
    if (
        "refused" in lowered
        or "failed to connect" in lowered
        or "max retries" in lowered
        or "name or service" in lowered
        or "timed out" in lowered
    ):
        return f"cannot reach a Ray dashboard at {address} (connection failed)"
    if "404" in text or "version" in lowered or "json" in lowered:
        return (
            f"{address} does not look like a Ray dashboard (the job API did not answer); "
            "give the head node's dashboard address, e.g. http://HEAD:8265"
        )
    return f"Ray job API at {address}: {text[:300]}"


def job_command(space_file: str, options: SearchOptions, *, as_json: bool = False) -> list[str]:
    """The command a submitted search runs on the cluster: ``ipt-ray search`` of the space
    file (copied into the job's folder) with every option of ``options``
    (:meth:`SearchOptions.command_line`), the driver on the cluster (``--address auto``)."""
    args = replace(options, address="auto").command_line()
    return ["python", "-m", "ipt_ray.cli", "search", space_file, *args] + (
        ["--json"] if as_json else []
    )


def submit_search(
    space: str | Path | SearchSpace,
    options: SearchOptions,
    *,
    as_json: bool = False,
    code: str = "ship",
    wait: bool = True,
) -> int:
    """Submit ``ipt-ray search`` as a Ray Job to the dashboard ``options.address``; follow its
    logs; return the exit status.

    What only a submission needs is checked first, then the space and options
    (:func:`ipt_ray.tuning.api.prepare_search`).
    A relative sqlite ``tracking_uri`` is made absolute (the job runs in a folder of its
    own). Without ``storage`` the job keeps its Ray results beside a sqlite store
    (:func:`ipt_ray.tracking.store.store_dir`), which is then on a shared file system; the job
    itself checks that every node sees that folder. Returns 0 when the job succeeded (or was
    submitted, with ``wait=False``), 1 otherwise.

    Raises:
        SettingError: bad options (see :meth:`SearchOptions.check`), no ``tracking_uri``,
            no ``storage`` with a store that has no folder (a tracking server), a bad
            ``code`` mode.
        UserError: a bad space, a dashboard that cannot be reached or refuses the token.
    """
    from ipt_ray.tracking.store import absolute_tracking_uri, store_dir
    from ipt_ray.tuning.api import prepare_search

    address = str(options.address)
    if options.tracking_uri is None:
        raise SettingError(
            "a search submitted to a cluster needs {tracking_uri}: an MLflow server "
            "the cluster reaches (http://HOST:5000) or sqlite:///SHARED/PATH"
        )
    # The job runs in a folder of its own on the cluster: a relative sqlite path would name
    # another store there (and put the Ray results beside that one).
    options = replace(options, tracking_uri=absolute_tracking_uri(options.tracking_uri))
    if options.storage is None and store_dir(str(options.tracking_uri)) is None:
        raise SettingError(
            f"a search submitted to a cluster with the store {options.tracking_uri} needs "
            "{storage}: a folder every node shares, or an s3:// / gs:// URI"
        )
    if code not in ("ship", "installed"):
        raise SettingError(f"{{code}} must be ship or installed, got {code!r}")
    loaded = prepare_search(space, options)
    if loaded.path is None:
        raise UserError("a submitted search needs its space as a file")
    space_file = loaded.path
    client = job_client(address)
    staging = Path(tempfile.mkdtemp(prefix="ipt-ray-job-"))
    try:
        shutil.copy(space_file, staging / space_file.name)
        runtime_env: dict[str, Any] = {"working_dir": str(staging)}
        if code == "ship":
            import ipt_ray

            runtime_env["py_modules"] = [str(Path(ipt_ray.__file__).parent)]
        passthrough = {
            k: v
            for k, v in os.environ.items()
            if k in ("HF_HUB_OFFLINE", "HF_TOKEN", "IPT_RAY_CACHE")
            or k.startswith("MLFLOW_TRACKING_")
        }
        if passthrough:
            runtime_env["env_vars"] = passthrough
        entrypoint = shlex.join(job_command(space_file.name, options, as_json=as_json))
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                metadata={"ipt_ray": "search", "space": space_file.name},
            )
        except Exception as exc:
            raise UserError(explain_job_error(address, exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log = sys.stderr if as_json else sys.stdout
    print(f"submitted Ray job {job_id} to {address}", file=sys.stderr, flush=True)
    print(f"follow: ipt-ray jobs logs {job_id} --follow --address {address}", file=sys.stderr)
    if not wait:
        if as_json:
            print(f'{{"job_id": "{job_id}"}}')
        return 0
    follow_logs(client, job_id, stream=log if not as_json else sys.stdout)
    status = str(client.get_job_status(job_id))
    print(f"Ray job {job_id}: {status.rsplit('.', 1)[-1]}", file=sys.stderr)
    return 0 if status.endswith("SUCCEEDED") else 1


def follow_logs(client: JobSubmissionClient, job_id: str, *, stream: Any = None) -> None:
    """Print a job's logs as they arrive until it ends (Ctrl-C stops following only)."""
    out = stream or sys.stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the job goes on (ipt-ray jobs stop {job_id} ends it)",
            file=sys.stderr,
        )
