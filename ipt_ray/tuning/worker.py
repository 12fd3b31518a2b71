"""How a trial trains and reports: ``train_fn_per_worker(config)`` and ``train_in_trial(...)``.

Both build a :class:`~ipt_ray.training.loop.TrainingRun` (plain torch) from the process's warm
backbone and task (:mod:`ipt_ray.training.warm`, over the node's shared weights when the search
published them), resume it from the trial's latest checkpoint if there is one, and turn every
finished epoch into one report:

- :func:`train_fn_per_worker` runs once per DDP worker of a Ray Train run (the ``train``
  runner) and reports with ``ray.train.report``;
- :func:`train_in_trial` runs inside Tune's trial process (the ``actor`` runner, one process
  per trial, reused by the next trial) and reports with ``ray.tune.report``.

What is reported is the same either way:

- every rank reports the same metrics (Ray Train's report is a barrier: all ranks must call it
  equally often); only rank 0 attaches a checkpoint, written by
  :meth:`~ipt_ray.training.loop.TrainingRun.save_checkpoint` to a scratch directory
  (:func:`scratch_dir`) that Ray copies into the run's storage;
- the metrics are the epoch's :attr:`~ipt_ray.training.loop.EpochResult.metrics` (``epoch`` 1-based,
  the time attribute of ASHA and the step in MLflow) plus ``node`` (the hosts of all ranks),
  ``wall_seconds`` (since this worker started) and ``checkpoint_score`` (the epoch when it is
  the best so far by the loop's selection metric, else 0: which checkpoint to keep); the first
  report of this worker also carries ``first_step_unix`` (when its first optimizer step ended)
  and ``torch_threads``;
- the last epoch is reported only after :meth:`~ipt_ray.training.loop.TrainingRun.fit` returns,
  merged with the run's final metrics: ``test_*`` of the best weights, ``best_epoch``,
  ``best_val_*`` (the best epoch's validation metrics), ``seconds_per_epoch`` and, under DDP,
  ``replica_weight_hashes`` and ``replicas_in_sync``. One report per epoch keeps ASHA (which
  stops a trial at ``epoch >= max_t``) from dropping a separate final report, and the test
  split is evaluated once per trial, not once per epoch.

No MLflow here: the driver-side Tune callback in :mod:`ipt_ray.tracking` logs what is reported.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
import ray.train.torch
import ray.tune
import torch

from ipt_ray import constants as C
from ipt_ray.tracking.schema import BEST_PREFIX, NODE_RESULT_KEY
from ipt_ray.tuning.trial_io import node_name, report_to_tune, scratch_dir

if TYPE_CHECKING:
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.training.loop import EpochResult, TrainingRun
    from ipt_ray.tuning.shared_backbone import SharedBackbone

#: Key of ``train_loop_config`` holding ``TrainConfig.to_dict()``.
TRAIN_CONFIG_KEY = "train_config"
#: Key of ``train_loop_config`` holding a checkpoint folder to resume from when Ray Train has
#: none (its record of the run was unreadable; see ipt_ray.tuning.trial.salvage_run), or None.
RESUME_DIR_KEY = "resume_dir"
#: Key of ``train_loop_config`` holding the search's :class:`SharedBackbone` (or None).
SHARED_BACKBONE_KEY = "shared_backbone"
#: Reported with every result: the hosts of all ranks, comma-separated, sorted (the tracker
#: tags the trial's run with it).
NODE_KEY = NODE_RESULT_KEY
#: Reported with every result: seconds since this worker started (model loading included).
WALL_SECONDS_KEY = "wall_seconds"
#: Reported in the last result under DDP: one short hash of the trainable weights per rank.
REPLICA_HASHES_KEY = "replica_weight_hashes"
#: Reported in the last result under DDP: 1.0 when every rank ends with the same weights.
REPLICAS_IN_SYNC_KEY = "replicas_in_sync"
#: Reported with every checkpoint: its epoch if the loop found it the best so far, else 0.
#: Ray Train keeps the checkpoint with the highest score (and the latest), and the MLflow
#: tracker uploads that one: the weights that ``test_*`` and ``best_val_*`` describe.
CHECKPOINT_SCORE_KEY = "checkpoint_score"
#: Prefix of the best epoch's validation metrics in the last result (``best_val_accuracy``):
#: tracking.schema's, which the tracker and ``ipt-ray best`` read.
BEST_EPOCH_KEY = "best_epoch"


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """A short sha256 over the tensors of a state dict (sorted keys, raw CPU bytes)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def _all_gather(value: Any, world_size: int) -> list[Any]:
    """Every rank's ``value`` in rank order (just ``[value]`` without torch.distributed)."""
    if world_size <= 1 or not torch.distributed.is_initialized():
        return [value]
    out: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(out, value)
    return out


