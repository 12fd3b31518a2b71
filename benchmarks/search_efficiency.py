"""Search efficiency on `mr` with MiniLM: full grid, random search, and Optuna TPE with ASHA.

One categorical space (generator x learning rate x prompt length), three ways, with the same
budget accounting: epochs trained.

1. **Grid**: every configuration trained for ``--epochs`` epochs, for real
   (:class:`ipt_ray.training.loop.TrainingRun`, the backbone loaded once). Each configuration's
   per-epoch validation accuracy is kept in a table (``--table``, reused when it exists).
2. **Random search** and 3. **TPE + ASHA** then run on that table: a trial of a configuration
   reports, epoch by epoch, what the grid measured for it. Training here repeats exactly on CPU
   (same seed, same data order: a tested property of the loop), so looking a configuration up
   is what retraining it would report. TPE + ASHA is the project's own searcher and scheduler
   (:func:`ipt_ray.tuning.plan.build_search_alg` / :func:`build_scheduler` on the space below)
   under Ray Tune, one trial at a time; random search samples configurations uniformly and
   trains each fully. Both are repeated over ``--seeds`` seeds.

For each: the best validation accuracy found against epochs spent ("best so far" curves, the
plot ``--plot``), and the epochs each needed to come within ``--tolerance`` accuracy points of
the grid's best. Goal (issue "Performance and fidelity"): TPE + ASHA within 0.5 points using at
most 25% of the grid's epochs.

    .venv/bin/python benchmarks/search_efficiency.py [--max-samples 600] [--epochs 3]
        [--seeds 5] [--trials 8] [--out benchmarks/out/search_efficiency.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

GENERATORS = ["task", "prefix"]
LRS = [3e-3, 1e-2, 3e-2]
PROMPT_LENGTHS = [4, 16]


def key(generator: str, lr: float, prompt_length: int) -> str:
    return f"{generator}|{lr:g}|{prompt_length}"


def run_grid(args: argparse.Namespace) -> dict[str, list[float]]:
    """{config key: validation accuracy per epoch}, trained for real."""
    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.data import load_task
    from ipt_ray.training.loop import TrainingRun

    backbone, tokenizer = load_backbone("minilm")
    table: dict[str, list[float]] = {}
    task = None
    for generator, lr, length in itertools.product(GENERATORS, LRS, PROMPT_LENGTHS):
        config = TrainConfig(
            task="mr",
            model="minilm",
            generator=generator,
            lr=lr,
            prompt_length=length,
            epochs=args.epochs,
            max_samples=args.max_samples,
            max_length=64,
            batch_size=32,
            seed=0,
        )
        task = task or load_task("mr", **config.task_kwargs())
        result = TrainingRun(config, task=task, backbone=backbone, tokenizer=tokenizer).fit()
        curve = [float(h.metrics["val_accuracy"]) for h in result.history]
        table[key(generator, lr, length)] = curve
        print(f"  grid {key(generator, lr, length)}: {curve}", flush=True)
    return table


def best_so_far(trials: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """[(epochs spent, best value so far)] from [(epochs of a trial, its best value)]."""
    spent, best, out = 0, 0.0, []
    for epochs, value in trials:
        spent += epochs
        best = max(best, value)
        out.append((spent, best))
    return out


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, best in curve if best >= target), None)


def random_search(table: dict[str, list[float]], seed: int, budget: int) -> list[Any]:
    rng = random.Random(seed)
    keys = sorted(table)
    trials, spent = [], 0
    while spent < budget:
        curve = table[rng.choice(keys)]
        trials.append((len(curve), max(curve)))
        spent += len(curve)
    return best_so_far(trials)


def tpe_asha(table: dict[str, list[float]], seed: int, args: argparse.Namespace) -> list[Any]:
    """The project's TPE + ASHA (one trial at a time) over the table; [(epochs, best)]."""
    import ray.tune

    from ipt_ray.tuning.plan import build_scheduler, build_search_alg
    from ipt_ray.tuning.space import parse_space

    choices = ", ".join(f"{g}: {{}}" for g in GENERATORS)
    space = parse_space(
        f"name: efficiency\nfixed: {{task: mr, model: minilm, epochs: {args.epochs}}}\n"
        f"search:\n  metric: val_accuracy\n  mode: max\n  num_samples: {args.trials}\n"
        f"  seed: {seed}\n  scheduler: {{type: asha, grace_period: 1, reduction_factor: 3}}\n"
        "  searcher: {n_startup_trials: 3}\n"
        f"params:\n  lr: {json.dumps(LRS)}\n  prompt_length: {json.dumps(PROMPT_LENGTHS)}\n"
        f"  generator: {{choices: {{{choices}}}}}\n"
    )

    def lookup(config: dict[str, Any]) -> None:
        curve = table[key(config["generator"], config["lr"], config["prompt_length"])]
        for epoch, value in enumerate(curve, start=1):
            ray.tune.report({"epoch": epoch, "val_accuracy": value})

    tuner = ray.tune.Tuner(
        lookup,
        tune_config=ray.tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            num_samples=args.trials,
            search_alg=build_search_alg(space, 1),
            scheduler=build_scheduler(space),
        ),
        run_config=ray.tune.RunConfig(
            storage_path=tempfile.mkdtemp(prefix="ipt-ray-efficiency-"), verbose=0
        ),
    )
    results = tuner.fit()
    trials = []  # in the order the trials started: the budget is spent in that order
    for result in sorted(results, key=lambda r: r.metrics_dataframe["timestamp"].min()):
        history = result.metrics_dataframe
        trials.append((int(history["epoch"].max()), float(history["val_accuracy"].max())))
    return best_so_far(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-samples", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--table", default="benchmarks/out/search_efficiency_grid.json")
    parser.add_argument("--out", default="benchmarks/out/search_efficiency.json")
    parser.add_argument("--plot", default="benchmarks/out/search_efficiency.png")
    args = parser.parse_args()

    table_path = Path(args.table)
    if table_path.exists():
        table = json.loads(table_path.read_text())
    else:
        table = run_grid(args)
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table_path.write_text(json.dumps(table, indent=2))
    grid_epochs = sum(len(c) for c in table.values())
    grid_best = max(max(c) for c in table.values())
    target = grid_best - args.tolerance

    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        curves: dict[str, list[list[Any]]] = {"random": [], "tpe+asha": []}
        for seed in range(args.seeds):
            curves["random"].append(random_search(table, seed, grid_epochs))
            curves["tpe+asha"].append(tpe_asha(table, seed, args))
    finally:
        ray.shutdown()

    summary: dict[str, Any] = {
        "args": vars(args),
        "grid": {"configs": len(table), "epochs": grid_epochs, "best_val_accuracy": grid_best},
    }
    for name, runs in curves.items():
        reach = [epochs_to_reach(c, target) for c in runs]
        final = [c[-1][1] for c in runs]
        spent = [c[-1][0] for c in runs]
        summary[name] = {
            "epochs_to_within_tolerance": reach,
            "reached": sum(r is not None for r in reach),
            "median_epochs_to_within_tolerance": statistics.median(
                [r if r is not None else float("inf") for r in reach]
            ),
            "final_best": final,
            "epochs_spent": spent,
            "curves": runs,
        }
        print(
            f"{name}: within {100 * args.tolerance:.1f} points of the grid's best "
            f"({grid_best:.4f}) in {reach} epochs (grid: {grid_epochs}); final best {final}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    plot(summary, grid_epochs, grid_best, args.plot)


def plot(summary: dict[str, Any], grid_epochs: int, grid_best: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, color in (("random", "tab:blue"), ("tpe+asha", "tab:red")):
        for i, curve in enumerate(summary[name]["curves"]):
            xs, ys = zip(*curve, strict=True)
            ax.step(xs, ys, where="post", color=color, alpha=0.6, label=name if i == 0 else None)
    ax.axhline(grid_best, color="black", linestyle="--", label="grid best")
    ax.axvline(grid_epochs, color="grey", linestyle=":", label=f"grid ({grid_epochs} epochs)")
    ax.axvline(0.25 * grid_epochs, color="grey", linestyle="-.", label="25% of the grid")
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("best validation accuracy so far")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
