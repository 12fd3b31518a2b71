"""IDPG's epoch time with the frozen sentence vectors cached (warm) against computed live.

Both variants train the same configuration (MiniLM, `mr`, max length 64, batch 32, seed 0) in
this process, alternating cached / live for several rounds so that machine noise hits both;
reports the median epoch time of each, their ratio, and the test accuracy of each (they must
agree: the cache holds exactly what the live pass computes).

    .venv/bin/python benchmarks/feature_cache.py [--rounds 3] [--max-samples 2000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ipt_ray.backbone import load_backbone
from ipt_ray.config import TrainConfig
from ipt_ray.data import load_task
from ipt_ray.loop import TrainingRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/out/feature_cache.json")
    args = parser.parse_args()
    backbone, tokenizer = load_backbone(args.model)
    base = TrainConfig(
        task="mr",
        model=args.model,
        generator="idpg",
        epochs=args.epochs,
        max_samples=args.max_samples,
    )
    task = load_task("mr", **base.task_kwargs())
    # Warm the cache once (this is the once-per-dataset cost, reported separately).
    import time

    start = time.perf_counter()
    TrainingRun(base, task=task, backbone=backbone, tokenizer=tokenizer)
    warm_cost = time.perf_counter() - start
    results: dict[str, list[dict[str, float]]] = {"cached": [], "live": []}
    for _ in range(args.rounds):
        for name, cache in (("cached", True), ("live", False)):
            config = TrainConfig(**{**base.to_dict(), "cache_features": cache})
            run = TrainingRun(config, task=task, backbone=backbone, tokenizer=tokenizer)
            result = run.fit()
            results[name].append(
                {
                    "epoch_seconds": statistics.median(run.epoch_seconds),
                    "test_accuracy": result.metrics["test_accuracy"],
                }
            )
            print(name, results[name][-1], flush=True)
    cached = statistics.median(r["epoch_seconds"] for r in results["cached"])
    live = statistics.median(r["epoch_seconds"] for r in results["live"])
    summary = {
        "args": vars(args),
        "first_run_setup_seconds_incl_features": warm_cost,
        "cached_epoch_seconds_median": cached,
        "live_epoch_seconds_median": live,
        "ratio": cached / live,
        "test_accuracy": {k: [r["test_accuracy"] for r in v] for k, v in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
