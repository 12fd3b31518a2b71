"""The fidelity table's reference rows: full fine-tuning, LoRA through PEFT and a linear probe.

Each trains a linear head on the backbone's pooled text states (the generators' pooling, so
every row classifies the same way) with :func:`fit_classifier`; only what trains differs:
every weight (full fine-tuning), low-rank updates of the attention's query and value
projections (LoRA, Hu et al., 2021, through the real ``peft`` package), or the head alone on
the frozen features (probe). Used by ``benchmarks/fidelity.py``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ipt_ray.core.backbone import backbone_info, default_pooling, load_backbone, uses_token_types
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.metrics import classification_metrics
from ipt_ray.core.model import pool
from ipt_ray.data import TaskData, TokenizedSplit, batches, tokenize_task
from ipt_ray.training.loop import TrainingRun
from ipt_ray.training.setup import linear_schedule, seed_everything

FT_LR, HEAD_LR, PROBE_LR, PROBE_EPOCHS = 5e-5, 1e-3, 1e-2, 20
#: LoRA's rank, scaling and dropout on the query and value projections: r = 8 on MiniLM is
#: 73,728 parameters (0.32 %), the budget of the instance-wise generators (0.3 to 1.5 %).
LORA_RANK, LORA_ALPHA, LORA_DROPOUT, LORA_TARGETS = 8, 16, 0.1, ["query", "value"]
LORA_LR = 1e-3  # without a search (--no-search)


def fit_classifier(
    logits_of: Callable[[dict[str, torch.Tensor], str], torch.Tensor],
    params: list[dict[str, Any]],
    modules: list[nn.Module],
    data: dict[str, TokenizedSplit],
    num_labels: int,
    epochs: int,
    seed: int,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Train ``params`` on the train split (warmup 6%, linear decay, clip 1.0); evaluate each
    epoch; return the best validation epoch with its test accuracy and seconds per epoch
    (training only, evaluation left out).

    ``logits_of(batch, split)`` maps a batch of :func:`ipt_ray.data.batches` to (B, C) logits.
    """
    optimizer = torch.optim.AdamW(params, weight_decay=0.01)
    steps = math.ceil(len(data["train"]) / batch_size) * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(steps, 0.06))
    trainable = [p for g in params for p in g["params"]]
    best: dict[str, Any] = {"best_val_accuracy": -1.0}
    seconds = []
    for epoch in range(1, epochs + 1):
        for m in modules:
            m.train()
        order = torch.randperm(
            len(data["train"]), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
        )
        start = time.perf_counter()
        for batch in batches(data["train"], batch_size, order):
            loss = nn.functional.cross_entropy(logits_of(batch, "train"), batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
        seconds.append(time.perf_counter() - start)
        for m in modules:
            m.eval()
        acc = {}
        with torch.no_grad():
            for split in ("validation", "test"):
                preds = torch.cat(
                    [logits_of(b, split).argmax(-1) for b in batches(data[split], 128)]
                )
                acc[split] = classification_metrics(preds, data[split].labels, num_labels)[
                    "accuracy"
                ]
        if acc["validation"] > best["best_val_accuracy"]:
            best = {
                "best_val_accuracy": acc["validation"],
                "test_accuracy": acc["test"],
                "best_epoch": epoch,
            }
    return {
        **best,
        "seconds_per_epoch": statistics.mean(seconds),
        "trainable_params": sum(p.numel() for p in trainable),
    }


def _fit_backbone(
    net: nn.Module,
    trained: list[nn.Parameter],
    lr: float,
    task: TaskData,
    seed: int,
    epochs: int,
    args: argparse.Namespace,
    tokenizer: Any,
    backbone_params: int,
) -> dict[str, Any]:
    """Train ``trained`` (weights of ``net``, dropout on) and a fresh head on pooled states."""
    pooling = default_pooling(backbone_info(net, with_embeddings=False))
    token_types = uses_token_types(net)
    head = nn.Linear(int(net.config.hidden_size), task.num_labels)
    data = tokenize_task(task, tokenizer, args.max_length)

    def logits_of(batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if token_types and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        hidden = net(**kwargs).last_hidden_state
        return head(pool(hidden, batch["attention_mask"], pooling))

    params = [
        {"params": trained, "lr": lr},
        {"params": list(head.parameters()), "lr": HEAD_LR},
    ]
    out = fit_classifier(logits_of, params, [net, head], data, task.num_labels, epochs, seed)
    return {**out, "lr": lr, "backbone_params": backbone_params}


def run_full_ft(task: TaskData, seed: int, epochs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every backbone weight trained (backbone lr 5e-5, head 1e-3, dropout on)."""
    seed_everything(seed)
    backbone, tokenizer = load_backbone(args.model)  # a fresh copy: this one is changed
    backbone.requires_grad_(True)
    weights = list(backbone.parameters())
    total = sum(p.numel() for p in weights)
    return _fit_backbone(backbone, weights, FT_LR, task, seed, epochs, args, tokenizer, total)


def run_lora(
    task: TaskData, seed: int, epochs: int, lr: float, args: argparse.Namespace
) -> dict[str, Any]:
    """LoRA (rank 8, alpha 16, dropout 0.1) on every layer's query and value projections,
    through ``peft.get_peft_model``; the backbone's own weights stay frozen, its dropout on as
    in fine-tuning."""
    from peft import LoraConfig, get_peft_model

    seed_everything(seed)
    backbone, tokenizer = load_backbone(args.model)
    total = sum(p.numel() for p in backbone.parameters())
    config = LoraConfig(
        r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
        target_modules=LORA_TARGETS,
    )  # fmt: skip
    net = get_peft_model(backbone, config)
    trained = [p for p in net.parameters() if p.requires_grad]
    return _fit_backbone(net, trained, lr, task, seed, epochs, args, tokenizer, total)


def run_probe(task: TaskData, seed: int, args: argparse.Namespace, shared: Any) -> dict[str, Any]:
    """The head alone on the frozen backbone's pooled features (cached once per task)."""
    seed_everything(seed)
    config = TrainConfig(
        task=task.name, model=args.model, generator="idpg", max_length=args.max_length,
        seed=seed, max_samples=args.max_samples,
    )  # fmt: skip
    run = TrainingRun(config, task=task, backbone=shared[0], tokenizer=shared[1])
    assert run.features is not None  # idpg reads the pooled features, so the run computed them
    features = run.features
    head = nn.Linear(features["train"].shape[1], task.num_labels)

    def logits_of(batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        return head(features[split][batch["index"]])

    params = [{"params": list(head.parameters()), "lr": PROBE_LR}]
    out = fit_classifier(logits_of, params, [head], run.data, task.num_labels, PROBE_EPOCHS, seed)
    return {**out, "lr": PROBE_LR, "backbone_params": run.model.num_backbone_params()}
