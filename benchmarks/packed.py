"""Packed trials against the actor runner: memory per extra concurrent trial and throughput.

For each runner and each concurrency K (default 1, 2, 4, 8), one search on a local Ray of 2
CPUs: ``task`` on `mr` with MiniLM, 2K trials of 1 epoch on ``--max-samples`` sentences per
split, prompt lengths 8 and 16 and two learning rates (so a pack pads prompts of different
lengths into one pass), no scheduler, K at a time:

- ``actor``: K trial processes, each holding 2/K CPUs (``--cpus-per-worker 2/K``);
- ``packed``: K relays holding 2/K CPUs each, trained in one pack server process
  (``--cpus-per-worker 2 --pack-size K``);
- ``packed-recompute``: the same with ``--pack-recompute`` (activations recomputed in the
  backward pass).

A sampler adds up, every 0.5 s, the proportional set size (PSS) of every Ray process
(:func:`trial_memory.ray_worker_pss_bytes`); memory per extra trial is (peak at K - peak at
1) / (K - 1). Throughput is trial-epochs per hour of the whole search (Ray start excluded,
process start-up and evaluation included): 2K / wall seconds x 3600; the training phase alone
is K x the median trial's ``samples_per_second`` (each trial's rate while it shared the CPUs).
Both runners run side by side in one invocation; the ratio packed / actor at each K is what
README quotes.

    .venv/bin/python benchmarks/packed.py [--ks 1,2,4,8] [--runners actor,packed]
        [--max-samples 300] [--out benchmarks/out/packed.json]

``--runners`` takes ``actor``, ``packed`` and ``packed-recompute``.

Resumable: a (runner, K) already in ``--out`` with the same settings is skipped; each result
is written as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from trial_memory import PeakSampler, ray_worker_pss_bytes

GIB = 2**30


def space_text(concurrent: int, max_samples: int) -> str:
    return (
        "name: packed-bench\nfixed:\n  task: mr\n  model: minilm\n"
        f"  max_samples: {max_samples}\n  max_length: 64\n  batch_size: 32\n  epochs: 1\n"
        f"search:\n  num_samples: {2 * concurrent}\n  seed: 0\n  scheduler: none\n"
        f"  max_concurrent: {concurrent}\n  searcher: {{n_startup_trials: {2 * concurrent}}}\n"
        "params:\n  lr: [0.01, 0.03]\n  prompt_length: [8, 16]\n"
        "  generator: {choices: {task: {}}}\n"
    )


def measure(runner: str, concurrent: int, max_samples: int) -> dict[str, Any]:
    import ray

    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    root = Path(tempfile.mkdtemp(prefix="ipt-ray-packed-"))
    sampler = PeakSampler()
    peak = sampler.peak

    options: dict[str, Any] = {"runner": runner, "cpus_per_worker": 2.0 / concurrent}
    if runner.startswith("packed"):
        options = {"runner": "packed", "cpus_per_worker": 2.0, "pack_size": concurrent}
        options["pack_recompute"] = runner == "packed-recompute"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        time.sleep(3)  # Ray's prestarted idle workers settle first
        idle, _ = ray_worker_pss_bytes(os.getpid())
        sampler.start()
        started = time.perf_counter()
        summary = run_search(
            parse_space(space_text(concurrent, max_samples)),
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifact_root=root / "mlartifacts",
            storage=root / "ray",
            **options,
        )
        wall = time.perf_counter() - started
    finally:
        sampler.stop()
        ray.shutdown()
    epochs = sum(t.epochs for t in summary.trials)
    # The training phase alone (no start-up, no evaluation): each trial's samples per second
    # while it shared the CPUs with the others, times the trials that ran at once.
    rates = sorted(float(t.metrics.get("samples_per_second", 0.0)) for t in summary.trials)
    median_rate = rates[len(rates) // 2] if rates else 0.0
    return {
        "runner": runner,
        "concurrent": concurrent,
        "max_samples": max_samples,
        "options": options,
        "trials": summary.num_trials,
        "finished": summary.finished,
        "trial_epochs": epochs,
        "wall_seconds": wall,
        "trial_epochs_per_hour": epochs / wall * 3600,
        "median_trial_samples_per_second": median_rate,
        "training_samples_per_second": median_rate * concurrent,
        "idle_bytes": idle,
        "peak_bytes": peak["bytes"],
        "peak_by_name": peak["by_name"],
        "best_val_accuracy": summary.best.value if summary.best else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--runners", default="actor,packed,packed-recompute")
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/out/packed.json")
    args = parser.parse_args()
    out_path = Path(args.out)
    results: list[dict[str, Any]] = (
        json.loads(out_path.read_text())["rows"] if out_path.exists() else []
    )
    ks = [int(k) for k in args.ks.split(",")]
    for k in ks:  # side by side: both runners at one K before the next K
        for runner in args.runners.split(","):
            if any(
                r["runner"] == runner
                and r["concurrent"] == k
                and r["max_samples"] == args.max_samples
                for r in results
            ):
                continue
            row = measure(runner, k, args.max_samples)
            results.append(row)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps({"rows": results}, indent=2))
            print(
                f"{runner} K={k}: {row['finished']}/{row['trials']} trials in "
                f"{row['wall_seconds']:.0f} s, {row['trial_epochs_per_hour']:.0f} trial-epochs/h, "
                f"peak PSS {row['peak_bytes'] / GIB:.2f} GiB",
                flush=True,
            )
    summary = summarize(results, args.max_samples)
    out_path.write_text(json.dumps({"rows": results, "summary": summary}, indent=2))
    print(json.dumps(summary, indent=2))


def summarize(rows: list[dict[str, Any]], max_samples: int) -> dict[str, Any]:
    """Per runner: GiB per extra concurrent trial at each K, and throughput over the actor
    runner's at each K."""
    by = {(r["runner"], r["concurrent"]): r for r in rows if r["max_samples"] == max_samples}
    out: dict[str, Any] = {
        "extra_trial_gib": {},
        "throughput_ratio_over_actor": {},
        "training_ratio_over_actor": {},
    }
    for (runner, k), row in sorted(by.items()):
        base = by.get((runner, 1))
        if base is not None and k > 1:
            extra = (row["peak_bytes"] - base["peak_bytes"]) / (k - 1) / GIB
            out["extra_trial_gib"].setdefault(runner, {})[k] = round(extra, 3)
        actor = by.get(("actor", k))
        if runner != "actor" and actor is not None:
            ratio = row["trial_epochs_per_hour"] / actor["trial_epochs_per_hour"]
            out["throughput_ratio_over_actor"].setdefault(runner, {})[k] = round(ratio, 2)
            if actor.get("training_samples_per_second") and row.get("training_samples_per_second"):
                ratio = row["training_samples_per_second"] / actor["training_samples_per_second"]
                out["training_ratio_over_actor"].setdefault(runner, {})[k] = round(ratio, 2)
    return out


if __name__ == "__main__":
    main()
