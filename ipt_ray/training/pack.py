"""Packed training: several runs in one process over one frozen backbone, their passes fused.

A :class:`Pack` trains each member run (a :class:`~ipt_ray.training.loop.TrainingRun` with its
own generator, head, optimizer, schedule, seed and data order) on a thread of its own, but
only one member thread runs at a time: it holds the pack's *baton* and hands it on whenever it
needs the backbone, so each member's code stays the plain training loop. The backbone passes
are where members meet:

- a member's training forward (gradients on) submits its
  :class:`~ipt_ray.core.backbone_call.BackboneCall` and waits. When no member can run any
  more, the pack runs every waiting call as one batch per kind
  (:func:`~ipt_ray.core.backbone_call.fuse`; calls of different kinds, such as two deep
  prefixes of different lengths, run one after the other) and hands each member its rows;
- each member of that pass computes its own loss and submits it; once all have, the pack
  runs one backward pass through their sum. A member's loss depends only on its own rows,
  so each member's parameters get exactly the gradient of its own loss;
- passes without gradients (evaluation, frozen features) run at once, unfused.

Each member keeps its own stream of torch's random numbers (dropout): the pack swaps the
global generator's state whenever the baton changes hands, so a member draws exactly what it
would draw alone, and, up to float rounding in the fused passes, trains exactly as it would
alone (``tests/test_pack.py`` checks the per-epoch metrics).

A member that fails (a diverged loss) or is stopped (:meth:`Pack.stop`, say an ASHA stop)
leaves the pack alone: its rows drop out of the pass it was in and the others go on. A
member blocking on something outside the pack (a report waiting to be taken) wraps that wait
in :meth:`PackMember.outside`. No Ray here.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ipt_ray.core.backbone_call import BackboneCall, fuse, recomputed_layers, run_call, split

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ipt_ray.training.loop import TrainingRun


class MemberStopped(Exception):
    """Raised in a member's thread when the pack was told to stop it."""


@dataclass
class PackStats:
    """Counters of a pack's fused work (for benchmarks and tests)."""

    forward_passes: int = 0  # backbone passes with gradients, after fusing
    forward_calls: int = 0  # the members' calls they fused
    backward_passes: int = 0
    max_rows: int = 0  # the most rows of one fused pass


