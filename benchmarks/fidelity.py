"""The IPT paper's comparison at our scale: every generator against full fine-tuning and a probe.

Issue 7's fidelity table. On each task (default `mr` and `bbc-news`) with frozen MiniLM:

1. with ``--search`` (the default), each generator's configuration is searched first, with
   ipt-ray's own search (Ray Tune + Optuna TPE + ASHA, actor runner, local Ray): learning rate
   (log-uniform around the generator's default), prompt length {8, 16}, the generator's main
   knobs and, for input-level generators, the prompt layer {0, 3, 5} (a late prompt); 8 trials
   of at most 2 epochs on a 2,000-sentence training subset (validation whole), best by
   validation accuracy. ``--no-search`` uses each generator's defaults instead;
2. for each seed, the five generators with those settings on the full training split, full
   fine-tuning of the same backbone with the same head, pooling, batches, epochs and schedule
   (AdamW, backbone lr 5e-5, head lr 1e-3, dropout on), and a linear probe (the head alone on
   the frozen pooled features, AdamW lr 1e-2, 20 epochs over cached features). Every run
   selects its epoch by validation accuracy and reports that epoch's test accuracy.

Searches and runs are appended to ``--out`` as they finish; what is already there (same task,
method, seed, epochs, max length, sample cap, settings) is skipped, so an interrupted benchmark
continues where it stopped. ``--report`` only prints the table from ``--out``.

    .venv/bin/python benchmarks/fidelity.py [--tasks mr:2,bbc-news:3] [--seeds 0,1,2]
        [--methods task,prefix,ipt-lookup,ipt-encoder,idpg,full-ft,probe] [--max-samples N]
        [--no-search] [--search-trials 8] [--out benchmarks/out/fidelity.json] [--report]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ipt_ray.core.backbone import backbone_info, default_pooling, load_backbone, uses_token_types
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.metrics import classification_metrics
from ipt_ray.core.model import pool
from ipt_ray.data import TaskData, TokenizedSplit, batches, load_task, tokenize_task
from ipt_ray.training.loop import TrainingRun
from ipt_ray.training.setup import linear_schedule, seed_everything

GENERATORS = ["task", "prefix", "ipt-lookup", "ipt-encoder", "idpg"]
METHODS = [*GENERATORS, "full-ft", "probe"]
FT_LR, FT_HEAD_LR, PROBE_LR, PROBE_EPOCHS = 5e-5, 1e-3, 1e-2, 20
SEARCH_SAMPLES, SEARCH_EPOCHS = 2000, 2
#: Each generator's sub-space of the search: its lr range and knobs (YAML flow mappings).
SEARCH_SPACES = {
    "task": ("3.0e-3", "1.0e-1", "{init: [vocab, random], prompt_layer: [0, 3, 5]}"),
    "prefix": ("1.0e-3", "3.0e-2", "{reparam: [false, true], reparam_hidden: 128}"),
    "ipt-lookup": (
        "1.0e-3", "3.0e-2", "{mode: [input, hybrid], rank: [0, 64], prompt_layer: [0, 3, 5]}"
    ),
    "ipt-encoder": (
        "1.0e-4", "3.0e-3",
        "{encoder: [cnn, lstm, mlp], hidden: {type: int, low: 32, high: 256, log: true}, "
        "prompt_layer: [0, 3, 5]}",
    ),
    "idpg": (
        "1.0e-4", "3.0e-3",
        "{bottleneck: {type: int, low: 16, high: 128, log: true}, prompt_layer: [0, 3, 5]}",
    ),
}  # fmt: skip


def search_generator(task_name: str, generator: str, args: argparse.Namespace) -> dict[str, Any]:
    """ipt-ray's search over one generator's space on a training subset: the best settings."""
    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    low, high, knobs = SEARCH_SPACES[generator]
    text = f"""name: fidelity-{task_name}-{generator}
fixed: {{task: {task_name}, model: {args.model}, max_samples: {SEARCH_SAMPLES},
  max_length: {args.max_length}, batch_size: 32, epochs: {SEARCH_EPOCHS}, seed: 0}}
search:
  metric: val_accuracy
  mode: max
  num_samples: {args.search_trials}
  seed: 0
  max_concurrent: 2
  scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
  searcher: {{n_startup_trials: 4}}
params:
  lr: {{type: float, low: {low}, high: {high}, log: true}}
  prompt_length: [8, 16]
  generator: {{choices: {{{generator}: {knobs}}}}}
