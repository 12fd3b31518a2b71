"""Which trial an export takes from MLflow, and its checkpoint downloaded.

The source is a trial run id, a search (parent) run id (its best trial), or an experiment (its
newest search's best trial). Everything that can be refused is refused here, before anything
is written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray import constants as C
from ipt_ray.errors import UserError
from ipt_ray.tracking.query import (
    Search,
    best_value,
    find_search,
    get_run,
    trial_rows,
    trial_status,
)
from ipt_ray.tracking.schema import CHECKPOINT_ARTIFACT_DIR, COMPLETED_STATUSES

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass
class Winner:
    """The trial to export, with the search it belongs to (None for a lone run)."""

    run: Run
    search: Search | None
    #: The trial's best value of the search's metric (None for a lone run).
    value: float | None


def choose_trial(
    client: MlflowClient, *, run_id: str | None = None, experiment: str | None = None
) -> Winner:
    """Resolve what to export (see the module docstring).

    Raises:
        UserError: unknown run or experiment, a run that is not an ipt-ray trial or search,
            a search without an exportable trial, or a trial that failed or did not finish.
    """
    if run_id is None:
        return best_of(client, find_search(client, experiment=experiment))
    run = get_run(client, run_id)
    kind = run.data.tags.get(C.TAG_KIND)
    if kind == C.KIND_SEARCH:
        return best_of(client, find_search(client, search=run_id))
    if kind != C.KIND_TRIAL:
        raise UserError(f"run {run_id} is not an ipt-ray trial or search run")
    if trial_status(run) not in COMPLETED_STATUSES:
        error = run.data.tags.get(C.TAG_ERROR)
        why = f" ({error.splitlines()[0][:120]})" if error else ""
        raise UserError(
            f"trial run {run_id} is {run.info.status}{why}; only finished trials can be exported"
        )
    parent = run.data.tags.get(C.TAG_PARENT_RUN)
    search = find_search(client, search=parent) if parent else None
    value = None if search is None else best_value(client, run, search.metric, search.mode)
    return Winner(run, search, value)


def best_of(client: MlflowClient, search: Search) -> Winner:
    """The best finished (or pruned) trial of ``search`` that has a checkpoint.

    Raises:
        UserError: no such trial.
    """
    for row in trial_rows(client, search):
        done = row.status in COMPLETED_STATUSES and row.value is not None
        if done and has_checkpoint(client, row.run_id):
            return Winner(client.get_run(row.run_id), search, row.value)
    raise UserError(
        f"search {search.run_id} ({search.experiment_name!r}) has no finished "
        "trial with a checkpoint to export"
    )


def has_checkpoint(client: MlflowClient, run_id: str) -> bool:
    """Whether the run logged a loadable checkpoint (weights and config)."""
    names = {Path(f.path).name for f in client.list_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR)}
    return {C.WEIGHTS_FILE, C.CONFIG_FILE} <= names


@contextmanager
def downloaded_checkpoint(client: MlflowClient, run_id: str) -> Iterator[Path]:
    """The run's ``checkpoint/`` artifacts in a temporary folder (removed afterwards).

    Raises:
        UserError: the run has no checkpoint artifacts.
    """
    if not has_checkpoint(client, run_id):
        raise UserError(
            f"run {run_id} has no checkpoint artifacts ({C.WEIGHTS_FILE} and "
            f"{C.CONFIG_FILE} under {CHECKPOINT_ARTIFACT_DIR}/)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="ipt-ray-export-"))
    try:
        yield Path(client.download_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR, str(tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def provenance(winner: Winner) -> dict[str, Any]:
    """Where the winner came from, as a bundle records it (run ids, search, space file)."""
    search = winner.search
    out: dict[str, Any] = {"trial_run_id": winner.run.info.run_id}
    if search is not None:
        space_path = search.run.data.params.get("space_path") or ""
        out.update(
            search=search.run.data.params.get("space") or search.experiment_name,
            experiment=search.experiment_name,
            experiment_id=search.experiment_id,
            parent_run_id=search.run_id,
            space_file=Path(space_path).name or None,
        )
    return out


__all__ = ["Winner", "best_of", "choose_trial", "downloaded_checkpoint", "has_checkpoint"]
