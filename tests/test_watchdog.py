"""The search watchdog (issue "Reliability"): orphaned placement groups are removed, a trial
whose workers cannot be placed fails within its placement timeout, and a stalled search fails
its longest-waiting trial instead of hanging. Real local Ray for all but the unit tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ipt_ray import constants as C
from ipt_ray.testing import search_runs, stalled_worker, tiny_space_text, write_toy_csv
from ipt_ray.tuning.space import parse_space
from ipt_ray.tuning.watchdog import PlacementGroupInfo, SearchWatchdog, describe_bundles

ONE_GENERATOR = "generator: {choices: {task: {}}}"


@dataclass
class FakeTrial:
    trial_id: str
    status: str = "RUNNING"


def group(
    state: str, creator: str | None, dead: bool, detached: bool = False
) -> PlacementGroupInfo:
    return PlacementGroupInfo("ab" * 9, state, ({"CPU": 1.0},), "01000000", creator, dead, detached)


def test_only_live_groups_of_a_dead_actor_are_orphans() -> None:
    assert group("CREATED", "c0ffee", dead=True).orphaned
    assert group("PENDING", "c0ffee", dead=True).orphaned
    assert not group("CREATED", "c0ffee", dead=False).orphaned, "its creator still uses it"
    assert not group("CREATED", None, dead=True).orphaned, "the driver's (Tune's) own group"
    assert not group("CREATED", "c0ffee", dead=True, detached=True).orphaned
    assert not group("REMOVED", "c0ffee", dead=True).orphaned


def test_the_actor_table_decides_whether_a_creator_is_dead() -> None:
    """A group's flag can lag (its creator died with its node): the actor table says DEAD, or
    no longer holds the actor at all (the GCS forgets only dead ones)."""
    from ipt_ray.tuning.watchdog import actor_dead

    class Table:
        def __init__(self, rows: dict[str, dict[str, str]]) -> None:
            self.rows = rows

        def actor_table(self, actor_id: str) -> dict[str, str]:
            return self.rows.get(actor_id, {})

    table = Table({"a": {"State": "DEAD"}, "b": {"State": "ALIVE"}, "c": {"State": "RESTARTING"}})
    assert actor_dead(table, "a") and actor_dead(table, "gone")
    assert not actor_dead(table, "b") and not actor_dead(table, "c")


def test_bundles_are_described_in_one_short_phrase() -> None:
    assert describe_bundles([{"CPU": 1.0}]) == "1 x {CPU: 1}"
    assert describe_bundles([{"CPU": 2.0, "GPU": 0.5}] * 2) == "2 x {CPU: 2, GPU: 0.5}"
    assert describe_bundles([]) == "nothing"


def test_a_search_stalls_only_when_no_running_trial_showed_life_for_the_timeout() -> None:
    now = [0.0]
    dog = SearchWatchdog("unit-stall", stall_timeout=100, clock=lambda: now[0])
    a, b = FakeTrial("a"), FakeTrial("b")
    dog.on_trial_start(0, [a], a)
    now[0] = 50
    dog.on_trial_start(0, [a, b], b)
    now[0] = 120  # a is quiet for 120 s, but b started 70 s ago: the search moves
    assert dog.stalled_trial([a, b], now[0]) is None
    now[0] = 151  # nobody for 101 s: the longest-waiting trial goes first
    assert dog.stalled_trial([a, b], now[0]) is a
    dog.on_trial_result(0, [a, b], b, {})
    assert dog.stalled_trial([a, b], now[0]) is None
    assert SearchWatchdog("unit-off", stall_timeout=0).stalled_trial([a], 1e9) is None


@pytest.mark.ray
def test_a_group_whose_creator_died_is_removed_and_no_other(ray_session: None) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from ipt_ray.tuning.watchdog import (
        current_job_id,
        placement_groups,
        reap_orphaned_placement_groups,
    )

    @ray.remote(num_cpus=0)
    class Creator:
        def make(self) -> str:
            pg = placement_group([{"CPU": 1}])
            ray.get(pg.ready())
            return pg.id.hex()

    creator = Creator.remote()
    orphan = ray.get(creator.make.remote())
    kept = placement_group([{"CPU": 1}])  # the driver's own, like Tune's trial groups
    ray.get(kept.ready())
    ray.kill(creator)
    job = current_job_id()
    deadline = time.monotonic() + 30
    while not any(g.id == orphan and g.creator_actor_dead for g in placement_groups(job) or []):
        assert time.monotonic() < deadline, "Ray never marked the creator dead"
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 0, "the orphan still holds its CPU"
    assert [g.id for g in reap_orphaned_placement_groups(job)] == [orphan]
    states = {g.id: g.state for g in placement_groups(job) or []}
    assert states[orphan] == "REMOVED" and states[kept.id.hex()] == "CREATED"
    remove_placement_group(kept)


@pytest.fixture(scope="module")
def slow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("slow") / "slow.csv", n=3000)


@pytest.mark.ray
def test_a_trial_whose_workers_cannot_be_placed_fails_in_time_and_names_what_it_waited_for(
    ray_session: None, tiny_models: dict[str, Path], slow_csv: Path, paths: dict[str, Any]
) -> None:
    """2 CPUs, two trials of one 2-CPU worker each at once: the second waits for the first's
    CPUs, and fails after its 3 s placement timeout instead of waiting for ever."""
    from ipt_ray.tuning.run import run_search

    text = tiny_space_text(
        tiny_models["bert"],
        slow_csv,
        search="num_samples: 2\nmax_concurrent: 2\nseed: 0\nscheduler: none",
        params=ONE_GENERATOR,
        max_samples=1500,
        batch_size=4,
        epochs=2,
    )
    summary = run_search(
        parse_space(text), runner="train", cpus_per_worker=2, placement_timeout=3, **paths
    )
    assert summary.counts.get("finished") == 1 and summary.failed == 1, summary.counts
    _, children = search_runs(paths["tracking_uri"], summary)
    errors = [c.data.tags.get(C.TAG_ERROR) for c in children if c.info.status == "FAILED"]
    assert errors == ["WorkersNotPlaced: waited 3 s for 1 x {CPU: 2} (placement timeout)"]
    assert summary.placement_groups_left == 0


@pytest.mark.ray
def test_a_stalled_search_fails_the_trial_instead_of_hanging(
    ray_session: None, tiny_models: dict[str, Path], toy_csv: Path, paths: dict[str, Any]
) -> None:
    """A trial whose workers never report: after the 8 s stall timeout the watchdog fails it,
    its workers' placement group goes with it, and the search ends."""
    from ipt_ray.tuning.progress import ProgressEvent
    from ipt_ray.tuning.run import run_search

    text = tiny_space_text(
        tiny_models["bert"],
        toy_csv,
        search="num_samples: 1\nseed: 0\nscheduler: none",
        params=ONE_GENERATOR,
    )
    events: list[ProgressEvent] = []
    started = time.monotonic()
    summary = run_search(
        parse_space(text),
        runner="train",
        train_fn=stalled_worker,
        stall_timeout=8,
        progress=events.append,
        **paths,
    )
    assert time.monotonic() - started < 120
    assert summary.failed == 1 and summary.trials_stalled == 1
    stalled = [e.message for e in events if e.kind == "stalled"]
    assert len(stalled) == 1 and "TrialStalled: no trial started or reported for" in stalled[0]
    assert summary.placement_groups_left == 0
    parent, children = search_runs(paths["tracking_uri"], summary)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FAILED"]
    assert (
        children[0]
        .data.tags[C.TAG_ERROR]
        .startswith("TrialStalled: no trial started or reported for")
    )


@pytest.mark.ray
def test_after_a_search_only_the_groups_it_left_are_released(ray_session: None) -> None:
    """Groups live before the search (the caller's) stay; a driver group born during it
    (a trial group Tune failed to remove) is removed, and nothing of the search is left."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from ipt_ray.tuning.watchdog import current_job_id, live_group_ids, release_search_groups

    callers = placement_group([{"CPU": 1}])
    ray.get(callers.ready())
    job = current_job_id()
    before = live_group_ids(job)
    leftover = placement_group([{"CPU": 1}])
    ray.get(leftover.ready())
    removed, left = release_search_groups(job, before, wait=5)
    assert [g.id for g in removed] == [leftover.id.hex()] and left == []
    assert live_group_ids(job) == {callers.id.hex()}
    remove_placement_group(callers)
