"""The ``packed`` runner's trials: relays that train nothing themselves.

A relay is an ordinary Tune trial (a function trainable) that holds its share of a pack's
resources, so Ray places it where that share fits and Tune, the searcher, ASHA and the MLflow
callback see nothing new. It hands its trial config to its node's (its GPU's)
:class:`~ipt_ray.tuning.pack_server.PackServer`, created by the first relay that needs it,
and turns each epoch the server reports into ``ray.tune.report``, checkpoint included:

- the server trains the member's next epoch only after the relay has reported the last one
  (Tune's own function trainables wait the same way), so an ASHA stop wastes no epoch; the
  stopped relay's ``finally`` drops the member from the pack;
- a member's failure fails its trial with the member's own one-line error;
- a dead server fails its members' trials, which Tune restarts from their checkpoints
  (``max_failures``) in a new server.

The relay imports Ray and Tune, not torch: the search space and the shared backbone travel
to the server as an object reference the relay never opens, so one more trial costs one
light process beside the member's state in the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from typing import Any

import ray
import ray.tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ipt_ray import constants as C
from ipt_ray.tuning.trial_io import report_to_tune, run_name, scratch_dir

#: The Ray namespace of every pack server (so a search finds and stops its own).
NAMESPACE = "ipt-ray-packs"
#: Seconds one :meth:`PackServer.next` call waits before the relay asks again.
POLL_S = 5.0


class PackedTrialFailed(RuntimeError):
    """A member of a pack failed; the message is its one line (``ErrorType: message``)."""

    @property
    def short_message(self) -> str:
        """The one-line message (what the MLflow ``error`` tag shows)."""
        return str(self)


def pack_prefix(storage_path: str) -> str:
    """The name prefix of a search's pack servers (its trials' storage path, hashed)."""
    return "pack-" + hashlib.sha256(storage_path.encode()).hexdigest()[:12]


def pack_name(prefix: str, node_id: str, gpu: str | None) -> str:
    """The server of a node (and GPU) in a search."""
    return f"{prefix}-{node_id[:16]}-{'cpu' if gpu is None else 'gpu' + gpu}"


def relay_trainable(storage_path: str, space: Any, backbone: Any, recompute: bool) -> Any:
    """The Tune function of a packed search's trials (resources are added by the caller).

    ``space`` (converts a flat trial config) and ``backbone`` (the search's shared backbone
    or None) are put in the object store once, behind a reference the relays pass on unread.
    """
    payload = [ray.put((space, backbone))]  # in a list: Tune resolves only the outer object
    return ray.tune.with_parameters(
        relay_fn, prefix=pack_prefix(storage_path), payload=payload, recompute=recompute
    )


def _server(prefix: str, gpu: str | None, recompute: bool) -> Any:
    """This node's (this GPU's) pack server of the search, created if there is none."""
    from ipt_ray.tuning.pack_server import PackServer

    node_id = ray.get_runtime_context().get_node_id()
    actor: Any = ray.remote(num_cpus=0, max_concurrency=1000)(PackServer)  # type: ignore[call-overload]
    return actor.options(
        name=pack_name(prefix, node_id, gpu),
        namespace=NAMESPACE,
        lifetime="detached",  # not owned by the relay that happens to create it
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        runtime_env={"env_vars": C.PACK_PROCESS_ENV},
    ).remote(gpu, recompute)


def relay_fn(config: dict[str, Any], *, prefix: str, payload: list[Any], recompute: bool) -> None:
    """Train one trial in its node's pack and report every epoch to Tune.

    Raises:
        PackedTrialFailed: the member failed (its one-line error).
        RayActorError: the server died.
    """
    trial_id = ray.tune.get_context().get_trial_id()
    name = run_name(trial_id)
    gpus = [str(g) for g in ray.get_gpu_ids()]
    gpu = gpus[0] if gpus else None
    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    resume_dir = None
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:  # a copy the server reads and removes (storage may be remote)
        resume = scratch_dir(name, 0).with_name(scratch_dir(name, 0).name + "-resume")
        shutil.rmtree(resume, ignore_errors=True)
        resume_dir = checkpoint.to_directory(str(resume))
    server = None
    for attempt in range(3):  # a server that ended itself just as it was found: a new one
        server = _server(prefix, gpu, recompute)
        try:
            ray.get(
                server.start.remote(
                    trial_id, config, payload[0], run_name=name, resume_dir=resume_dir, cpus=cpus
                )
            )
            break
        except ray.exceptions.RayActorError:
            if attempt == 2:
                raise
    handled = 0
    try:
        while True:
            event = ray.get(server.next.remote(trial_id, handled, POLL_S))  # type: ignore[union-attr]
            if event is None:
                continue
            if event[0] == "report":
                _, metrics, directory, epoch = event
                report_to_tune(metrics, directory, epoch)
                handled += 1
            elif event[0] == "done":
                return
            else:
                raise PackedTrialFailed(event[1])
    finally:
        with contextlib.suppress(Exception):  # a server that is gone has nothing to drop
            server.drop.remote(trial_id)  # type: ignore[union-attr]


def stop_packs(prefix: str) -> int:
    """Kill the search's pack servers that are still alive; returns how many."""
    killed = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == NAMESPACE and str(entry.get("name", "")).startswith(prefix):
            try:
                ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE), no_restart=True)
                killed += 1
            except ValueError:  # ended meanwhile
                pass
    return killed


__all__ = [
    "NAMESPACE",
    "PackedTrialFailed",
    "pack_name",
    "pack_prefix",
    "relay_fn",
    "relay_trainable",
    "stop_packs",
]