"""
    root = Path(tempfile.mkdtemp(prefix="ipt-ray-fidelity-"))
    start = time.perf_counter()
    summary = run_search(
        parse_space(text),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "mlartifacts",
        storage=root / "ray",
    )
    best = summary.best
    if best is None:
        raise RuntimeError(f"search {task_name}/{generator}: no finished trial")
    from ipt_ray.generators import get_config_class

    knobs = set(get_config_class(generator).knobs()) - {"prompt_length"}
    found = best.settings
    settings = {
        "lr": float(found["lr"]),
        "prompt_length": int(found["prompt_length"]),
        "prompt_layer": int(found.get("prompt_layer") or 0),
        "generator_options": {
            key.split(".", 1)[1]: value
            for key, value in found.items()
            if key.startswith(f"{generator}.") and key.split(".", 1)[1] in knobs
        },
    }
    return {
        "settings": settings,
        "val_accuracy": best.value,
        "trials": summary.num_trials,
        "epochs_spent": sum(t.epochs for t in summary.trials),
        "seconds": time.perf_counter() - start,
    }


def run_generator(
    name: str,
    task: TaskData,
    seed: int,
    epochs: int,
    args: argparse.Namespace,
    shared: Any,
    settings: dict[str, Any],
) -> dict[str, Any]:
    config = TrainConfig(
        task=task.name, model=args.model, generator=name, epochs=epochs,
        max_length=args.max_length, seed=seed, max_samples=args.max_samples,
        **{"lr": None, **settings},
    )  # fmt: skip
    run = TrainingRun(config, task=task, backbone=shared[0], tokenizer=shared[1])
    result = run.fit()
    return {
        "settings": settings,
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


def _settings_text(settings: dict[str, Any]) -> str:
    parts = [f"lr {settings['lr']:.2g}", f"P {settings['prompt_length']}"]
    if settings.get("prompt_layer"):
        parts.append(f"layer {settings['prompt_layer']}")
    parts += [f"{k} {v}" for k, v in sorted(settings.get("generator_options", {}).items())]
    return ", ".join(parts)


def report(state: dict[str, Any]) -> None:
    runs, searched = state["runs"], state.get("searched", {})
    print(
        "\n| task | method | settings | trainable params | share | test accuracy | seeds "
        "| s/epoch |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in dict.fromkeys(r["task"] for r in runs):
        for method in METHODS:
            rows = [r for r in runs if r["task"] == task and r["method"] == method]
            if not rows:
                continue
            acc = [r["test_accuracy"] for r in rows]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            params = rows[0]["trainable_params"]
            share = params / rows[0]["backbone_params"]
            settings = rows[0].get("settings")
            text = _settings_text(settings) if settings else f"lr {rows[0]['lr']:.2g}"
            print(
                f"| {task} | {method} | {text} | {int(params):,} | {100 * share:.2f}% | "
                f"{statistics.mean(acc):.3f} ± {sd:.3f} | {len(rows)} | "
                f"{statistics.median(r['seconds_per_epoch'] for r in rows):.0f} |"
            )
    if searched:
        print("\n| task | generator | best validation accuracy (subset search) | trials | "
              "epochs | minutes |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        for task, by_generator in searched.items():
            for generator, found in by_generator.items():
                print(
                    f"| {task} | {generator} | {found['val_accuracy']:.3f} | {found['trials']} | "
                    f"{found['epochs_spent']} | {found['seconds'] / 60:.1f} |"
                )


def save(out: Path, state: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tasks", default="bbc-news:3,mr:2", help="task:epochs,...")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--search-trials", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/out/fidelity.json")
    parser.add_argument("--report", action="store_true", help="print the table from --out and stop")
    args = parser.parse_args()
    out = Path(args.out)
    state: dict[str, Any] = (
        json.loads(out.read_text()) if out.exists() else {"runs": [], "searched": {}}
    )
    state.setdefault("searched", {})
    state.update(model=args.model, threads=torch.get_num_threads())
    runs = state["runs"]
    if args.report:
        report(state)
        return
    methods = args.methods.split(",")
    tasks = [(spec.split(":")[0], int(spec.split(":")[1])) for spec in args.tasks.split(",")]
    if args.search:
        for task_name, _ in tasks:
            found = state["searched"].setdefault(task_name, {})
            for generator in [m for m in methods if m in GENERATORS and m not in found]:
                found[generator] = search_generator(task_name, generator, args)
                save(out, state)
                print(f"{task_name} {generator} searched: {found[generator]}", flush=True)
    torch.manual_seed(0)
    shared = load_backbone(args.model)
    for task_name, epochs in tasks:
        # One split per task (seed 0) for every method and seed: seeds vary training only.
        task = load_task(task_name, seed=0, max_samples=args.max_samples)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for method in methods:
                settings: dict[str, Any] = {}
                if method in GENERATORS and args.search:
                    settings = state["searched"][task_name][method]["settings"]
                key = {"task": task_name, "method": method, "seed": seed,
                       "epochs": PROBE_EPOCHS if method == "probe" else epochs,
                       "max_length": args.max_length, "max_samples": args.max_samples,
                       "settings": settings or None}  # fmt: skip
                if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
                    continue
                start = time.perf_counter()
                if method in GENERATORS:
                    result = run_generator(method, task, seed, epochs, args, shared, settings)
                elif method == "full-ft":
                    result = run_full_ft(task, seed, epochs, args)
                else:
                    result = run_probe(task, seed, args, shared)
                runs.append({**result, **key, "wall_seconds": time.perf_counter() - start})
                save(out, state)
                print(
                    f"{task_name} {method} seed {seed}: test_acc {result['test_accuracy']:.4f} "
                    f"(best epoch {result['best_epoch']}, {time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    report(state)


if __name__ == "__main__":
    main()
