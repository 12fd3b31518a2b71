"""Exporting as a Python call: :func:`export` runs what ``ipt-ray export`` runs.

The source is a trial run id, a search (parent) run id (its best trial), an experiment (its
newest search's best trial) or a local checkpoint folder (``ipt_ray.train(..., out=...)``);
the result says what was written. Errors name the settings as keyword arguments. Everything
that can be refused is checked before anything is written; the bundle itself is written by
:mod:`ipt_ray.artifacts` (a temporary folder, renamed), which knows nothing of MLflow.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipt_ray import constants as C
from ipt_ray.errors import SettingError
from ipt_ray.tracking.schema import TEST_METRICS

#: What :func:`export` writes: a bundle (:mod:`ipt_ray.artifacts.bundle`), a PEFT adapter, or
#: an MLflow pyfunc model folder holding the bundle (:mod:`ipt_ray.tracking.pyfunc`).
FORMATS = ("ipt", "peft", "mlflow")


@dataclass
class Exported:
    """What :func:`export` wrote."""

    #: The bundle (adapter, MLflow model) folder.
    path: Path
    format: str
    #: The trial run exported; None for a checkpoint folder.
    run_id: str | None = None
    #: The search's metric and the trial's best value of it (a trial of a search).
    metric: str | None = None
    value: float | None = None
    #: The registered model's version (``register``).
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "run_id": self.run_id,
            "metric": self.metric,
            "value": self.value,
            "version": self.version,
        }


def export(
    source: str | Path | None = None,
    *,
    out: str | Path,
    experiment: str | None = None,
    format: str = "ipt",
    register: str | None = None,
    tracking_uri: str | None = None,
) -> Exported:
    """Export a search's best trial (or the named one) as a portable bundle or PEFT adapter.

    Args:
        source: a trial run id, a search's parent run id (its best trial), or a checkpoint
            folder; None: the best trial of ``experiment``'s newest search (else of the
            newest search in the store).
        out: the folder to write (new, or empty).
        experiment: a search's name instead of ``source``.
        format: ``ipt`` (a bundle), ``peft`` (an adapter, for ``task`` and ``prefix``) or
            ``mlflow`` (an MLflow pyfunc model folder: ``mlflow.pyfunc.load_model(out)``).
        register: also log the bundle as a pyfunc model of the trial's run and register it
            as a new version of this MLflow model (``models:/NAME/VERSION``).
        tracking_uri: the MLflow store (default: ``./ipt-ray-runs/mlflow.db``).

    Raises:
        SettingError: ``source`` with ``experiment``, an unknown ``format``, ``register``
            with a checkpoint folder or a PEFT adapter, an ``out`` that exists.
        UserError: no such run or search, no finished trial, a PEFT export of an
            instance-wise generator.
    """
    from ipt_ray.training.checkpointing import check_new_folder

    if source is not None and experiment is not None:
        raise SettingError("give a {source} or an {experiment}, not both")
    if format not in FORMATS:
        raise SettingError(f"{{format}} must be one of {', '.join(FORMATS)}, got {format!r}")
    if register is not None and format == "peft":
        raise SettingError("{register} takes an ipt bundle; drop {format} peft")
    folder = Path(source) if source is not None and Path(source).is_dir() else None
    if folder is not None and register is not None:
        raise SettingError("{register} needs a run in MLflow, not a checkpoint folder")
    target = check_new_folder(out, "out")
    if folder is not None:
        return Exported(_write(folder, target, format), format)
    from ipt_ray.tracking.query import client_for
    from ipt_ray.tracking.registry import check_model_name, register_bundle
    from ipt_ray.tracking.winner import choose_trial, downloaded_checkpoint, provenance

    if register is not None:
        check_model_name(register)
    client, _ = client_for(tracking_uri)
    winner = choose_trial(
        client, run_id=None if source is None else str(source), experiment=experiment
    )
    run_id = str(winner.run.info.run_id)
    version = None
    tests = {
        key.removeprefix(C.TEST_PREFIX): float(winner.run.data.metrics[key])
        for key in TEST_METRICS
        if key in winner.run.data.metrics
    }
    with downloaded_checkpoint(client, run_id) as checkpoint:
        written = _write(checkpoint, target, format, provenance(winner), winner.value, tests)
    if register is not None:
        version = register_bundle(client, _bundle_in(written, format), winner, register)
    return Exported(
        written,
        format,
        run_id=run_id,
        metric=None if winner.search is None else winner.search.metric,
        value=winner.value,
        version=version,
    )


def _write(
    checkpoint: Path,
    target: Path,
    format: str,
    provenance: dict[str, Any] | None = None,
    score: float | None = None,
    test_metrics: dict[str, float] | None = None,
) -> Path:
    """A checkpoint folder as ``format`` at ``target``; returns the folder."""
    if format == "peft":
        from ipt_ray.artifacts.peft import write_peft_adapter

        return write_peft_adapter(checkpoint, target)
    from ipt_ray.artifacts.bundle import write_bundle

    if format == "ipt":
        return write_bundle(
            checkpoint, target, provenance=provenance, score=score, test_metrics=test_metrics
        )
    from ipt_ray.tracking.pyfunc import save_bundle_model

    with tempfile.TemporaryDirectory(prefix="ipt-ray-bundle-") as tmp:
        bundle = write_bundle(
            checkpoint,
            Path(tmp) / "bundle",
            provenance=provenance,
            score=score,
            test_metrics=test_metrics,
        )
        return save_bundle_model(bundle, target)


def _bundle_in(written: Path, format: str) -> Path:
    """The bundle that :func:`_write` wrote: the folder itself, or inside an MLflow model."""
    from ipt_ray.tracking.pyfunc import BUNDLE_KEY

    return written if format == "ipt" else written / "artifacts" / BUNDLE_KEY


__all__ = ["FORMATS", "Exported", "export"]
