"""``ipt-ray export``: a search's winning trial (or a named one) from MLflow to a bundle.

The source is a trial run id, a search (parent) run id (its best trial), an experiment (its
newest search's best trial), or a local checkpoint folder. Everything that can be refused is
checked before anything is written: the bundle is built in a temporary folder and renamed.
With ``register`` the bundle is also logged to the trial's run (``bundle/``) and registered
as a new version of an MLflow registered model, linked to that run and tagged with its score.
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
from ipt_ray.errors import SettingError, UserError
from ipt_ray.tracking.query import Search, find_search, get_run, trial_rows, trial_status
from ipt_ray.tracking.schema import CHECKPOINT_ARTIFACT_DIR, COMPLETED_STATUSES

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

BUNDLE_ARTIFACTS = "bundle"


@dataclass
class Winner:
    """The trial to export, with the search it belongs to (None for a lone run)."""

    run: Run
    search: Search | None
    value: float | None


def choose_trial(
    client: MlflowClient, *, run_id: str | None = None, experiment: str | None = None
) -> Winner:
    """Resolve what to export (see the module docstring).

    Raises:
        UserError: unknown run or experiment, a run that is not an ipt-ray trial or search,
            a search without an exportable trial, or a trial that failed or did not finish.
    """
    if run_id is not None:
        run = get_run(client, run_id)
        kind = run.data.tags.get(C.TAG_KIND)
        if kind == C.KIND_SEARCH:
            return best_of(client, find_search(client, search=run_id))
        if kind != C.KIND_TRIAL:
            raise UserError(f"run {run_id} is not an ipt-ray trial or search run")
        status = trial_status(run)
        if status not in COMPLETED_STATUSES:
            error = run.data.tags.get(C.TAG_ERROR)
            why = f" ({error.splitlines()[0][:120]})" if error else ""
            raise UserError(
                f"trial run {run_id} is {run.info.status}{why}; only finished "
                "trials can be exported"
            )
        parent = run.data.tags.get(C.TAG_PARENT_RUN)
        search = find_search(client, search=parent) if parent else None
        value = None
        if search is not None:
            from ipt_ray.tracking.query import best_value

            value = best_value(client, run, search.metric, search.mode)
        return Winner(run, search, value)
    return best_of(client, find_search(client, experiment=experiment))


def best_of(client: MlflowClient, search: Search) -> Winner:
    """The best finished (or pruned) trial of ``search`` that has a checkpoint."""
    for row in trial_rows(client, search):
        if row.status in COMPLETED_STATUSES and row.value is not None:
            run = client.get_run(row.run_id)
            if has_checkpoint(client, row.run_id):
                return Winner(run, search, row.value)
    raise UserError(
        f"search {search.run_id} ({search.experiment_name!r}) has no finished "
        "trial with a checkpoint to export"
    )


def has_checkpoint(client: MlflowClient, run_id: str) -> bool:
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
        local = client.download_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR, str(tmp))
        yield Path(local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def provenance(winner: Winner, tracking_uri: str) -> dict[str, Any]:
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


def export(
    client: MlflowClient,
    tracking_uri: str,
    out: Path,
    *,
    run_id: str | None = None,
    experiment: str | None = None,
    fmt: str = "ipt",
    register: str | None = None,
) -> tuple[Path, Winner, str | None]:
    """Export the chosen trial; returns (bundle folder, winner, registered version or None).

    Raises:
        UserError: see :func:`choose_trial`; a PEFT export of an instance-wise generator.
        SettingError: ``register`` is not a valid MLflow model name.
    """
    # fmt and register with fmt were checked by the caller (ipt_ray.artifacts.api.export).
    if register is not None:
        check_model_name(register)
    winner = choose_trial(client, run_id=run_id, experiment=experiment)
    trial_run_id = winner.run.info.run_id
    with downloaded_checkpoint(client, trial_run_id) as checkpoint:
        if fmt == "peft":
            from ipt_ray.artifacts.peft import write_peft_adapter

            return write_peft_adapter(checkpoint, out), winner, None
        from ipt_ray.artifacts.bundle.write import write_bundle

        bundle = write_bundle(
            checkpoint, out, provenance=provenance(winner, tracking_uri), score=winner.value
        )
    version = register_bundle(client, bundle, winner, register) if register is not None else None
    return bundle, winner, version


def check_model_name(name: str) -> None:
    """MLflow's rule for registered model names, checked before anything is written.

    Raises:
        SettingError: an empty name, or one with ``/`` or ``:``.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name  # the rule MLflow applies

    try:
        _validate_model_name(name)
    except MlflowException as exc:
        raise SettingError(
            f"{{register}} {name!r} is not a valid MLflow model name: {exc.message}"
        ) from None


def register_bundle(client: MlflowClient, bundle: Path, winner: Winner, name: str) -> str:
    """Log the bundle to the trial's run and register it as a new model version."""
    from mlflow.exceptions import MlflowException

    run_id = winner.run.info.run_id
    client.log_artifacts(run_id, str(bundle), BUNDLE_ARTIFACTS)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="ipt-ray prompt bundles (generator + head on a frozen backbone)"
        )
    tags = {
        "generator": winner.run.data.params.get("generator", ""),
        "ipt_ray.format": "ipt-ray-bundle",
    }
    if winner.search is not None and winner.value is not None:
        tags[winner.search.metric] = f"{winner.value:.6g}"
    params = winner.run.data.metrics.get(C.TRAINABLE_PARAMS)
    if params is not None:
        tags[C.TRAINABLE_PARAMS] = str(int(params))
    source = f"{winner.run.info.artifact_uri.rstrip('/')}/{BUNDLE_ARTIFACTS}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return str(version.version)
