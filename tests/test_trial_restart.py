"""A trial's Ray Train run whose checkpoint record was left unreadable (its controller died
with its node while rewriting it: a 0-byte file was measured) restarts from its latest
complete checkpoint instead of failing every retry in ``TrainController.__init__``."""

from __future__ import annotations

from pathlib import Path

from ipt_ray.tuning.trial import RESUMABLE_FILES, SNAPSHOT_FILE, salvage_run


def checkpoint(run: Path, name: str, *, complete: bool = True) -> Path:
    folder = run / name
    folder.mkdir(parents=True)
    # A folder the dying node did not finish copying lacks its last file.
    for name in RESUMABLE_FILES if complete else RESUMABLE_FILES[:-1]:
        (folder / name).write_bytes(b"x")
    return folder


def test_an_empty_record_is_removed_and_the_latest_complete_checkpoint_resumes(
    tmp_path: Path,
) -> None:
    run = tmp_path / "trial-1"
    first = checkpoint(run, "epoch-0001")
    second = checkpoint(run, "epoch-0002")
    checkpoint(run, "epoch-0003", complete=False)  # the copy the dying node did not finish
    (run / SNAPSHOT_FILE).write_bytes(b"")
    assert salvage_run(run) == second != first
    assert not (run / SNAPSHOT_FILE).exists(), "the restarted controller starts afresh"


def test_a_readable_or_missing_record_is_left_to_ray_train(tmp_path: Path) -> None:
    run = tmp_path / "trial-1"
    checkpoint(run, "epoch-0001")
    assert salvage_run(run) is None  # no record yet: Ray Train's own first start
    (run / SNAPSHOT_FILE).write_text('{"checkpoint_results": []}')
    assert salvage_run(run) is None
    assert (run / SNAPSHOT_FILE).read_text() == '{"checkpoint_results": []}'


def test_a_truncated_record_without_checkpoints_starts_from_scratch(tmp_path: Path) -> None:
    run = tmp_path / "trial-1"
    run.mkdir()
    (run / SNAPSHOT_FILE).write_text('{"checkpoint_res')
    assert salvage_run(run) is None
    assert not (run / SNAPSHOT_FILE).exists()
