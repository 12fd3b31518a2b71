"""The ``packed`` runner: the trials on a node (on a GPU) train in one process, as one pack.

Each trial is still an ordinary Tune trial, a *relay* (:func:`train_in_pack`) that holds
its share of the resources (``cpus_per_worker / pack_size`` CPUs, ``gpus_per_worker /
pack_size`` GPUs), so Ray places trials where their share fits and Tune, the searcher, ASHA
and the MLflow callback see nothing new. The relay trains nothing itself: it hands its
config to its node's :class:`PackServer` and turns each epoch the server reports into
``ray.tune.report``, checkpoint included.

A :class:`PackServer` is a Ray actor, one per node and GPU of a search, named after both
(:func:`pack_name`), created by the first relay that needs it (detached, so it does not die
with that relay's process) and holding no resources of its own (its members' relays hold
them). It runs a :class:`~ipt_ray.training.pack.Pack` over the node's one copy of the frozen
backbone; each member trains exactly as the ``actor`` runner trains a trial
(:func:`ipt_ray.tuning.worker._train`: same reports, checkpoints and resume), and its
passes are fused with the other members'.

What a user of Tune expects holds member by member:

- a member's next epoch starts only when its relay has reported the last one (Tune's own
  function trainables wait the same way), so an ASHA stop wastes no epoch; the stopped
  relay's ``finally`` tells the server to drop the member (:meth:`PackServer.drop`);
- a member that fails (a diverged loss) fails its trial alone, with its own error;
- a killed server fails all its members' trials, which Tune restarts from their
  checkpoints (``max_failures``) in a new server;
- the server ends itself after :data:`IDLE_EXIT_S` without members, and the search kills
  what is left when it ends (:func:`stop_packs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
import ray.tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ipt_ray.tuning.worker import node_name, report_to_tune, scratch_dir

if TYPE_CHECKING:
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.training.pack import Pack, PackMember
    from ipt_ray.tuning.shared_backbone import SharedBackbone

#: The Ray namespace of every pack server (so a search finds and stops its own).
NAMESPACE = "ipt-ray-packs"
#: A server with no members for this long ends itself (a driver killed before it could
#: stop them leaves none behind for long).
IDLE_EXIT_S = 120.0
#: How long one :meth:`PackServer.next` call waits before the relay asks again.
POLL_S = 5.0


def pack_prefix(storage_path: str) -> str:
    """The name prefix of a search's pack servers (its trials' storage path, hashed)."""
    return "pack-" + hashlib.sha256(storage_path.encode()).hexdigest()[:12]


def pack_name(prefix: str, node_id: str, gpu: str | None) -> str:
    """The server of a node (and GPU) in a search."""
    return f"{prefix}-{node_id[:16]}-{'cpu' if gpu is None else 'gpu' + gpu}"


@dataclass
class _Slot:
    """One member as the server sees it: what it reported, and whether its relay took it."""

    events: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    taken: threading.Event = field(default_factory=threading.Event)
    cpus: float = 0.0
    member: PackMember | None = None


class PackServer:
    """A node's (a GPU's) pack of trials; see the module docstring. Methods run on Ray's
    actor threads (``max_concurrency``), members on the pack's own threads."""

    def __init__(self, device: str | None) -> None:
        from ipt_ray.training.pack import Pack

        self.pack: Pack = Pack()
        self.device = device
        self.slots: dict[str, _Slot] = {}
        self.lock = threading.Lock()
        self.idle_since: float | None = time.monotonic()
        threading.Thread(target=self._exit_when_idle, daemon=True).start()

    # -- what a relay calls ---------------------------------------------------------------
    def start(
        self,
        trial_id: str,
        config: dict[str, Any],
        *,
        run_name: str,
        resume_dir: str | None,
        shared: SharedBackbone | None,
        cpus: float,
    ) -> None:
        """Add a trial: train ``config`` (``TrainConfig.to_dict()``), resuming from
        ``resume_dir`` (a local folder the server removes once loaded) if given."""
        from ipt_ray.core.config import TrainConfig

        slot = _Slot(cpus=cpus)
        with self.lock:
            old = self.slots.get(trial_id)
            if old is not None:  # the trial restarted while its old member was still around
                self.pack.stop(trial_id)
                old.taken.set()
            self.slots[trial_id] = slot
            self.idle_since = None
        train_config = TrainConfig.from_dict(config)
        if old is not None and old.member is not None and old.member.thread is not None:
            old.member.thread.join(timeout=60)
        slot.member = self.pack.start(
            trial_id,
            lambda member: self._train(member, slot, train_config, run_name, resume_dir, shared),
        )
        self._set_threads()

    def next(self, trial_id: str, timeout: float = POLL_S) -> tuple[Any, ...] | None:
        """The member's next event, after marking its last one taken: ``("report",
        metrics, checkpoint folder or None, epoch)``, ``("done",)``, ``("failed",
        exception)``; None if nothing came within ``timeout`` seconds."""
        slot = self.slots.get(trial_id)
        if slot is None:
            return ("failed", RuntimeError(f"trial {trial_id} is not in this pack"))
        slot.taken.set()
        try:
            return slot.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def drop(self, trial_id: str) -> None:
        """Stop a member (its trial was stopped or ended); unknown ids are ignored."""
        with self.lock:
            slot = self.slots.get(trial_id)
        if slot is not None:
            self.pack.stop(trial_id)
            slot.taken.set()

    def info(self) -> dict[str, Any]:
        """Members running, the fused passes' counters, the process id."""
        stats = self.pack.stats
        return {
            "running": self.pack.running,
            "forward_passes": stats.forward_passes,
            "forward_calls": stats.forward_calls,
            "max_rows": stats.max_rows,
            "pid": os.getpid(),
        }

    # -- inside the server ----------------------------------------------------------------
    def _train(
        self,
        member: PackMember,
        slot: _Slot,
        config: TrainConfig,
        run_name: str,
        resume_dir: str | None,
        shared: SharedBackbone | None,
    ) -> None:
        from ipt_ray.training.pack import MemberStopped
        from ipt_ray.tuning.worker import _train

        def report(metrics: dict[str, Any], directory: str | None, epoch: int) -> None:
            slot.taken.clear()
            slot.events.put(("report", metrics, directory, epoch))
            with member.outside():  # the other members train while the relay reports
                slot.taken.wait()

        try:
            checkpoint = None if resume_dir is None else ray.tune.Checkpoint(resume_dir)
            _train(
                config,
                rank=0,
                world_size=1,
                node=node_name(),
                scratch=scratch_dir(run_name, 0),
                report=report,
                checkpoint=checkpoint,
                device=self.device,
                shared=shared,
                on_built=member.attach,
            )
        except MemberStopped:
            raise
        except BaseException as exc:
            slot.events.put(("failed", _picklable(exc)))
            raise
        else:
            slot.events.put(("done",))
        finally:
            if resume_dir is not None:
                shutil.rmtree(resume_dir, ignore_errors=True)
            with self.lock:
                if not [n for n in self.pack.running if n != member.name]:
                    self.idle_since = time.monotonic()
            self._set_threads(leaving=member.name)

    def _set_threads(self, leaving: str | None = None) -> None:
        """Torch threads: the CPUs its running members' relays hold (at least 1)."""
        import torch

        with self.lock:
            running = set(self.pack.running) - {leaving}
            cpus = sum(s.cpus for n, s in self.slots.items() if n in running)
        limit = os.cpu_count() or 1
        torch.set_num_threads(max(1, min(limit, int(cpus + 1e-9))))

    def _exit_when_idle(self) -> None:
        while True:
            time.sleep(min(IDLE_EXIT_S / 4, 10.0))
            with self.lock:
                idle = self.idle_since is not None and not self.pack.running
                if idle and time.monotonic() - self.idle_since > IDLE_EXIT_S:  # type: ignore[operator]
                    break
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if Ray can send it back to the relay, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _server(prefix: str, device: str | None, gpu: str | None) -> Any:
    """This node's (this GPU's) pack server of the search, created if there is none."""
    node_id = ray.get_runtime_context().get_node_id()
    actor: Any = ray.remote(num_cpus=0, max_concurrency=1000)(PackServer)  # type: ignore[call-overload]
    return actor.options(
        name=pack_name(prefix, node_id, gpu),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(device)


def _device(train_config: TrainConfig, gpu: str | None) -> str | None:
    """The server's device: the relay's GPU (by its index among the visible ones)."""
    if gpu is None or train_config.device == "cpu":
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",")]
        return f"cuda:{ids.index(gpu)}" if gpu in ids else "cuda:0"
    return f"cuda:{gpu}"


