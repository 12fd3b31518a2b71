"""Every generator on `mr` with MiniLM: test accuracy, trainable parameters, seconds per epoch.

Foundation issue's figure: max length 64, 2 epochs, each generator with its default knobs and
default learning rate, batch 32, seed 0, the full 8,484 / 1,060 / 1,061 split. Runs one
generator after another in this process (the backbone is loaded once and shared, read-only).

    .venv/bin/python benchmarks/generators_mr.py [--epochs 2] [--generators task,idpg]
        [--seeds 0] [--max-samples N] [--out benchmarks/out/generators_mr.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ipt_ray.core.backbone import load_backbone
from ipt_ray.core.config import TrainConfig
from ipt_ray.data import load_task
from ipt_ray.training.loop import TrainingRun

GENERATORS = ["task", "prefix", "ipt-lookup", "ipt-encoder", "idpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--task", default="mr")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/out/generators_mr.json")
    args = parser.parse_args()

    backbone, tokenizer = load_backbone(args.model)
    rows = []
    for name in args.generators.split(","):
        runs = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            config = TrainConfig(
                task=args.task,
                model=args.model,
                generator=name,
                epochs=args.epochs,
                max_length=args.max_length,
                seed=seed,
                max_samples=args.max_samples,
                lr=None,
            )
            task = load_task(args.task, **config.task_kwargs())
            start = time.perf_counter()
            run = TrainingRun(config, task=task, backbone=backbone, tokenizer=tokenizer)
            result = run.fit(
                on_epoch_end=lambda r, _, name=name, seed=seed: print(
                    f"  {name} seed {seed} epoch {r.epoch}: "
                    f"val_acc {r.metrics['val_accuracy']:.4f} {r.metrics['epoch_seconds']:.0f}s",
                    flush=True,
                )
            )
            runs.append(
                {
                    "seed": seed,
                    "lr": run.config.lr,
                    **result.metrics,
                    "wall_seconds": time.perf_counter() - start,
                }
            )
        acc = [r["test_accuracy"] for r in runs]
        row = {
            "generator": name,
            "lr": runs[0]["lr"],
            "trainable_params": int(runs[0]["trainable_params"]),
            "trainable_share": runs[0]["trainable_share"],
            "test_accuracy_mean": statistics.mean(acc),
            "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch"] for r in runs),
            "runs": runs,
        }
        rows.append(row)
        print(
            f"{name:12s} test_acc {row['test_accuracy_mean']:.4f}  params "
            f"{row['trainable_params']:>10,}  {row['seconds_per_epoch_median']:.0f} s/epoch",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}, indent=2)
    )
    print("\n| generator | lr | trainable params | share of backbone | test accuracy | s/epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        std = f" ± {r['test_accuracy_std']:.3f}" if len(r["runs"]) > 1 else ""
        print(
            f"| {r['generator']} | {r['lr']:g} | {r['trainable_params']:,} | "
            f"{100 * r['trainable_share']:.2f}% | {r['test_accuracy_mean']:.3f}{std} | "
            f"{r['seconds_per_epoch_median']:.0f} |"
        )


if __name__ == "__main__":
    main()
