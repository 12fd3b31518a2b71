"""Epoch time with the frozen features cached (warm) against computed live, per generator and
prompt layer.

What is cached: IDPG's pooled sentence vector (every prompt layer), and for a late prompt
(``prompt_layer`` k > 0) the text's states at the input of layer k, so that the layers below
k are not run at all. Each (generator, prompt layer) trains the same configuration (MiniLM,
`mr`, max length 64, batch 32, seed 0) in this process, cached and live alternating for
several rounds so that machine noise hits both; reports the median epoch time of each, their
ratio, and the test accuracy of each (they must agree: the cache holds what the live pass
computes). The one-off cost of filling the cache is reported separately.

    .venv/bin/python benchmarks/feature_cache.py [--rounds 3] [--max-samples 2000] [--epochs 1]
        [--generators idpg,task,ipt-encoder] [--prompt-layers 0,3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from ipt_ray.core.backbone import load_backbone
from ipt_ray.core.config import TrainConfig
from ipt_ray.data import load_task
from ipt_ray.training.loop import TrainingRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--generators", default="idpg,task,ipt-encoder")
    parser.add_argument("--prompt-layers", default="0,3")
    parser.add_argument("--out", default="benchmarks/out/feature_cache.json")
    args = parser.parse_args()
    backbone, tokenizer = load_backbone(args.model)
    task = None
    rows: list[dict[str, Any]] = []
    for generator in args.generators.split(","):
        for layer in [int(k) for k in args.prompt_layers.split(",")]:
            base = TrainConfig(
                task="mr",
                model=args.model,
                generator=generator,
                prompt_layer=layer,
                epochs=args.epochs,
                max_samples=args.max_samples,
            )
            if task is None:
                task = load_task("mr", **base.task_kwargs())
            if layer == 0 and generator != "idpg":
                continue  # nothing to cache: the prompt is at the input, no sentence vector
            # Fill the cache once (the once-per-dataset cost, reported separately).
            start = time.perf_counter()
            TrainingRun(base, task=task, backbone=backbone, tokenizer=tokenizer)
            fill = time.perf_counter() - start
            runs: dict[str, list[dict[str, float]]] = {"cached": [], "live": []}
            for _ in range(args.rounds):
                for name, cache in (("cached", True), ("live", False)):
                    config = TrainConfig(**{**base.to_dict(), "cache_features": cache})
                    run = TrainingRun(config, task=task, backbone=backbone, tokenizer=tokenizer)
                    result = run.fit()
                    runs[name].append(
                        {
                            "epoch_seconds": statistics.median(run.epoch_seconds),
                            "test_accuracy": result.metrics["test_accuracy"],
                        }
                    )
                    print(generator, layer, name, runs[name][-1], flush=True)
            cached = statistics.median(r["epoch_seconds"] for r in runs["cached"])
            live = statistics.median(r["epoch_seconds"] for r in runs["live"])
            rows.append(
                {
                    "generator": generator,
                    "prompt_layer": layer,
                    "setup_seconds_incl_cache_fill": fill,
                    "cached_epoch_seconds_median": cached,
                    "live_epoch_seconds_median": live,
                    "ratio": cached / live,
                    "test_accuracy": {k: [r["test_accuracy"] for r in v] for k, v in runs.items()},
                }
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print("\n| generator | prompt layer | cached s/epoch | live s/epoch | cached / live |"
          " test accuracy cached / live |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        acc = r["test_accuracy"]
        print(
            f"| `{r['generator']}` | {r['prompt_layer']} | {r['cached_epoch_seconds_median']:.1f}"
            f" | {r['live_epoch_seconds_median']:.1f} | {r['ratio']:.2f} | "
            f"{statistics.median(acc['cached']):.4f} / {statistics.median(acc['live']):.4f} |"
        )


if __name__ == "__main__":
    main()
