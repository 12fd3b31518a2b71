"""The per-rank train function of a trial: ``train_fn_per_worker(config)``.

Ray Train runs this function once per DDP worker. It builds a :class:`~ipt_ray.loop.TrainingRun`
(plain torch), resumes it from the trial's latest Ray Train checkpoint if there is one, and
turns every finished epoch into one ``ray.train.report``:

- every rank reports the same metrics (Ray Train's report is a barrier: all ranks must call it
  equally often); only rank 0 attaches a checkpoint, written by
  :meth:`~ipt_ray.loop.TrainingRun.save_checkpoint` to a scratch directory
  (:func:`scratch_dir`) that Ray Train copies into the run's storage;
- the metrics are the epoch's :attr:`~ipt_ray.loop.EpochResult.metrics` (``epoch`` 1-based,
  the time attribute of ASHA and the step in MLflow) plus ``node`` (the hosts of all ranks),
  ``wall_seconds`` (since this worker started) and ``checkpoint_score`` (the epoch when it is
  the best so far by the loop's selection metric, else 0: which checkpoint to keep); the first
  report of this worker also carries ``first_step_unix`` (when its first optimizer step ended)
  and ``torch_threads``;
- the last epoch is reported only after :meth:`~ipt_ray.loop.TrainingRun.fit` returns, merged
  with the run's final metrics: ``test_*`` of the best weights, ``best_epoch``,
  ``best_val_*`` (the best epoch's validation metrics), ``seconds_per_epoch`` and, under DDP,
  ``replica_weight_hashes`` and ``replicas_in_sync``. One report per epoch keeps ASHA (which
  stops a trial at ``epoch >= max_t``) from dropping a separate final report, and the test
  split is evaluated once per trial, not once per epoch.

No MLflow here: the driver-side Tune callback in :mod:`ipt_ray.tracking` logs what is reported.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
import ray.train.torch
import torch

from ipt_ray import constants as C

if TYPE_CHECKING:
    from ipt_ray.config import TrainConfig
    from ipt_ray.loop import EpochResult, TrainingRun

#: Key of ``train_loop_config`` holding ``TrainConfig.to_dict()``.
TRAIN_CONFIG_KEY = "train_config"
#: Reported with every result: the hosts of all ranks, comma-separated, sorted.
NODE_KEY = "node"
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
#: Prefix of the best epoch's validation metrics in the last result (``best_val_accuracy``).
BEST_PREFIX = "best_"
BEST_EPOCH_KEY = "best_epoch"


def node_name() -> str:
    """``hostname (ip, node 1a2b3c4d)`` of this process's Ray node.

    The short Ray node id tells apart nodes that share a host and an address (a local
    multi-node cluster on one machine).
    """
    try:
        ip = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # outside a Ray worker
        ip, node_id = "?", "?"
    return f"{socket.gethostname()} ({ip}, node {node_id})"


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


def scratch_dir(run_name: str, rank: int) -> Path:
    """Where a worker writes checkpoints before Ray Train copies them to storage.

    One fixed directory per trial and rank (not a fresh ``mkdtemp``), so that what a killed
    worker leaves behind (an ASHA stop, Ctrl-C) is bounded, removed when the trial restarts,
    and found by :func:`remove_scratch_dirs` at the end of a search.
    """
    return Path(tempfile.gettempdir()) / f"ipt-ray-ckpt-{run_name}-rank{rank}"


def remove_scratch_dirs(run_name: str) -> None:
    """Remove the scratch directories of every rank of a trial on this machine."""
    for path in Path(tempfile.gettempdir()).glob(f"ipt-ray-ckpt-{run_name}-rank*"):
        shutil.rmtree(path, ignore_errors=True)


def _device(config: TrainConfig) -> str | None:
    """The device Ray Train assigned to this worker when it holds a GPU; else the config's."""
    if config.device != "cpu" and torch.cuda.is_available():
        return str(ray.train.torch.get_device())
    return None


class _Reporter:
    """Turns epochs into ``ray.train.report`` calls (see the module docstring)."""

    def __init__(
        self, *, rank: int, world_size: int, epochs: int, node: str, scratch: Path
    ) -> None:
        self.rank, self.world_size, self.epochs, self.node = rank, world_size, epochs, node
        self.scratch = scratch
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
        checkpoint = ray.train.Checkpoint.from_directory(directory) if directory else None
        try:
            ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_dir_name=f"epoch-{epoch:04d}" if checkpoint else None,
            )
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


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Train one trial's configuration on this rank and report every epoch to Ray Train.

    Args:
        config: ``{"train_config": TrainConfig.to_dict()}`` (the ``train_loop_config`` built by
            :func:`ipt_ray.driver.train_driver_fn`).

    Raises:
        UserError: the configuration, task or backbone cannot be used (the trial fails).
    """
    # Imported here: the Tune trial process imports this module only to pickle a reference
    # to this function, and need not load transformers.
    from ipt_ray.config import TrainConfig
    from ipt_ray.loop import TrainingRun

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    train_config = TrainConfig.from_dict(config[TRAIN_CONFIG_KEY])
    nodes = _all_gather(node_name(), world_size)
    reporter = _Reporter(
        rank=rank,
        world_size=world_size,
        epochs=train_config.epochs,
        node=", ".join(sorted(set(nodes))),
        scratch=scratch_dir(context.get_experiment_name(), rank),
    )
    run = TrainingRun(train_config, rank=rank, world_size=world_size, device=_device(train_config))
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            result = run.fit(on_epoch_end=reporter.on_epoch_end, resume_from=directory)
    else:
        result = run.fit(on_epoch_end=reporter.on_epoch_end)
    reporter.finish(result.metrics, run)


__all__ = [
    "BEST_EPOCH_KEY",
    "BEST_PREFIX",
    "CHECKPOINT_SCORE_KEY",
    "NODE_KEY",
    "REPLICAS_IN_SYNC_KEY",
    "REPLICA_HASHES_KEY",
    "TRAIN_CONFIG_KEY",
    "WALL_SECONDS_KEY",
    "node_name",
    "remove_scratch_dirs",
    "scratch_dir",
    "train_fn_per_worker",
    "weights_hash",
]
