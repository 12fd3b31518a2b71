"""Per-trial overhead and in-trial throughput: a search's trials against plain processes.

A *plain* run is a fresh Python process that trains the configuration with
:class:`ipt_ray.training.loop.TrainingRun` (no Ray); its start-up is the time from just before the
process is spawned to its first optimizer step. A *trial* is the same configuration as a Ray
Tune trial holding all the machine's CPUs (``run_search`` on a local Ray started once, before
timing), with each runner: ``actor`` (the trial trains in Tune's trial process, which the next
trial reuses) and ``train`` (one Ray Train worker per trial). Its start-up is
``startup_seconds`` as the search logs it (from Tune starting the trial to its first optimizer
step). For the actor runner the first trial starts a process (cold) and later trials reuse it
(warm): both are reported. Throughput is the epoch's ``samples_per_second``, with the threads
each process used. Rounds alternate: plain, trial, plain, trial, ... (one search per runner,
one trial at a time, a plain process between trials); medians are reported. Tokenisation
caches are warmed first.

    .venv/bin/python benchmarks/trial_overhead.py [--rounds 4] [--max-samples 2000]
        [--generator task] [--runners actor,train] [--out benchmarks/out/trial_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIXED = {"task": "mr", "model": "minilm", "epochs": 1, "batch_size": 32, "max_length": 64}


def plain_child(config_json: str, spawned_at: float) -> None:
    """In the child process: train one epoch, print one JSON line."""
    import torch

    from ipt_ray.core.config import TrainConfig
    from ipt_ray.training.loop import TrainingRun

    run = TrainingRun(TrainConfig(**json.loads(config_json)))
    epochs: list[dict[str, float]] = []
    run.fit(on_epoch_end=lambda result, _: epochs.append(result.metrics))
    assert run.first_step_at is not None
    print(
        json.dumps(
            {
                "startup_seconds": run.first_step_at - spawned_at,
                "samples_per_second": epochs[0]["samples_per_second"],
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def plain_once(config: dict[str, Any]) -> dict[str, float]:
    spawned_at = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config), str(spawned_at)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def search_round(
    runner: str, config: dict[str, Any], rounds: int, cpus: int
) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """One search of ``rounds`` trials with ``runner``, a plain process after each trial."""
    from ipt_ray.tuning.progress import ProgressEvent
    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    plain: list[dict[str, float]] = []

    def between_trials(event: ProgressEvent) -> None:
        # A plain process between two trials: nothing else runs while it does.
        if event.kind == "trial_end":
            plain.append(plain_once(config))
            print(f"  plain: {plain[-1]}", flush=True)

    fixed = {k: v for k, v in config.items() if k not in ("generator", "lr")}
    space_text = (
        f"name: trial-overhead-{runner}\nfixed:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fixed.items())
        + f"search:\n  num_samples: {rounds}\n  seed: 0\n  scheduler: none\n"
        + "  max_concurrent: 1\n"
        + f"params:\n  lr: [{config['lr']}]\n"
        + f"  generator: {{choices: {{{config['generator']}: {{}}}}}}\n"
    )
    root = Path(tempfile.mkdtemp(prefix="ipt-ray-overhead-"))
    summary = run_search(
        parse_space(space_text),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "mlartifacts",
        storage=root / "ray",
        cpus_per_worker=float(cpus),
        runner=runner,
        progress=between_trials,
    )
    trials = [  # in start order
        {k: t.metrics.get(k) for k in ("startup_seconds", "samples_per_second", "torch_threads")}
        for t in summary.trials
    ]
    for t in trials:
        print(f"  {runner} trial: {t}", flush=True)
    return plain, trials


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows if r.get(key) is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--generator", default="task")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--runners", default="actor,train")
    parser.add_argument("--out", default="benchmarks/out/trial_overhead.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        plain_child(args.child[0], float(args.child[1]))
        return

    import ray

    config = {
        **FIXED,
        "generator": args.generator,
        "lr": args.lr,
        "max_samples": args.max_samples,
    }
    print("warming caches (one plain run, not counted) ...", flush=True)
    plain_once(config)
    cpus = len(os.sched_getaffinity(0))
    result: dict[str, Any] = {"config": config, "cpus": cpus, "runners": {}}
    ray.init(num_cpus=cpus, include_dashboard=True, log_to_driver=False)
    try:
        for runner in args.runners.split(","):
            plain, trials = search_round(runner, config, args.rounds, cpus)
            startups = [float(t["startup_seconds"]) for t in trials]
            row = {
                "plain": plain,
                "trials": trials,
                "plain_startup_median": median(plain, "startup_seconds"),
                "trial_startup_median": statistics.median(startups),
                "trial_startup_first": startups[0],
                "trial_startup_later_median": statistics.median(startups[1:] or startups),
                "plain_throughput_median": median(plain, "samples_per_second"),
                "trial_throughput_median": median(trials, "samples_per_second"),
            }
            row["startup_ratio"] = row["trial_startup_median"] / row["plain_startup_median"]
            row["throughput_ratio"] = (
                row["trial_throughput_median"] / row["plain_throughput_median"]
            )
            result["runners"][runner] = row
    finally:
        ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("\n| runner | plain start | trial start: median (first, later) | ratio |"
          " throughput plain / trial | ratio |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for runner, row in result["runners"].items():
        print(
            f"| {runner} | {row['plain_startup_median']:.1f} s | "
            f"{row['trial_startup_median']:.1f} s ({row['trial_startup_first']:.1f}, "
            f"{row['trial_startup_later_median']:.1f}) | {row['startup_ratio']:.2f}x | "
            f"{row['plain_throughput_median']:.1f} / {row['trial_throughput_median']:.1f} | "
            f"{row['throughput_ratio']:.3f}x |"
        )


if __name__ == "__main__":
    main()
