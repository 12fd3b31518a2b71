"""The IPT paper's comparison at our scale: every generator against full fine-tuning and a probe.

Issue 7's fidelity table. On each task (default `mr` and `bbc-news`) with frozen MiniLM, for
each seed: the five generators (each with its default knobs and learning rate: see the note
in README on why they are not searched per seed here), full fine-tuning of the same backbone
with the same head, pooling, batches, epochs and schedule (AdamW, backbone lr 5e-5, head lr
1e-3, dropout on), and a linear probe (the head alone on the frozen pooled features, AdamW lr
1e-2, 20 epochs over cached features). Every run selects its epoch by validation accuracy and
reports that epoch's test accuracy.

Runs are appended to ``--out`` as they finish; a run already there (same task, method, seed,
epochs, max length, sample cap) is skipped, so an interrupted benchmark continues where it
stopped. ``--report`` only prints the table from ``--out``.

    .venv/bin/python benchmarks/fidelity.py [--tasks mr:2,bbc-news:3] [--seeds 0,1,2]
        [--methods task,prefix,ipt-lookup,ipt-encoder,idpg,full-ft,probe] [--max-samples N]
        [--out benchmarks/out/fidelity.json] [--report]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ipt_ray.backbone import backbone_info, default_pooling, load_backbone, uses_token_types
from ipt_ray.config import TrainConfig
from ipt_ray.data import TaskData, TokenizedSplit, load_task, tokenize_task
from ipt_ray.loop import TrainingRun, batches, linear_schedule, seed_everything
from ipt_ray.metrics import classification_metrics
from ipt_ray.model import pool

GENERATORS = ["task", "prefix", "ipt-lookup", "ipt-encoder", "idpg"]
METHODS = [*GENERATORS, "full-ft", "probe"]
FT_LR, FT_HEAD_LR, PROBE_LR, PROBE_EPOCHS = 5e-5, 1e-3, 1e-2, 20


def run_generator(
    name: str, task: TaskData, seed: int, epochs: int, args: argparse.Namespace, shared: Any
) -> dict[str, Any]:
    config = TrainConfig(
        task=task.name, model=args.model, generator=name, epochs=epochs,
        max_length=args.max_length, seed=seed, max_samples=args.max_samples, lr=None,
    )  # fmt: skip
    run = TrainingRun(config, task=task, backbone=shared[0], tokenizer=shared[1])
    result = run.fit()
    return {
        "lr": run.config.lr,
        "trainable_params": result.metrics["trainable_params"],
        "backbone_params": result.metrics["backbone_params"],
        "test_accuracy": result.metrics["test_accuracy"],
        "best_val_accuracy": result.metrics["val_accuracy"],
        "best_epoch": result.metrics["best_epoch"],
        "seconds_per_epoch": result.metrics["seconds_per_epoch"],
    }


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
    epoch; return the best validation epoch with its test accuracy.

    ``logits_of(batch, split)`` maps a batch of :func:`ipt_ray.loop.batches` to (B, C) logits.
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


def run_full_ft(task: TaskData, seed: int, epochs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every backbone weight trained, with the generators' pooling and a fresh linear head."""
    seed_everything(seed)
    backbone, tokenizer = load_backbone(args.model)  # a fresh copy: this one is changed
    backbone.requires_grad_(True)
    backbone.train()  # dropout on, as fine-tuning does
    pooling = default_pooling(backbone_info(backbone, with_embeddings=False))
    token_types = uses_token_types(backbone)
    head = nn.Linear(int(backbone.config.hidden_size), task.num_labels)
    data = tokenize_task(task, tokenizer, args.max_length)

    def logits_of(batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if token_types and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        hidden = backbone(**kwargs).last_hidden_state
        return head(pool(hidden, batch["attention_mask"], pooling))

    params = [
        {"params": list(backbone.parameters()), "lr": FT_LR},
        {"params": list(head.parameters()), "lr": FT_HEAD_LR},
    ]
    out = fit_classifier(logits_of, params, [backbone, head], data, task.num_labels, epochs, seed)
    return {**out, "lr": FT_LR, "backbone_params": sum(p.numel() for p in backbone.parameters())}


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


def report(runs: list[dict[str, Any]]) -> None:
    print("\n| task | method | trainable params | share | test accuracy | seeds | s/epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task in dict.fromkeys(r["task"] for r in runs):
        for method in METHODS:
            rows = [r for r in runs if r["task"] == task and r["method"] == method]
            if not rows:
                continue
            acc = [r["test_accuracy"] for r in rows]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            params = rows[0]["trainable_params"]
            share = params / rows[0]["backbone_params"]
            print(
                f"| {task} | {method} | {int(params):,} | {100 * share:.2f}% | "
                f"{statistics.mean(acc):.3f} ± {sd:.3f} | {len(rows)} | "
                f"{statistics.median(r['seconds_per_epoch'] for r in rows):.0f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tasks", default="bbc-news:3,mr:2", help="task:epochs,...")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/out/fidelity.json")
    parser.add_argument("--report", action="store_true", help="print the table from --out and stop")
    args = parser.parse_args()
    out = Path(args.out)
    runs: list[dict[str, Any]] = json.loads(out.read_text())["runs"] if out.exists() else []
    if args.report:
        report(runs)
        return
    torch.manual_seed(0)
    shared = load_backbone(args.model)
    for spec in args.tasks.split(","):
        task_name, epochs = spec.split(":")[0], int(spec.split(":")[1])
        # One split per task (seed 0) for every method and seed: seeds vary training only.
        task = load_task(task_name, seed=0, max_samples=args.max_samples)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for method in args.methods.split(","):
                key = {"task": task_name, "method": method, "seed": seed,
                       "epochs": PROBE_EPOCHS if method == "probe" else epochs,
                       "max_length": args.max_length, "max_samples": args.max_samples}  # fmt: skip
                if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
                    continue
                start = time.perf_counter()
                if method in GENERATORS:
                    result = run_generator(method, task, seed, epochs, args, shared)
                elif method == "full-ft":
                    result = run_full_ft(task, seed, epochs, args)
                else:
                    result = run_probe(task, seed, args, shared)
                runs.append({**key, **result, "wall_seconds": time.perf_counter() - start})
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(
                    json.dumps(
                        {"model": args.model, "threads": torch.get_num_threads(), "runs": runs},
                        indent=1,
                    )
                )
                print(
                    f"{task_name} {method} seed {seed}: test_acc {result['test_accuracy']:.4f} "
                    f"(best epoch {result['best_epoch']}, {time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    report(runs)


if __name__ == "__main__":
    main()
