"""What keeps a search from hanging: orphaned placement groups reaped, stalled trials failed.

Two mechanisms, both run by :class:`SearchWatchdog`, a Tune callback in the driver:

**Orphaned placement groups.** Ray removes a placement group created by an actor only once
both that actor *and* its job are dead (GCS ``IsPlacementGroupLifetimeDone``). A Ray Train
controller is an actor of the search's job, so a controller that dies without removing its
worker group's placement group (its trial was stopped or lost with its node while the group
was being placed or rescheduled) leaves that group holding CPUs until the whole search ends.
On a small cluster that is every CPU, and the next trials wait forever (measured: a 2-node
loopback cluster, the worker node SIGKILLed, one CREATED ``{CPU: 1}`` group owned by a dead
controller, two PENDING ones). The watchdog gives placement groups the lifetime a user
expects, that of their creator: every few seconds it removes the search's groups whose creator
actor is dead (:func:`reap_orphaned_placement_groups`). A group's own "creator dead" flag is
not enough: when the creator died with its node, the flag was measured still False while the
actor table said DEAD (one run in four of the node-kill test hung so), so the actor table
decides. A group created by the driver itself
(Tune's own trial groups) has no creator actor and is never touched.

**Stalled trials.** When trials are RUNNING but none of them has started or reported for
``stall_timeout`` seconds, the search is stuck (a worker group that cannot be placed, a hung
collective). The watchdog fails the trial that has waited longest, with one line saying what
it waited for (``TrialStalled: ...``), by killing its Tune actor; Tune records the error and
``max_failures`` retries it from its last checkpoint.

Reading placement groups uses the GCS table (the state API hides creator actors). That table
is not a public API: if it cannot be read, reaping is off with one warning and the stall
watchdog alone remains. No MLflow here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.tune import Callback

from ipt_ray.tuning.options import DEFAULT_STALL_TIMEOUT_S

logger = logging.getLogger(__name__)

#: States of a placement group that reserves, or waits to reserve, resources.
LIVE_STATES = frozenset({"PENDING", "PREPARED", "CREATED", "RESCHEDULING"})
#: How often the watchdog looks for orphaned placement groups (seconds).
REAP_INTERVAL_S = 5.0

_table_unreadable_warned = False


@dataclass(frozen=True)
class PlacementGroupInfo:
    """One placement group as the GCS sees it.

    Attributes:
        id: hex id.
        state: ``PENDING``, ``PREPARED``, ``CREATED``, ``RESCHEDULING`` or ``REMOVED``.
        bundles: resources of each bundle, e.g. ``[{"CPU": 1.0}]``.
        job_id: hex id of the creating job.
        creator_actor_id: hex id of the creating actor, or None when a driver created it.
        creator_actor_dead: whether that actor is dead (by the group's own flag, or by the
            actor table when the flag lags: see :func:`placement_groups`).
        detached: created with ``lifetime="detached"`` (outlives its creator on purpose).
    """

    id: str
    state: str
    bundles: tuple[Mapping[str, float], ...]
    job_id: str
    creator_actor_id: str | None
    creator_actor_dead: bool
    detached: bool

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def orphaned(self) -> bool:
        """Live, not detached, and created by an actor that is dead."""
        return (
            self.live
            and not self.detached
            and self.creator_actor_id is not None
            and self.creator_actor_dead
        )


def describe_bundles(bundles: Iterable[Mapping[str, float]]) -> str:
    """``1 x {CPU: 1}`` or ``2 x {CPU: 1, GPU: 0.5}``: equal bundles counted, others listed."""
    counts: dict[str, int] = {}
    for bundle in bundles:
        text = ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items()) if v)
        counts["{" + text + "}"] = counts.get("{" + text + "}", 0) + 1
    return " + ".join(f"{n} x {text}" for text, n in counts.items()) or "nothing"


def _is_nil(hex_id: str) -> bool:
    # A driver's groups carry Ray's nil actor id (all 0xff bytes), or none at all.
    return not hex_id or set(hex_id) <= {"f"} or set(hex_id) <= {"0"}


def _unit_resources(bundle: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in dict(bundle.unit_resources).items()}


def placement_groups(job_id: str | None = None) -> list[PlacementGroupInfo] | None:
    """Every placement group of the connected cluster (of job ``job_id`` when given).

    Returns:
        The groups, or None when the GCS table cannot be read (warned once).
    """
    global _table_unreadable_warned
    try:
        from ray._private.state import state
        from ray.core.generated import gcs_pb2

        raw = state._global_state_accessor.get_placement_group_table()  # type: ignore[union-attr]
        groups = []
        for item in raw:
            data = gcs_pb2.PlacementGroupTableData.FromString(item)  # type: ignore[attr-defined]
            creator = data.creator_actor_id.hex()
            group = PlacementGroupInfo(
                id=data.placement_group_id.hex(),
                state=gcs_pb2.PlacementGroupTableData.PlacementGroupState.Name(  # type: ignore[attr-defined]
                    data.state
                ),
                bundles=tuple(_unit_resources(b) for b in data.bundles),
                job_id=data.creator_job_id.hex(),
                creator_actor_id=None if _is_nil(creator) else creator,
                creator_actor_dead=bool(data.creator_actor_dead),
                detached=bool(data.is_detached),
            )
            if group.live and group.creator_actor_id and not group.creator_actor_dead:
                # The group's flag lags behind its creator's death when the creator died
                # with its node (measured: a CREATED {CPU: 1} group whose TrainController
                # the actor table says is DEAD, flag still False, holding the head's only
                # CPU for the rest of the search). The actor table decides.
                dead = actor_dead(state, group.creator_actor_id)
                group = dataclasses.replace(group, creator_actor_dead=dead)
            groups.append(group)
    except Exception as exc:  # a Ray whose private table moved: reaping is off, not the search
        if not _table_unreadable_warned:
            logger.warning("cannot read Ray's placement group table (%s): orphans not reaped", exc)
            _table_unreadable_warned = True
        return None
    return [g for g in groups if job_id is None or g.job_id == job_id]


def actor_dead(state: Any, actor_id: str) -> bool:
    """Whether the actor table says actor ``actor_id`` is dead. An actor it no longer holds
    counts as dead: the GCS forgets only dead actors (the oldest, past its cache size)."""
    info = state.actor_table(actor_id)
    return not info or info.get("State") == "DEAD"


def _remove(groups: Iterable[PlacementGroupInfo]) -> list[PlacementGroupInfo]:
    """Remove ``groups``; returns those removed (one the GCS refuses is left for next time)."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    reaped = []
    for group in groups:
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group.id))))
        except Exception as exc:  # removed meanwhile, or the GCS is restarting: next round
            logger.debug("cannot remove placement group %s: %s", group.id, exc)
            continue
        reaped.append(group)
    return reaped


