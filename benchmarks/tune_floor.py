"""Ray Tune's own cost between trials on this machine, without ipt-ray: the floor under
``benchmarks/scale.py``'s overhead.

Trivial function trials (two reports, 0.5 s of sleep before each), 2 at a time, reused
actors, as ipt-ray's actor runner runs them. Modes: ``plain``; ``ckpt`` (a 100 kB checkpoint
with each report); ``ckpt-optuna`` (and Optuna's TPE proposing them). Reports the search's
span against the ideal (the trials' own time, ``on_trial_start`` to ``on_trial_complete`` in
the driver, over 2) and the median gap from a trial's end to the next trial's start.

    IPT_RAY_LOCK=/tmp/ipt-ray-ray.lock .venv/bin/python benchmarks/tune_floor.py
        [--trials 100] [--modes plain,ckpt,ckpt-optuna] [--out benchmarks/out/tune_floor.json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

CONCURRENCY = 2


def run_mode(mode: str, trials: int, storage: Path) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune import Callback

    class Times(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.spans: dict[str, list[float]] = {}

        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.spans[trial.trial_id] = [time.time()]

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.spans[trial.trial_id].append(time.time())

    def trainable(config: dict[str, Any]) -> None:
        for epoch in (1, 2):
            time.sleep(0.5)
            checkpoint = None
            if mode.startswith("ckpt"):
                folder = tempfile.mkdtemp()
                Path(folder, "weights.bin").write_bytes(b"x" * 100_000)
                checkpoint = tune.Checkpoint.from_directory(folder)
            tune.report({"x": config["lr"] * epoch, "epoch": epoch}, checkpoint=checkpoint)

    times = Times()
    extra: dict[str, Any] = {}
    if "optuna" in mode:
        from ray.tune.search.optuna import OptunaSearch

        extra["search_alg"] = OptunaSearch(metric="x", mode="max")
    ray.init(num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False)
    try:
        tune.Tuner(
            trainable,
            param_space={"lr": tune.loguniform(1e-3, 1e-1)},
            tune_config=tune.TuneConfig(
                num_samples=trials, max_concurrent_trials=CONCURRENCY, reuse_actors=True, **extra
            ),
            run_config=tune.RunConfig(
                storage_path=str(storage), name=mode, callbacks=[times], verbose=0
            ),
        ).fit()
    finally:
        ray.shutdown()
    spans = sorted(s for s in times.spans.values() if len(s) == 2)
    own = sum(end - start for start, end in spans)
    span = spans[-1][1] - spans[0][0]
    starts = [start for start, _ in spans]
    gaps = [
        starts[i] - end for _, end in spans if (i := bisect.bisect_left(starts, end)) < len(starts)
    ]
    return {
        "trials": len(spans),
        "span_s": span,
        "trial_own_s_median": statistics.median(end - start for start, end in spans),
        "overhead": span / (own / CONCURRENCY) - 1,
        "gap_s_median": statistics.median(gaps),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--modes", default="plain,ckpt,ckpt-optuna")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tune_floor.json"))
    args = parser.parse_args()
    from ipt_ray.testing import machine_lock

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as storage, machine_lock():
        for mode in args.modes.split(","):
            results[mode] = run_mode(mode, args.trials, Path(storage))
            print(mode, json.dumps(results[mode]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