def _device(config: TrainConfig) -> str | None:
    """The device Ray Train assigned to this worker when it holds a GPU; else the config's."""
    if config.device != "cpu" and torch.cuda.is_available():
        return str(ray.train.torch.get_device())
    return None


#: ``report(metrics, checkpoint directory or None, epoch)``: hands one epoch to Ray; the
#: directory is removed afterwards.
ReportFn = Callable[[dict[str, Any], "str | None", int], None]


def report_to_train(metrics: dict[str, Any], directory: str | None, epoch: int) -> None:
    """Report to Ray Train (the checkpoint lands in the Train run as ``epoch-NNNN``)."""
    checkpoint = ray.train.Checkpoint.from_directory(directory) if directory else None
    ray.train.report(
        metrics,
        checkpoint=checkpoint,
        checkpoint_dir_name=f"epoch-{epoch:04d}" if checkpoint else None,
    )


class _Reporter:
    """Turns epochs into reports (see the module docstring)."""

    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        epochs: int,
        node: str,
        scratch: Path,
        report: ReportFn,
    ) -> None:
        self.rank, self.world_size, self.epochs, self.node = rank, world_size, epochs, node
        self.scratch = scratch
        self.report = report
        shutil.rmtree(scratch, ignore_errors=True)  # left by an earlier, killed attempt
        self.started = time.perf_counter()
        # The last epoch's metrics and checkpoint directory, reported after fit() returns.
        self.pending: tuple[dict[str, Any], str | None] | None = None
        self.first_step_sent = False

    def _common(self) -> dict[str, Any]:
        return {NODE_KEY: self.node, WALL_SECONDS_KEY: time.perf_counter() - self.started}

    def _save(self, run: TrainingRun) -> str | None:
        if self.rank != 0:
            return None
        directory = self.scratch / f"epoch-{run.epoch:04d}"
        shutil.rmtree(directory, ignore_errors=True)
        run.save_checkpoint(directory)
        return str(directory)

    def _report(self, metrics: dict[str, Any], directory: str | None, epoch: int) -> None:
        try:
            self.report(metrics, directory, epoch)
        finally:
            if directory:
                shutil.rmtree(directory, ignore_errors=True)

    def on_epoch_end(self, result: EpochResult, run: TrainingRun) -> None:
        metrics = {
            **result.metrics,
            C.EPOCH: result.epoch,
            CHECKPOINT_SCORE_KEY: float(result.epoch) if result.is_best else 0.0,
            **self._common(),
        }
        if run.first_step_at is not None and not self.first_step_sent:
            metrics[C.FIRST_STEP_UNIX] = run.first_step_at
            metrics[C.TORCH_THREADS] = torch.get_num_threads()
            metrics[C.DATASET] = json.dumps(run.task.describe())
            self.first_step_sent = True
        directory = self._save(run)
        if result.epoch >= self.epochs:
            self.pending = (metrics, directory)
            return
        self._report(metrics, directory, result.epoch)

    def finish(self, final: dict[str, float], run: TrainingRun) -> None:
        """Report the last epoch merged with the run's final (best-epoch and test) metrics."""
        extra: dict[str, Any] = {}
        for key, value in final.items():
            if key.startswith(C.VAL_PREFIX):
                extra[BEST_PREFIX + key] = value
            else:
                extra[key] = value
        if self.world_size > 1:
            hashes = _all_gather(weights_hash(run.model.trainable_state_dict()), self.world_size)
            extra[REPLICA_HASHES_KEY] = ",".join(hashes)
            extra[REPLICAS_IN_SYNC_KEY] = float(len(set(hashes)) == 1)
        if self.pending is None:
            # Resumed after the last epoch had been checkpointed: nothing left to train.
            metrics: dict[str, Any] = {
                **{k: v for k, v in final.items() if k.startswith(C.VAL_PREFIX)},
                C.EPOCH: run.epoch,
            }
            directory = None
        else:
            metrics, directory = self.pending
        self._report({**metrics, **extra, **self._common()}, directory, int(metrics[C.EPOCH]))