def reap_orphaned_placement_groups(job_id: str | None = None) -> list[PlacementGroupInfo]:
    """Remove the live placement groups (of job ``job_id``) whose creator actor is dead.

    Returns:
        The groups removed (empty when none, or when the table cannot be read).
    """
    return _remove(g for g in placement_groups(job_id) or [] if g.orphaned)


def live_group_ids(job_id: str) -> set[str]:
    """Ids of the job's live placement groups (empty when the table cannot be read)."""
    return {g.id for g in placement_groups(job_id) or [] if g.live}


def release_search_groups(
    job_id: str, existing: set[str], *, wait: float = 30.0
) -> tuple[list[PlacementGroupInfo], list[PlacementGroupInfo]]:
    """Once a search's Tune run has returned, give back what its placement groups hold.

    Groups of the job that were live before the search (``existing``, e.g. the caller's own)
    are left alone. Of the others, orphans and the driver's own (Tune's trial groups, which
    Tune should have removed) are removed; a group whose creator actor is still alive (a
    controller on its way out) is waited for, up to ``wait`` seconds.

    Returns:
        (the groups removed, the groups still live after the wait).
    """
    removed: list[PlacementGroupInfo] = []
    deadline = time.monotonic() + wait
    while True:
        live = [g for g in placement_groups(job_id) or [] if g.live and g.id not in existing]
        stale = [g for g in live if g.orphaned or g.creator_actor_id is None]
        done = _remove(stale)
        removed += done
        left = [g for g in live if g not in done]
        if not left or time.monotonic() > deadline:
            return removed, left
        time.sleep(0.5)


def current_job_id() -> str:
    """Hex id of this driver's Ray job."""
    return ray.get_runtime_context().get_job_id()


@dataclass
class WatchdogReport:
    """What a search's watchdog did, kept by search key so that the callback Tune unpickles
    on a resumed search reports into the same object (:func:`watchdog_report`).

    Attributes:
        reaped: placement groups removed (orphans while it ran, leftovers at its end).
        stalled: trial id -> the one-line reason it was failed.
        on_stall: called with ``(trial_id, message)`` before a stalled trial is failed.
    """

    reaped: list[PlacementGroupInfo] = field(default_factory=list)
    stalled: dict[str, str] = field(default_factory=dict)
    on_stall: Callable[[str, str], None] | None = None


