"""The per-trial Tune function: ``train_driver_fn(config, setup)`` trains one trial.

Ray 2.60 runs Ray Train V2, where a trainer cannot be passed to ``Tuner`` directly. Each trial
is a Tune *function trainable* that turns its flat trial config into a
:class:`~ipt_ray.core.config.TrainConfig` and trains it with one of two runners
(:attr:`TrialSetup.runner`):

``actor``: the trial trains inside Tune's own trial process
  (:func:`ipt_ray.tuning.worker.train_in_trial`), which holds the trial's CPUs (and GPU share)
  and reports with ``ray.tune.report``. Tune reuses the process for the next trial, so torch and
  transformers are imported once, the backbone is built once and the task loaded once per
  process: a reused trial starts training in about a second, and a concurrent trial costs one
  process. What Ray recommends for single-worker training under Tune; the default when a trial
  has one worker.
``train``: the trial fits a :class:`~ray.train.torch.TorchTrainer` with ``W`` DDP workers
  (:func:`ipt_ray.tuning.worker.train_fn_per_worker`), gloo on CPU, nccl on GPU, on one node or
  many. The Train run is named ``trial-<trial id>`` (stable, no timestamp) under
  :attr:`TrialSetup.storage_path`, so a trial that Tune restarts finds its own checkpoints;
  :class:`~ray.tune.integration.ray_train.TuneReportCallback` forwards rank 0's reports to
  Tune (a checkpoint arrives as its storage path under ``checkpoint_path``); Ray Train keeps
  the latest and the best epoch's checkpoints (highest ``checkpoint_score``) and restarts
  failed workers (``worker_failures``). The function itself reserves no CPU: the workers
  hold the resources. Needed for several workers per trial.

``packed``: the trial is a relay that holds its share of a pack's resources and hands its
  config to its node's pack server, which trains up to ``pack_size`` trials per
  ``cpus_per_worker`` CPUs in one process over one copy of the backbone, their backbone
  passes fused (:mod:`ipt_ray.tuning.pack_server`); the relay reports each epoch to Tune
  as the ``actor`` runner does.

All read the backbone from the node's shared copy when the search published one
(:attr:`TrialSetup.backbone`). A failed run raises :class:`TrialFailed` with a one-line
message, which Tune records as the trial's error. No MLflow here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import ray.train
import ray.tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from ipt_ray.constants import CONFIG_FILE, WEIGHTS_FILE
from ipt_ray.core.checkpoint import TRAIN_STATE_JSON, TRAIN_STATE_TENSORS
from ipt_ray.core.config import TrainConfig
from ipt_ray.tuning.options import DEFAULT_PLACEMENT_TIMEOUT_S
from ipt_ray.tuning.trial_io import run_name
from ipt_ray.tuning.worker import (
    CHECKPOINT_SCORE_KEY,
    RESUME_DIR_KEY,
    SHARED_BACKBONE_KEY,
    TRAIN_CONFIG_KEY,
    train_fn_per_worker,
    train_in_trial,
)

if TYPE_CHECKING:
    from ipt_ray.tuning.shared_backbone import SharedBackbone

#: Where TuneReportCallback puts the storage path of a reported checkpoint.
CHECKPOINT_PATH_KEY = "checkpoint_path"
#: Resources of the driver function of a ``train`` trial (Ray refuses ``{"cpu": 0}`` alone).
DRIVER_RESOURCES = {"cpu": 0, "memory": 1 << 20}
#: How long Ray Train's controller waits for a worker group to be placed (read by Ray Train,
#: propagated from the process that calls ``fit()`` to its controller).
_PLACEMENT_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class TrialConfigConverter(Protocol):
    """Anything that turns a flat trial config into a TrainConfig (``SearchSpace`` does)."""

    def to_train_config(self, trial_config: Mapping[str, Any]) -> TrainConfig: ...


class TrialFailed(RuntimeError):
    """A trial's training failed; the message is one line (``ErrorType: message``)."""

    @property
    def short_message(self) -> str:
        """The one-line message (what the MLflow ``error`` tag shows)."""
        return str(self)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one search shares (sent to trials once, via the object store).

    Attributes:
        space: converts the flat trial config (``SearchSpace``).
        storage_path: absolute path or URI under which each trial's Train run keeps its
            checkpoints (``<storage_path>/trial-<id>/epoch-0001``...). Must be reachable from
            every node of the cluster (shared file system or object store) on multi-node
            clusters.
        workers: DDP workers per trial.
        cpus_per_worker, gpus_per_worker: resources of each worker.
        worker_failures: Ray Train restarts a failed worker group this often (from the last
            checkpoint) before the trial fails (``train`` runner).
        runner: ``actor``, ``packed`` or ``train`` (the module docstring;
            :func:`ipt_ray.tuning.options.resolve_runner`).
        pack_size: ``packed``: trials that share ``cpus_per_worker`` CPUs and
            ``gpus_per_worker`` GPUs in one pack (each trial holds 1/pack_size of them).
        pack_recompute: ``packed``: a pack keeps only each layer's input of its fused passes
            and recomputes the rest in the backward pass (less memory, more compute).
        placement_timeout: seconds a ``train`` trial waits for its workers to be placed before
            it fails (``WorkersNotPlaced: ...``, naming the resources; Tune's ``max_failures``
            retries it). Ray Train's own default retries forever, which hangs a search whose
            cluster lost a node for good. Raise it where an autoscaler adds nodes.
        backbone: the search's backbone in the object store, or None (each trial loads it).
        train_fn: the per-worker function of the ``train`` runner (tests substitute their own).
    """

    space: TrialConfigConverter
    storage_path: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    worker_failures: int = 0
    runner: str = "train"
    pack_size: int = 1
    pack_recompute: bool = False
    placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT_S
    backbone: SharedBackbone | None = None
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


logger = logging.getLogger(__name__)

#: Ray Train's record of a run's checkpoints, in the run's folder.
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
#: What a checkpoint folder needs for a run to resume from it (weights, config, train state).
RESUMABLE_FILES = (WEIGHTS_FILE, CONFIG_FILE, TRAIN_STATE_TENSORS, TRAIN_STATE_JSON)


def salvage_run(run_dir: Path) -> Path | None:
    """Make a trial's Ray Train run restartable when its checkpoint record is unreadable.

    Ray Train rewrites ``checkpoint_manager_snapshot.json`` in place; a controller that dies
    with its node in the middle leaves it empty (measured: 0 bytes after a node kill), and
    every restart then fails in ``TrainController.__init__`` (CheckpointManagerInitialization
    Error) until the trial has used up its retries. An unreadable record is removed, so the
    restarted controller starts, and the run's latest complete checkpoint folder (every file
    of :data:`RESUMABLE_FILES`) is returned to resume from instead (None when the record is
    readable or absent, or no folder is complete).
    """
    snapshot = run_dir / SNAPSHOT_FILE
    try:
        json.loads(snapshot.read_text())
        return None
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    snapshot.unlink(missing_ok=True)
    complete = sorted(
        d for d in run_dir.glob("epoch-*") if all((d / f).is_file() for f in RESUMABLE_FILES)
    )
    latest = complete[-1] if complete else None
    logger.warning(
        "Ray Train's checkpoint record %s was unreadable (its controller died writing it); "
        "removed, resuming from %s",
        snapshot,
        latest or "the start",
    )
    return latest


def build_trainer(
    train_config: TrainConfig, setup: TrialSetup, trial_id: str, resume: Path | None = None
) -> TorchTrainer:
    """The TorchTrainer of one trial (see the module docstring); ``resume``: a checkpoint
    folder to start from when Ray Train has none to give (see :func:`salvage_run`)."""
    resources: dict[str, float] = {"CPU": setup.cpus_per_worker}
    if setup.use_gpu:
        resources["GPU"] = setup.gpus_per_worker
    return TorchTrainer(
        setup.train_fn,
        train_loop_config={
            TRAIN_CONFIG_KEY: train_config.to_dict(),
            SHARED_BACKBONE_KEY: setup.backbone,
            RESUME_DIR_KEY: None if resume is None else str(resume),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=setup.workers,
            use_gpu=setup.use_gpu,
            resources_per_worker=resources,
        ),
        torch_config=TorchConfig(backend="nccl" if setup.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=run_name(trial_id),
            storage_path=setup.storage_path,
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            # A worker group that cannot be placed within placement_timeout fails the trial
            # (controller_failure_limit 0) instead of being retried forever.
            failure_config=ray.train.FailureConfig(  # Train V2's (mypy sees V1's)
                max_failures=setup.worker_failures,
                controller_failure_limit=0,  # type: ignore[call-arg]
            ),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1,  # the best epoch's; Ray Train always keeps the latest too
                checkpoint_score_attribute=CHECKPOINT_SCORE_KEY,
                checkpoint_score_order="max",
            ),
        ),
    )


def short_error(exc: BaseException, setup: TrialSetup | None = None) -> str:
    """``ErrorType: first line`` of the root cause of a (Ray Train) failure, at most 500 chars.

    A worker group that was not placed in time reads ``WorkersNotPlaced: ...``, naming the
    resources it waited for (from ``setup``).
    """
    controller_failure = getattr(exc, "controller_failure", None)
    if type(controller_failure).__name__ == "WorkerGroupStartupTimeoutError" and setup:
        resources = {"CPU": setup.cpus_per_worker}
        if setup.use_gpu:
            resources["GPU"] = setup.gpus_per_worker
        from ipt_ray.tuning.watchdog import describe_bundles

        return (
            f"WorkersNotPlaced: waited {setup.placement_timeout:g} s for "
            f"{describe_bundles([resources] * setup.workers)} (placement timeout)"
        )
    failures = getattr(exc, "worker_failures", None)
    if isinstance(failures, Mapping) and failures:
        exc = failures[min(failures)]
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the user's exception
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text[:500]


def train_driver_fn(config: dict[str, Any], setup: TrialSetup) -> None:
    """Run one trial: build the TrainConfig, train it with the setup's runner, raise if
    training failed.

    Args:
        config: the flat trial config sampled by Optuna (fixed settings included).
        setup: the search's shared settings (bound with ``tune.with_parameters``).

    Raises:
        TrialFailed: the config is invalid or training failed (one-line message).
    """
    trial_id = ray.tune.get_context().get_trial_id()
    try:
        train_config = setup.space.to_train_config(config)
    except Exception as exc:
        raise TrialFailed(short_error(exc)) from exc
    if setup.runner == "actor":
        try:
            train_in_trial(train_config, run_name=run_name(trial_id), shared=setup.backbone)
        except Exception as exc:
            raise TrialFailed(short_error(exc)) from exc
        return
    resume = None
    if "://" not in setup.storage_path:  # a local (shared) folder: its record can be read
        resume = salvage_run(Path(setup.storage_path) / run_name(trial_id))
    trainer = build_trainer(train_config, setup, trial_id, resume)
    # Ray Train reads it here and hands it to the controller it starts.
    os.environ[_PLACEMENT_TIMEOUT_ENV] = f"{setup.placement_timeout:g}"
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrialFailed(short_error(exc, setup)) from exc


def trainable(setup: TrialSetup) -> Any:
    """The Tune trainable of a search: :func:`train_driver_fn` bound to ``setup``.

    An ``actor`` trial holds its worker's CPUs and GPU share itself, a ``packed`` trial its
    1/pack_size share of them (its pack's server holds none); a ``train`` trial holds none
    (the TorchTrainer's workers reserve the resources).
    """
    if setup.runner == "packed":
        from ipt_ray.tuning.relay import relay_trainable

        bound = relay_trainable(
            setup.storage_path, setup.space, setup.backbone, setup.pack_recompute
        )
    else:
        bound = ray.tune.with_parameters(train_driver_fn, setup=setup)
    if setup.runner in ("actor", "packed"):
        share = setup.pack_size if setup.runner == "packed" else 1
        resources: dict[str, float] = {"cpu": setup.cpus_per_worker / share}
        if setup.use_gpu:
            resources["gpu"] = setup.gpus_per_worker / share
        if not any(resources.values()):
            resources = dict(DRIVER_RESOURCES)
        return ray.tune.with_resources(bound, resources)
    return ray.tune.with_resources(bound, dict(DRIVER_RESOURCES))


__all__ = [
    "CHECKPOINT_PATH_KEY",
    "DRIVER_RESOURCES",
    "TrialConfigConverter",
    "TrialFailed",
    "TrialSetup",
    "build_trainer",
    "short_error",
    "train_driver_fn",
    "trainable",
]
