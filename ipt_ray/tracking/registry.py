"""The MLflow model registry: an exported bundle, logged as a pyfunc model of its trial's run
(:mod:`ipt_ray.tracking.pyfunc`), becomes a new version of a registered model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ipt_ray import constants as C
from ipt_ray.errors import SettingError
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.schema import MODEL_NAME, TEST_METRICS

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ipt_ray.tracking.winner import Winner


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
    """Log ``bundle`` as a pyfunc model of the trial's run and register it as a new version
    of the registered model ``name`` (created if new).

    The model is an MLflow 3 logged model of the trial's experiment, an output of the trial's
    run (which is neither reopened nor left RUNNING). Its version is tagged with the trial's
    score, generator, parameter counts and test metrics. Returns the version's number as
    MLflow writes it (``"1"``, ``"2"``, ...).

    Raises:
        UserError: the bundle does not verify.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.exceptions import MlflowException

    from ipt_ray.tracking.pyfunc import save_bundle_model

    run = winner.run
    run_id = run.info.run_id
    tags = version_tags(winner)
    model = client.create_logged_model(
        run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, tags=tags
    )
    try:
        with tempfile.TemporaryDirectory(prefix="ipt-ray-model-") as tmp:
            local = save_bundle_model(bundle, Path(tmp) / MODEL_NAME)
            client.log_model_artifacts(model.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="ipt-ray prompt bundles (generator + head on a frozen backbone)"
        )
    # The source ``models:/<model_id>`` links the version to the logged model (MLflow's UI
    # shows it). The SQL registry resolves that through MLflow's process-wide store (a TODO
    # in MLflow), so point that store at this client's for the one call.
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(client.tracking_uri):
        version = client.create_model_version(
            name, f"models:/{model.model_id}", run_id=run_id, tags=tags, model_id=model.model_id
        )
    return str(version.version)


def version_tags(winner: Winner) -> dict[str, str]:
    """What a model version says of its trial: format, generator, score, sizes, test metrics."""
    run = winner.run
    tags = {
        "generator": run.data.params.get("generator", ""),
        "ipt_ray.format": "ipt-ray-bundle",
    }
    if winner.search is not None and winner.value is not None:
        tags[winner.search.metric] = f"{winner.value:.6g}"
    for key in (C.TRAINABLE_PARAMS, C.BACKBONE_PARAMS):
        if (count := S.logged_number(run.data, key)) is not None:
            tags[key] = str(int(count))
    for key in TEST_METRICS:
        if key in run.data.metrics:
            tags[key] = f"{run.data.metrics[key]:.6g}"
    return tags


__all__ = ["check_model_name", "register_bundle", "version_tags"]