_REPORTS: dict[str, WatchdogReport] = {}


def watchdog_report(key: str) -> WatchdogReport:
    """The report of the search ``key`` in this process (created on first use)."""
    return _REPORTS.setdefault(key, WatchdogReport())


class SearchWatchdog(Callback):
    """Tune callback (driver side): reaps orphaned placement groups and fails stalled trials
    (see the module docstring).

    Args:
        key: the search's key: what it did goes to :func:`watchdog_report` of it.
        stall_timeout: seconds without a start or report from any RUNNING trial after which the
            longest-waiting one is failed; 0 or less: never.
        reap_interval: seconds between looks for orphaned placement groups.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        key: str,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
        *,
        reap_interval: float = REAP_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.stall_timeout = stall_timeout
        self.reap_interval = reap_interval
        self.clock = clock
        self.report = watchdog_report(key)
        self._job_id: str | None = None
        self._last_reap = -math.inf
        # trial id -> when it last showed life (started, restored or reported), clock seconds
        self._seen: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state: keep the settings only.
        return {
            "key": self.key,
            "stall_timeout": self.stall_timeout,
            "reap_interval": self.reap_interval,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # -- Tune's hooks --------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen[trial.trial_id] = self.clock()

    def on_trial_restore(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen[trial.trial_id] = self.clock()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self._seen[trial.trial_id] = self.clock()

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = self.clock()
        if now - self._last_reap >= self.reap_interval:
            self._last_reap = now
            self.reap()
        running = [t for t in trials if t.status == "RUNNING"]
        victim = self.stalled_trial(running, now)
        if victim is not None:
            self.fail(victim, now)

    # -- the two mechanisms ---------------------------------------------------------------------

    @property
    def job_id(self) -> str:
        """The search's Ray job (asked once: the callback is built before Ray connects)."""
        if self._job_id is None:
            self._job_id = current_job_id()
        return self._job_id

    def reap(self) -> list[PlacementGroupInfo]:
        """Remove this job's orphaned placement groups now; returns those removed."""
        reaped = reap_orphaned_placement_groups(self.job_id)
        for group in reaped:
            logger.warning(
                "removed placement group %s (%s, %s): its creator actor (a Ray Train "
                "controller) is dead, and it held %s",
                group.id[:12],
                group.state,
                "reserved" if group.state == "CREATED" else "waiting",
                describe_bundles(group.bundles),
            )
        self.report.reaped += reaped
        return reaped

    def stalled_trial(self, running: list[Any], now: float) -> Any | None:
        """The RUNNING trial to fail, if none of ``running`` showed life within the timeout."""
        if self.stall_timeout <= 0 or not running:
            return None
        seen = {t.trial_id: self._seen.setdefault(t.trial_id, now) for t in running}
        if now - max(seen.values()) < self.stall_timeout:
            return None
        return min(running, key=lambda t: seen[t.trial_id])

    def waiting_for(self) -> str:
        """What the search's pending placement groups wait for (``""`` if none, or unknown)."""
        pending = [
            b
            for g in placement_groups(self.job_id) or []
            if g.state in ("PENDING", "RESCHEDULING")
            for b in g.bundles
        ]
        return describe_bundles(pending) if pending else ""

    def fail(self, trial: Any, now: float) -> None:
        """Fail ``trial`` as stalled: record why, then kill its Tune actor."""
        waited = now - self._seen.get(trial.trial_id, now)
        message = f"TrialStalled: no trial started or reported for {waited:.0f} s"
        what = self.waiting_for()
        message += f"; workers waiting for {what}" if what else "; no placement group pending"
        self.report.stalled[trial.trial_id] = message
        logger.warning("trial %s: %s", trial.trial_id, message)
        if self.report.on_stall is not None:
            self.report.on_stall(trial.trial_id, message)
        self._seen[trial.trial_id] = now  # one kill per timeout, not one per step
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        if actor is not None:
            ray.kill(actor, no_restart=True)


__all__ = [
    "LIVE_STATES",
    "REAP_INTERVAL_S",
    "PlacementGroupInfo",
    "SearchWatchdog",
    "WatchdogReport",
    "current_job_id",
    "describe_bundles",
    "live_group_ids",
    "placement_groups",
    "reap_orphaned_placement_groups",
    "release_search_groups",
    "watchdog_report",
]