@dataclass(eq=False)
class PackMember:
    """One run in a pack: its thread, its random state and its place in the fused passes."""

    pack: Pack
    name: str
    thread: threading.Thread | None = None
    error: BaseException | None = None
    stopping: bool = False
    _rng: torch.Tensor | None = None
    _cuda_rng: list[torch.Tensor] | None = None
    # What the pack hands back: the member's hidden states, None after a backward, or the
    # exception the fused pass raised.
    _result: Any = None

    # -- what the run's hooks call (on the member's thread, holding the baton) -------------
    def attach(self, run: TrainingRun) -> None:
        """Route ``run``'s backbone passes and backward through the pack."""
        run.model.backbone_runner = self._run_backbone
        run.backward = self._backward

    def _run_backbone(self, backbone: PreTrainedModel, call: BackboneCall) -> torch.Tensor:
        if not torch.is_grad_enabled() or self in self.pack._group:
            # Evaluation and frozen features have nothing to fuse; a second pass before the
            # member's backward (no generator makes one) runs alone rather than wait on it.
            return run_call(backbone, call)
        return self.pack._submit_forward(self, backbone, call)

    def _backward(self, loss: torch.Tensor) -> None:
        self.pack._submit_backward(self, loss)

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Within the block this member gives up the baton (to wait on something else)."""
        self.pack._release(self)
        try:
            yield
        finally:
            self.pack._acquire(self)

    # -- random state ---------------------------------------------------------------------
    def _save_rng(self) -> None:
        self._rng = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self._cuda_rng = torch.cuda.get_rng_state_all()

    def _restore_rng(self) -> None:
        self.pack._apply_threads()
        if self._rng is not None:
            torch.set_rng_state(self._rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state_all(self._cuda_rng)


_DISPATCHING = object()  # the baton while the pack runs a fused pass


@dataclass(eq=False)
class _Forward:
    member: PackMember
    backbone: Any
    call: BackboneCall
    autocast: tuple[bool, torch.dtype]

    def key(self) -> tuple[Any, ...]:
        return (id(self.backbone), self.autocast, *self.call.key())


class Pack:
    """Trains member runs in one process, one at a time, their backbone passes fused.

    See the module docstring. Thread-safe: :meth:`start`, :meth:`stop` and :meth:`join` may
    be called from any thread.
    """

    def __init__(self, *, recompute: bool = False, threads: int | None = None) -> None:
        self.recompute = recompute
        #: torch's intra-op threads for every member (None: leave torch's setting alone).
        self.threads = threads
        self._local = threading.local()
        self._cond = threading.Condition(threading.Lock())
        self._holder: object = None  # the member with the baton, _DISPATCHING, or None
        self._waiting: deque[PackMember] = deque()  # members that want the baton, in order
        self._forwards: list[_Forward] = []
        self._group: dict[PackMember, torch.Tensor | None] = {}  # the last pass's members
        self.members: dict[str, PackMember] = {}
        self.stats = PackStats()

    # -- members --------------------------------------------------------------------------
    def start(self, name: str, target: Callable[[PackMember], None]) -> PackMember:
        """Run ``target(member)`` as a new member on its own thread, holding the baton.

        ``target`` builds its run (under the baton: seeding and initialisation are the
        member's own), calls :meth:`PackMember.attach` and trains. What it raises is kept in
        :attr:`PackMember.error`.

        Raises:
            ValueError: a member of that name is still running.
        """
        member = PackMember(self, name)
        with self._cond:
            old = self.members.get(name)
            if old is not None and old.thread is not None and old.thread.is_alive():
                raise ValueError(f"pack member {name!r} is still running")
            self.members[name] = member

        def body() -> None:
            try:
                self._acquire(member)
            except MemberStopped:
                self._leave(member, holding=False)
                return
            try:
                target(member)
            except BaseException as exc:  # kept for the caller; the pack goes on
                member.error = exc
            finally:
                self._leave(member, holding=True)

        member.thread = threading.Thread(target=body, name=f"pack-{name}", daemon=True)
        member.thread.start()
        return member

    def stop(self, name: str) -> None:
        """Stop a member: it raises :class:`MemberStopped` when it next takes the baton."""
        with self._cond:
            member = self.members.get(name)
            if member is not None:
                member.stopping = True
                self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        """Wait for every member started so far to end."""
        for member in list(self.members.values()):
            if member.thread is not None:
                member.thread.join(timeout)

    @property
    def running(self) -> list[str]:
        """Names of the members whose thread is alive."""
        return [n for n, m in self.members.items() if m.thread is not None and m.thread.is_alive()]

    def _apply_threads(self) -> None:
        """Give the calling thread :attr:`threads` intra-op threads.

        torch's setting reaches OpenMP per thread: a member thread that ran an op before a
        change would otherwise keep the old count (measured: a pack at half speed).
        """
        want = self.threads
        if want is not None and getattr(self._local, "threads", None) != want:
            torch.set_num_threads(want)
            self._local.threads = want

    # -- the baton ------------------------------------------------------------------------
    def _acquire(self, member: PackMember) -> None:
        with self._cond:
            self._waiting.append(member)
            self._dispatch()
            self._cond.wait_for(lambda: self._holder is member)
        member._restore_rng()
        if member.stopping:
            self._release(member)
            raise MemberStopped(member.name)

    def _release(self, member: PackMember) -> None:
        """Give up the baton (the caller holds it)."""
        member._save_rng()
        with self._cond:
            self._holder = None
            self._dispatch()

    def _leave(self, member: PackMember, *, holding: bool) -> None:
        with self._cond:
            self._group.pop(member, None)
            if member in self._waiting:
                self._waiting.remove(member)
            if holding and self._holder is member:
                self._holder = None
            self._dispatch()

    def _await_result(self, member: PackMember) -> Any:
        """Wait (without the baton) for the pass the member joined, then take the baton."""
        self._cond.wait_for(lambda: self._holder is member)
        member._restore_rng()
        result, member._result = member._result, None
        if member.stopping:
            raise MemberStopped(member.name)
        if isinstance(result, BaseException):
            raise result
        return result

    def _submit_forward(
        self, member: PackMember, backbone: Any, call: BackboneCall
    ) -> torch.Tensor:
        device = call.inputs_embeds.device.type
        autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        member._save_rng()
        with self._cond:
            self._forwards.append(_Forward(member, backbone, call, autocast))
            self._holder = None
            self._dispatch()
            result: torch.Tensor = self._await_result(member)
        return result

    def _submit_backward(self, member: PackMember, loss: torch.Tensor) -> None:
        if member not in self._group:  # its forward ran alone (no other member waited)
            loss.backward()
            return
        member._save_rng()
        with self._cond:
            self._group[member] = loss
            self._holder = None
            self._dispatch()
            self._await_result(member)

    # -- running the fused passes (on whichever thread gave up the baton last) -------------
    def _dispatch(self) -> None:
        """With the lock held and the baton free: hand it on, or run the next fused pass."""
        while self._holder is None:
            if self._waiting:
                self._holder = self._waiting.popleft()
                self._cond.notify_all()
                return
            if self._group and all(loss is not None for loss in self._group.values()):
                work: Callable[[], None] = self._backward_pass
            elif self._forwards and not self._group:
                work = self._forward_pass
            else:
                return  # members are away (evaluating, waiting outside); they come back
            self._holder = _DISPATCHING
            self._cond.release()
            try:
                self._apply_threads()
                work()
            finally:
                self._cond.acquire()
                self._holder = None

    def _forward_pass(self) -> None:
        forwards, self._forwards = self._forwards, []
        by_kind: dict[tuple[Any, ...], list[_Forward]] = {}
        for forward in forwards:
            by_kind.setdefault(forward.key(), []).append(forward)
        group: dict[PackMember, torch.Tensor | None] = {}
        for kind in by_kind.values():
            calls = [f.call for f in kind]
            enabled, dtype = kind[0].autocast
            device = calls[0].inputs_embeds.device.type
            cast = torch.autocast(device, dtype=dtype) if enabled else nullcontext()
            try:
                recompute = (
                    recomputed_layers(kind[0].backbone, max(c.rows for c in calls))
                    if self.recompute and calls[0].layer_kv is None
                    else nullcontext()
                )
                with torch.enable_grad(), cast, recompute:
                    fused = fuse(calls) if len(calls) > 1 else calls[0]
                    parts = split(run_call(kind[0].backbone, fused), calls)
            except Exception as exc:  # every member of the pass gets it (and fails alone)
                parts = [exc] * len(kind)  # type: ignore[list-item]
            self.stats.forward_passes += 1
            self.stats.forward_calls += len(kind)
            self.stats.max_rows = max(self.stats.max_rows, sum(c.rows for c in calls))
            for forward, part in zip(kind, parts, strict=True):
                forward.member._result = part
                if not isinstance(part, BaseException):
                    group[forward.member] = None
        with self._cond:
            self._group = group
            self._waiting.extend(f.member for f in forwards)

    def _backward_pass(self) -> None:
        group, self._group = self._group, {}
        losses = [loss for loss in group.values() if loss is not None]
        error: BaseException | None = None
        try:
            torch.stack([loss.reshape(()) for loss in losses]).sum().backward()
        except Exception as exc:
            error = exc
        self.stats.backward_passes += 1
        with self._cond:
            for member in group:
                member._result = error
                self._waiting.append(member)


__all__ = ["MemberStopped", "Pack", "PackMember", "PackStats"]