def train_in_pack(
    train_config: TrainConfig,
    *,
    trial_id: str,
    run_name: str,
    prefix: str,
    shared: SharedBackbone | None = None,
) -> None:
    """Train one trial in its node's pack and report every epoch to Tune (the relay).

    Raises:
        Exception: what the member's training raised (a UserError, TrainingDiverged...),
            or RayActorError when the server died.
    """
    context = ray.get_runtime_context()
    gpus = [str(g) for g in ray.get_gpu_ids()]
    gpu = gpus[0] if gpus else None
    cpus = float(context.get_assigned_resources().get("CPU", 0.0))
    resume_dir = None
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:  # a copy the server reads and removes (storage may be remote)
        resume = scratch_dir(run_name, 0).with_name(scratch_dir(run_name, 0).name + "-resume")
        shutil.rmtree(resume, ignore_errors=True)
        resume_dir = checkpoint.to_directory(str(resume))
    server = None
    for attempt in range(3):  # a server that ended itself as it was found: a new one
        server = _server(prefix, _device(train_config, gpu), gpu)
        try:
            ray.get(
                server.start.remote(
                    trial_id,
                    train_config.to_dict(),
                    run_name=run_name,
                    resume_dir=resume_dir,
                    shared=shared,
                    cpus=cpus,
                )
            )
            break
        except ray.exceptions.RayActorError:
            if attempt == 2:
                raise
    try:
        while True:
            event = ray.get(server.next.remote(trial_id))  # type: ignore[union-attr]
            if event is None:
                continue
            if event[0] == "report":
                _, metrics, directory, _epoch = event
                report_to_tune(metrics, directory, _epoch)
            elif event[0] == "done":
                return
            else:
                raise event[1]
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
    "IDLE_EXIT_S",
    "NAMESPACE",
    "PackServer",
    "pack_name",
    "pack_prefix",
    "stop_packs",
    "train_in_pack",
]
