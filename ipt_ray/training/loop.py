"""The training loop: plain torch, no Ray, no MLflow.

``TrainingRun(config).fit()`` trains the generator and head of one configuration on one task
with a frozen backbone: AdamW with separate learning rates for generator and head, linear
warmup then linear decay, gradient clipping, evaluation every epoch, and the best epoch's
weights kept for the final test evaluation. Under ``torch.distributed`` (set up by Ray Train
or torchrun) the model is wrapped in DDP and each rank trains on its shard of every epoch.

Seeding: one seed drives initialisation; every epoch re-seeds shuffling and dropout from
(seed, epoch). A run therefore repeats exactly on CPU, also when other runs share the process,
and a resumed run continues at the next epoch exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ipt_ray import constants as C
from ipt_ray.core import checkpoint as ckpt
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.metrics import classification_metrics
from ipt_ray.core.model import IPTModel, build_model
from ipt_ray.data import TaskData, batches, load_task, tokenize_task
from ipt_ray.errors import ConfigError, TrainingDiverged
from ipt_ray.training.features import LayerStates, layer_states, sentence_features
from ipt_ray.training.setup import (
    linear_schedule,
    make_optimizer,
    resolve_device,
    resolve_precision,
    seed_everything,
)


@dataclass
class EpochResult:
    """Metrics of one finished epoch (1-based ``epoch``); ``is_best`` on the best so far."""

    epoch: int
    metrics: dict[str, float]
    is_best: bool


@dataclass
class TrainResult:
    """The outcome of :meth:`TrainingRun.fit`.

    ``metrics`` holds the best epoch's ``val_*`` metrics, the ``test_*`` metrics of the best
    weights, ``best_epoch``, ``trainable_params``, ``backbone_params``, ``trainable_share``
    and ``seconds_per_epoch`` (mean wall time of an epoch's training phase).
    """

    metrics: dict[str, float]
    history: list[EpochResult] = field(default_factory=list)


EpochCallback = Callable[[EpochResult, "TrainingRun"], None]


class TrainingRun:
    """One configuration trained on one task. See the module docstring.

    Args:
        config: the run's settings (validated here).
        rank, world_size: this process's place under torch.distributed (1 process: 0, 1).
        device: overrides ``config.device``.
        task: an already loaded task (to share data between runs); loaded from
            ``config.task`` otherwise.
        backbone, tokenizer: an already loaded backbone to reuse (frozen, never modified).

    Raises:
        UserError: bad configuration, task or model (before any training starts).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: str | None = None,
        task: TaskData | None = None,
        backbone: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.config = config.validate()
        self.rank, self.world_size = rank, world_size
        self.device = resolve_device(device or config.device)
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        seed_everything(config.seed)
        self.task = task or load_task(config.task, **config.task_kwargs())
        model, self.tokenizer = build_model(
            config, self.task.num_labels, backbone=backbone, tokenizer=tokenizer
        )
        self.model: IPTModel = model.to(self.device)
        self.data = tokenize_task(self.task, self.tokenizer, config.max_length)
        self.features: dict[str, torch.Tensor] | None = None
        if config.cache_features and self.model.generator.needs_sentence_embedding:
            self.features = sentence_features(self.model, self.data, device=self.device)
        self.layer_states: dict[str, LayerStates] | None = None
        if config.cache_features and self.model.prompt_layer:
            self.layer_states = layer_states(self.model, self.data, device=self.device)
        self.net: nn.Module = self.model
        if world_size > 1 and torch.distributed.is_initialized():
            ids = [self.device.index] if self.device.type == "cuda" else None
            # DDP would broadcast every parameter and buffer from rank 0 into the others at
            # start (and buffers every step): the frozen backbone is the same on every rank
            # already, may be the node's shared read-only copy, and stays out of it.
            frozen = [f"backbone.{name}" for name, _ in self.model.backbone.named_parameters()]
            frozen += [f"backbone.{name}" for name, _ in self.model.backbone.named_buffers()]
            DDP = nn.parallel.DistributedDataParallel
            DDP._set_params_and_buffers_to_ignore_for_model(self.model, frozen)
            self.net = DDP(self.model, device_ids=ids)
        self.optimizer = make_optimizer(self.model, config)
        steps_per_epoch = math.ceil(self._shard_size() / config.batch_size)
        self.total_steps = steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(self.total_steps, config.warmup_ratio)
        )
        self.scaler = torch.amp.GradScaler(enabled=self.autocast_dtype == torch.float16)
        #: Back-propagates a step's (scaled) loss; a pack of runs puts its own here
        #: (:mod:`ipt_ray.training.pack`) to run one backward pass for all its members.
        self.backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
        self.epoch = 0
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epoch_seconds: list[float] = []
        #: time.time() when this process finished its first optimizer step (None before).
        self.first_step_at: float | None = None
        self.history: list[EpochResult] = []  # every epoch of the run, resumed ones included
        self.metric_name = self.task.metric
        if config.select_metric is not None:
            self.metric_name = config.select_metric.removeprefix(C.VAL_PREFIX)
            if self.metric_name == C.F1 and self.task.num_labels != 2:
                raise ConfigError(
                    f"select_metric val_f1 needs a 2-class task; {self.task.name!r} has "
                    f"{self.task.num_labels} labels (use val_f1_macro)"
                )

    # -- sizes and counts ----------------------------------------------------------------
    def _shard_size(self) -> int:
        n = len(self.data["train"])
        return len(range(self.rank, n, self.world_size))

    def param_counts(self) -> dict[str, float]:
        trainable = self.model.num_trainable_params()
        backbone = self.model.num_backbone_params()
        return {
            C.TRAINABLE_PARAMS: float(trainable),
            C.BACKBONE_PARAMS: float(backbone),
            C.TRAINABLE_SHARE: trainable / backbone,
        }

    # -- one epoch -------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _epoch_seed(self, epoch: int) -> int:
        return (self.config.seed * 100_003 + epoch) % 2**63

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self._epoch_seed(epoch))
        order = torch.randperm(len(self.data["train"]), generator=generator)
        return order[self.rank :: self.world_size]  # this rank's shard

    def _inputs(self, batch: dict[str, torch.Tensor], split: str) -> dict[str, torch.Tensor]:
        """Model inputs of a batch on the device, with cached frozen features when there are."""
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.features is not None:
            out["sentence_embedding"] = self.features[split][batch["index"]].to(self.device)
        if self.layer_states is not None:
            width = int(batch["input_ids"].shape[1])
            out["layer_states"] = (
                self.layer_states[split]
                .batch(batch["index"], width)
                .to(self.device, non_blocking=True)
            )
        return out

    def _forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net(
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("token_type_ids"),
            batch.get("sentence_embedding"),
            batch.get("layer_states"),
        )

    def train_epoch(self) -> dict[str, float]:
        """Train one epoch; returns train_loss, learning_rate, samples_per_second, epoch_seconds."""
        self.net.train()
        epoch = self.epoch + 1
        torch.manual_seed(self._epoch_seed(epoch))  # dropout: independent of other work
        total_loss, seen = 0.0, 0
        start = time.perf_counter()
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        for batch in batches(self.data["train"], self.config.batch_size, self._epoch_order(epoch)):
            batch = self._inputs(batch, "train")
            with self._autocast():
                logits = self._forward(self.net, batch)
                loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training loss became {loss.item()} in epoch {epoch} with lr "
                    f"{self.config.generator_lr:g} (head_lr {self.config.effective_head_lr:g}); "
                    "lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.backward(self.scaler.scale(loss))
            if self.config.max_grad_norm > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(trainable, self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.first_step_at is None:
                self.first_step_at = time.time()
            total_loss += loss.item() * len(batch["labels"])
            seen += len(batch["labels"])
        seconds = time.perf_counter() - start
        return {
            C.TRAIN_LOSS: total_loss / max(seen, 1),
            C.LEARNING_RATE: float(self.scheduler.get_last_lr()[0]),
            C.SAMPLES_PER_SECOND: seen * self.world_size / seconds,
            C.EPOCH_SECONDS: seconds,
        }

    @torch.no_grad()
    def predict_logits(self, split: str) -> torch.Tensor:
        """(N, C) logits of a tokenized split, in split order."""
        self.model.eval()
        out = []
        for batch in batches(self.data[split], max(self.config.batch_size, 64)):
            batch = self._inputs(batch, split)
            with self._autocast():
                logits = self._forward(self.model, batch)
            out.append(logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.task.num_labels)

    def evaluate(self, split: str) -> dict[str, float]:
        """accuracy, f1_macro, mcc (and f1 for binary tasks) on ``validation`` or ``test``."""
        preds = self.predict_logits(split).argmax(dim=-1)
        return classification_metrics(preds, self.data[split].labels, self.task.num_labels)

    # -- the whole run ---------------------------------------------------------------------
    def fit(
        self,
        *,
        on_epoch_end: EpochCallback | None = None,
        resume_from: str | Path | None = None,
    ) -> TrainResult:
        """Train the remaining epochs, then evaluate the best weights on the test split."""
        if resume_from is not None:
            self.load_checkpoint(Path(resume_from))
        history: list[EpochResult] = []
        counts = self.param_counts()
        while self.epoch < self.config.epochs:
            metrics = self.train_epoch()
            self.epoch += 1
            self.epoch_seconds.append(metrics[C.EPOCH_SECONDS])
            val = self.evaluate("validation")
            metrics.update({C.VAL_PREFIX + k: v for k, v in val.items()})
            if self.config.eval_test_every_epoch:
                metrics.update({C.TEST_PREFIX + k: v for k, v in self.evaluate("test").items()})
            score = val[self.metric_name]
            is_best = score > self.best_score
            if is_best:
                self.best_score, self.best_epoch = score, self.epoch
                self.best_state = {
                    k: v.detach().clone().cpu()
                    for k, v in self.model.trainable_state_dict().items()
                }
            metrics.update(counts)
            metrics[C.EPOCH] = float(self.epoch)
            result = EpochResult(self.epoch, metrics, is_best)
            history.append(result)
            self.history.append(result)
            if on_epoch_end is not None:
                on_epoch_end(result, self)
        return TrainResult(self.final_metrics(self.history), history)

    def final_metrics(self, history: list[EpochResult]) -> dict[str, float]:
        """Best epoch's validation metrics plus the test metrics of its weights."""
        if self.best_state is not None:
            current = self.model.trainable_state_dict()
            current = {k: v.detach().clone() for k, v in current.items()}
            self.model.load_trainable_state_dict(self.best_state)
        out: dict[str, float] = dict(self.param_counts())
        best = next((h for h in history if h.epoch == self.best_epoch), None)
        if best is not None:
            out.update({k: v for k, v in best.metrics.items() if k.startswith(C.VAL_PREFIX)})
        out.update({C.TEST_PREFIX + k: v for k, v in self.evaluate("test").items()})
        out["best_epoch"] = float(self.best_epoch)
        out[C.SECONDS_PER_EPOCH] = float(np.mean(self.epoch_seconds)) if self.epoch_seconds else 0.0
        if self.best_state is not None:
            self.model.load_trainable_state_dict(current)
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        """What ``config.json`` records: enough to rebuild the model without the task."""
        return {
            "train_config": self.config.to_dict(),
            "generator": self.config.generator,
            "generator_config": self.model.generator.config.to_dict(),
            "label_names": list(self.task.label_names),
            "num_labels": self.task.num_labels,
            "metric": self.metric_name,
            "pooling": self.model.pooling,
            "task": self.task.name,
            "is_pair": self.task.is_pair,
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            **{k: v for k, v in self.param_counts().items()},
        }

    def save_checkpoint(self, directory: str | Path, *, with_train_state: bool = True) -> None:
        """Write weights + config (+ optimizer/scheduler state).

        The files are :mod:`ipt_ray.core.checkpoint`'s.
        """
        directory = Path(directory)
        ckpt.save_weights(directory, self.model.trainable_state_dict(), self.checkpoint_meta())
        if self.best_state is not None and self.best_epoch != self.epoch:
            ckpt._atomic_save_tensors(self.best_state, directory / ckpt.BEST_WEIGHTS_FILE)
        elif (directory / ckpt.BEST_WEIGHTS_FILE).exists():
            (directory / ckpt.BEST_WEIGHTS_FILE).unlink()
        if not with_train_state:
            return
        tensors, optim_meta = ckpt.flatten_optimizer(self.optimizer.state_dict())
        meta = {
            "optimizer": optim_meta,
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epoch_seconds": self.epoch_seconds,
            # The run's per-epoch metrics: a tracker that missed an epoch fills it from here.
            "history": [
                {"epoch": h.epoch, "metrics": h.metrics, "is_best": h.is_best} for h in self.history
            ],
        }
        ckpt.save_train_state(directory, tensors, meta)

    def load_checkpoint(self, directory: Path) -> None:
        """Restore weights and, when present, the optimizer, scheduler and epoch."""
        self.model.load_trainable_state_dict(ckpt.load_weights(directory))
        best = ckpt.load_weights(directory, best=True)
        try:
            tensors, meta = ckpt.load_train_state(directory)
        except FileNotFoundError:
            return
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer(tensors, meta["optimizer"]))
        self.scheduler.load_state_dict(meta["scheduler"])
        self.epoch = int(meta["epoch"])
        self.best_score = float(meta["best_score"])
        self.best_epoch = int(meta["best_epoch"])
        self.epoch_seconds = [float(s) for s in meta["epoch_seconds"]]
        self.history = [
            EpochResult(int(h["epoch"]), dict(h["metrics"]), bool(h["is_best"]))
            for h in meta.get("history", [])
        ]
        self.best_state = {k: v.clone() for k, v in best.items()}


__all__ = ["EpochCallback", "EpochResult", "TrainResult", "TrainingRun"]
