"""The MLflow model registry: an exported bundle as a new version of a registered model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ipt_ray import constants as C
from ipt_ray.errors import SettingError
from ipt_ray.tracking.schema import BUNDLE_ARTIFACT_DIR

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
    """Log the bundle to the trial's run and register it as a new model version.

    Returns the new version's number, as MLflow writes it (``"1"``, ``"2"``, ...).
    """
    from mlflow.exceptions import MlflowException

    run_id = winner.run.info.run_id
    client.log_artifacts(run_id, str(bundle), BUNDLE_ARTIFACT_DIR)
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
    source = f"{winner.run.info.artifact_uri.rstrip('/')}/{BUNDLE_ARTIFACT_DIR}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return str(version.version)


__all__ = ["check_model_name", "register_bundle"]