def _train(
    train_config: TrainConfig,
    *,
    rank: int,
    world_size: int,
    node: str,
    scratch: Path,
    report: ReportFn,
    checkpoint: Any,
    device: str | None,
    shared: SharedBackbone | None,
    on_built: Callable[[TrainingRun], None] | None = None,
) -> None:
    """Train ``train_config`` on this rank, resuming ``checkpoint`` (a Ray Checkpoint or None),
    and report every epoch through ``report``; ``on_built`` sees the run before it trains (a
    pack attaches it)."""
    # Imported here: the driver and Tune's trial process of a Ray Train run import this
    # module only to pickle a reference to a function, and need not load transformers.
    from ipt_ray.training import warm
    from ipt_ray.training.loop import TrainingRun

    reporter = _Reporter(
        rank=rank,
        world_size=world_size,
        epochs=train_config.epochs,
        node=node,
        scratch=scratch,
        report=report,
    )
    backbone, tokenizer = warm.backbone(train_config, shared)
    run = TrainingRun(
        train_config,
        rank=rank,
        world_size=world_size,
        device=device,
        task=warm.task(train_config),
        backbone=backbone,
        tokenizer=tokenizer,
    )
    if on_built is not None:
        on_built(run)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            result = run.fit(on_epoch_end=reporter.on_epoch_end, resume_from=directory)
    else:
        result = run.fit(on_epoch_end=reporter.on_epoch_end)
    reporter.finish(result.metrics, run)


def _resume_checkpoint(folder: str | None) -> Any:
    """A Ray Checkpoint of ``folder`` (None for None)."""
    return None if folder is None else ray.train.Checkpoint.from_directory(folder)


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Train one trial's configuration on this rank and report every epoch to Ray Train.

    Args:
        config: ``{"train_config": TrainConfig.to_dict(), "shared_backbone": SharedBackbone
            or None}`` (the ``train_loop_config`` built by :mod:`ipt_ray.tuning.trial`).

    Raises:
        UserError: the configuration, task or backbone cannot be used (the trial fails).
    """
    from ipt_ray.core.config import TrainConfig

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    train_config = TrainConfig.from_dict(config[TRAIN_CONFIG_KEY])
    nodes = _all_gather(node_name(), world_size)
    _train(
        train_config,
        rank=rank,
        world_size=world_size,
        node=", ".join(sorted(set(nodes))),
        scratch=scratch_dir(context.get_experiment_name(), rank),
        report=report_to_train,
        checkpoint=ray.train.get_checkpoint() or _resume_checkpoint(config.get(RESUME_DIR_KEY)),
        device=_device(train_config),
        shared=config.get(SHARED_BACKBONE_KEY),
    )


def train_in_trial(
    train_config: TrainConfig, *, run_name: str, shared: SharedBackbone | None = None
) -> None:
    """Train one trial's configuration in this (Tune trial) process and report to Tune.

    One process, no torch.distributed; the device is the config's (``auto``: the GPU Ray
    assigned to the trial, if any). Resumes from the trial's latest Tune checkpoint. Frees
    the run's memory when it ends, so a process waiting for its next trial holds little more
    than the backbone.

    Raises:
        UserError: the configuration, task or backbone cannot be used (the trial fails).
    """
    try:
        _train(
            train_config,
            rank=0,
            world_size=1,
            node=node_name(),
            scratch=scratch_dir(run_name, 0),
            report=report_to_tune,
            checkpoint=ray.tune.get_checkpoint(),
            device=None,
            shared=shared,
        )
    finally:
        from ipt_ray.training import warm

        warm.release_memory()


__all__ = [
    "BEST_EPOCH_KEY",
    "CHECKPOINT_SCORE_KEY",
    "NODE_KEY",
    "REPLICAS_IN_SYNC_KEY",
    "REPLICA_HASHES_KEY",
    "RESUME_DIR_KEY",
    "SHARED_BACKBONE_KEY",
    "TRAIN_CONFIG_KEY",
    "WALL_SECONDS_KEY",
    "ReportFn",
    "report_to_train",
    "train_fn_per_worker",
    "train_in_trial",
    "weights_hash",
]
