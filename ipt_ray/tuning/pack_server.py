"""A node's (a GPU's) pack of trials: the Ray actor behind the ``packed`` runner's relays.

One :class:`PackServer` per node and GPU of a search, named after both
(:func:`ipt_ray.tuning.relay.pack_name`), created by the first relay that needs it (detached,
so it does not die with that relay's process) and holding no resources of its own: its
members' relays hold them (:mod:`ipt_ray.tuning.relay`). It runs a
:class:`~ipt_ray.training.pack.Pack` over the process's one copy of the frozen backbone (the
node's shared copy when the search published one). Each member trains exactly as the
``actor`` runner trains a trial (:func:`ipt_ray.tuning.worker._train`: the same reports,
checkpoints and resume), its backbone passes fused with the other members'.

Its torch threads follow the CPUs its members' relays hold. It ends itself after
:data:`IDLE_EXIT_S` without members (a driver killed before it could stop it leaves nothing
behind for long), and a search stops its servers when it ends
(:func:`ipt_ray.tuning.relay.stop_packs`). Importing this module loads neither torch nor the
training code: a relay imports it to create the actor.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    from ipt_ray.training.pack import Pack, PackMember
    from ipt_ray.tuning.trial import TrialConfigConverter

#: A server with no members for this long ends itself.
IDLE_EXIT_S = 120.0


@dataclass
class _Slot:
    """One member as the server sees it: its events, and how many its relay has handled.

    A report waits until its relay says it has handled it (passed it to Tune, whose copy of
    the checkpoint is then made): acknowledged by count, so a relay asking again after a
    timeout never releases a report it has not received.
    """

    events: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    cpus: float = 0.0
    member: PackMember | None = None
    sent: int = 0  # reports put in ``events``
    handled: int = 0  # reports the relay has handled (math.inf once dropped)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def acknowledge(self, handled: float) -> None:
        with self.changed:
            self.handled = max(self.handled, handled)  # type: ignore[assignment]
            self.changed.notify_all()


def device_for(gpu: str | None) -> str | None:
    """The device of a relay's GPU (its id as Ray gives it) in this process: its index among
    the visible devices; None without a GPU, or when this torch has no CUDA (a Ray told of a
    GPU the process cannot use), as the actor runner's workers decide: the trial config's
    own device then."""
    import torch  # here, not at the top: a relay imports this module and must stay torch-free

    if gpu is None or not torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",")]
        return f"cuda:{ids.index(gpu)}" if gpu in ids else "cuda:0"
    return f"cuda:{gpu}"


class PackServer:
    """See the module docstring. Methods run on Ray's actor threads (``max_concurrency``),
    members on the pack's own threads.

    Args:
        gpu: the GPU id (as Ray gives it to the relays) the members train on, or None.
        recompute: the pack recomputes layer activations in the backward pass
            (:class:`~ipt_ray.training.pack.Pack`).
        idle_exit_s: end the actor after this many seconds without members (None: never).
    """

    def __init__(
        self, gpu: str | None, recompute: bool, idle_exit_s: float | None = IDLE_EXIT_S
    ) -> None:
        from ipt_ray.training.pack import Pack

        self.pack: Pack = Pack(recompute=recompute)
        self.device = device_for(gpu)
        self.slots: dict[str, _Slot] = {}
        self.lock = threading.Lock()
        self.idle_since: float | None = time.monotonic()
        if idle_exit_s is not None:
            threading.Thread(target=self._exit_when_idle, args=(idle_exit_s,), daemon=True).start()

    # -- what a relay calls ---------------------------------------------------------------
    def start(
        self,
        trial_id: str,
        config: dict[str, Any],
        payload: tuple[TrialConfigConverter, Any],
        *,
        run_name: str,
        resume_dir: str | None,
        cpus: float,
    ) -> None:
        """Add a trial: train the flat trial ``config`` (converted by ``payload``'s space,
        over its shared backbone), resuming from ``resume_dir`` (a local folder the server
        removes once loaded) if given. A trial already in the pack (restarted by Tune) is
        stopped first."""
        slot = _Slot(cpus=cpus)
        with self.lock:
            old = self.slots.get(trial_id)
            self.slots[trial_id] = slot
            self.idle_since = None
        if old is not None:
            self.pack.stop(trial_id)
            old.acknowledge(math.inf)
            if old.member is not None and old.member.thread is not None:
                old.member.thread.join(timeout=60)
        space, shared = payload
        slot.member = self.pack.start(
            trial_id,
            lambda member: self._train(member, slot, space, config, run_name, resume_dir, shared),
        )
        self._set_threads()

    def next(self, trial_id: str, handled: int, timeout: float) -> tuple[Any, ...] | None:
        """The member's next event, once the relay says it has handled ``handled`` reports:
        ``("report", metrics, checkpoint folder or None, epoch)``, ``("done",)`` or
        ``("failed", one-line error)``; None if nothing came within ``timeout`` seconds."""
        slot = self.slots.get(trial_id)
        if slot is None:
            return ("failed", f"PackMemberLost: trial {trial_id} is not in this pack")
        slot.acknowledge(handled)
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
            slot.acknowledge(math.inf)

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
        space: TrialConfigConverter,
        config: dict[str, Any],
        run_name: str,
        resume_dir: str | None,
        shared: Any,
    ) -> None:
        from ipt_ray.training.pack import MemberStopped
        from ipt_ray.tuning.trial import short_error
        from ipt_ray.tuning.trial_io import node_name, scratch_dir
        from ipt_ray.tuning.worker import _train

        def report(metrics: dict[str, Any], directory: str | None, epoch: int) -> None:
            slot.sent += 1
            slot.events.put(("report", metrics, directory, epoch))
            with member.outside(), slot.changed:  # the others train while the relay reports
                slot.changed.wait_for(lambda: slot.handled >= slot.sent)

        try:
            train_config = space.to_train_config(config)
            _train(
                train_config,
                rank=0,
                world_size=1,
                node=node_name(),
                scratch=scratch_dir(run_name, 0),
                report=report,
                checkpoint=None if resume_dir is None else ray.tune.Checkpoint(resume_dir),
                # A trial set to the CPU stays there, as with the actor runner.
                device=None if train_config.device == "cpu" else self.device,
                shared=shared,
                on_built=member.attach,
            )
        except MemberStopped:
            raise
        except BaseException as exc:
            slot.events.put(("failed", short_error(exc)))
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
            from ipt_ray.training import warm

            warm.release_memory()  # what the member's run freed goes back, as after a trial

    def _set_threads(self, leaving: str | None = None) -> None:
        """Torch threads: the CPUs its running members' relays hold (at least 1)."""
        with self.lock:
            running = set(self.pack.running) - {leaving}
            cpus = sum(s.cpus for n, s in self.slots.items() if n in running)
        limit = os.cpu_count() or 1
        self.pack.threads = max(1, min(limit, int(cpus + 1e-9)))

    def _exit_when_idle(self, after: float) -> None:
        while True:
            time.sleep(min(after / 4, 10.0))
            with self.lock:
                since = self.idle_since
                idle = since is not None and not self.pack.running
                if idle and time.monotonic() - since > after:  # type: ignore[operator]
                    break
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


__all__ = ["IDLE_EXIT_S", "PackServer", "device_for"]
