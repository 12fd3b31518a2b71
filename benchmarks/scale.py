"""Searches of thousands of trials: what they put on the driver, TPE, MLflow and ``best``.

Runs the real path (``run_search``: Ray Tune, Optuna TPE, ASHA, the actor runner, the MLflow
callback) on trials of about a second each: a tiny random BERT (hidden 32, 2 layers), a toy
task of 32 training sentences, 2 epochs (ASHA may stop a trial after the first), three
generators, the learning rate and prompt length searched. Stages, each saved to ``--out`` as
it ends (a rerun skips the stages already there; ``--redo`` runs them again):

- ``sqlite``: ``--trials`` trials (default 2,000) at the machine's concurrency against a
  SQLite store. Reports the wall time against the ideal (the sum of the trials' own times,
  from Tune starting each to its end, divided by the concurrency), the driver's
  memory (RSS every 5 s), the MLflow calls the driver made, their rate and the driver's
  seconds in them, the backlog's peak, and the Ray results folder's size.
- ``tpe``: Optuna's TPE sampling time per trial at 100, 1,000 and 2,000 trials of history,
  with the same sampler and space as the search (ask, define-by-run, tell a random value).
- ``browse``: on the finished store, ``ipt-ray best --json``, ``best --plot`` and
  ``export`` timed as a user runs them (medians of 3), each checked: every trial present,
  the ranking equal to a direct query of the store, the exported trial the best one.
- ``server``: ``--server-trials`` trials (default 300) against a real ``mlflow server``.
- ``state``: what the tracker hands Tune with every experiment snapshot, for ``--trials``
  trial records: ``dataclasses.asdict`` of each (before) against ``TrialRecord.state`` (now),
  medians of 5.

    IPT_RAY_LOCK=/tmp/ipt-ray-ray.lock .venv/bin/python benchmarks/scale.py
        [--trials 2000] [--server-trials 300] [--stages sqlite,tpe,browse,server]
        [--work /tmp/ipt-ray-scale] [--out benchmarks/out/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SPACE = """
name: {name}
fixed: {{task: {task}, model: {model}, epochs: 2, batch_size: 8, max_length: 16,
         max_samples: {samples}}}
search:
  metric: val_accuracy
  num_samples: {trials}
  seed: 0
  scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
  prompt_length: [2, 4, 8]
  generator:
    choices:
      task: {{}}
      prefix: {{}}
      idpg:
        bottleneck: {{type: int, low: 4, high: 16, log: true}}
"""


#: Training sentences per trial: a trial of about a second on this machine, as the issue asks
#: (32 made trials of about 0.15 s once they shared the backbone and reused their process).
SAMPLES = 1024


def inputs(work: Path, samples: int) -> tuple[Path, Path]:
    from ipt_ray.testing import save_tiny_backbone, write_toy_csv

    model, task = work / "tiny-bert", work / f"toy-{samples}.csv"
    if not model.exists():
        save_tiny_backbone("bert", model)
    if not task.exists():
        write_toy_csv(task, n=2 * samples)
    return model, task


def space_text(work: Path, name: str, trials: int, samples: int = SAMPLES) -> str:
    model, task = inputs(work, samples)
    return SPACE.format(name=name, task=task, model=model, trials=trials, samples=samples)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_stage(
    work: Path, name: str, trials: int, tracking_uri: str, samples: int = SAMPLES
) -> dict[str, Any]:
    """One search of ``trials`` trials; what it cost the driver, Tune and MLflow."""
    from ipt_ray.testing import machine_lock
    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    driver = psutil.Process()
    memory: list[tuple[float, float]] = []  # (seconds, RSS MiB)
    started = time.perf_counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5.0):
            memory.append((time.perf_counter() - started, driver.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpus = len(os.sched_getaffinity(0))
    try:
        with machine_lock():
            summary = run_search(
                parse_space(space_text(work, name, trials, samples)),
                tracking_uri=tracking_uri,
                storage=root / "ray",
                artifact_root=None if tracking_uri.startswith("http") else root / "mlartifacts",
                max_concurrent=cpus,
                runner="actor",
                fresh=True,
            )
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    own = [t.seconds for t in summary.trials if t.seconds is not None]
    ideal = sum(own) / cpus
    half = [m for s, m in memory if s >= wall / 2]
    return {
        "trials": summary.num_trials,
        "samples": samples,
        "counts": summary.counts,
        "concurrency": cpus,
        "wall_s": wall,
        "search_s": summary.seconds,
        "trial_own_s_median": statistics.median(own) if own else None,
        "ideal_s": ideal,
        "overhead": summary.seconds / ideal - 1 if ideal else None,
        "driver_rss_mib": {
            "first": memory[0][1] if memory else None,
            "peak": max((m for _, m in memory), default=None),
            "last": memory[-1][1] if memory else None,
            "second_half_growth": (half[-1] - half[0]) if len(half) > 1 else None,
            "series": memory[:: max(1, len(memory) // 60)],
        },
        "mlflow_calls": summary.tracking_calls,
        "mlflow_calls_per_s": summary.tracking_calls / summary.seconds,
        "mlflow_driver_s": summary.tracking_call_seconds,  # the writer thread's, now
        "mlflow_caller_s": summary.tracking_caller_seconds,  # Tune's loop handing calls over
        "mlflow_backlog_peak": summary.tracking_backlog_peak,
        "mlflow_calls_lost": summary.tracking_calls_lost,
        "ray_results_mib": folder_bytes(root / "ray") / 2**20,
        "parent_run_id": summary.parent_run_id,
        "experiment": summary.name,
        "tracking_uri": tracking_uri,
    }


def tpe_stage(work: Path, trials: int) -> dict[str, Any]:
    """TPE's sampling time per trial as the history grows, with the search's sampler."""
    import optuna

    from ipt_ray.tuning.space import parse_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = parse_space(space_text(work, "tpe", trials))
    study = optuna.create_study(sampler=space.settings.tpe_sampler(), direction="maximize")
    rng = random.Random(0)
    times: list[float] = []
    for _ in range(trials):
        started = time.perf_counter()
        trial = study.ask()
        space.define_by_run(trial)
        times.append(time.perf_counter() - started)
        study.tell(trial, rng.random())
    at = {}
    for mark in (100, 1000, 2000):
        window = times[max(0, mark - 20) : mark]
        if len(window) == 20:
            at[str(mark)] = statistics.median(window) * 1000
    return {"trials": trials, "ask_ms_median_at": at, "total_s": sum(times)}


def timed(command: list[str], cwd: Path, rounds: int = 3) -> tuple[float, str]:
    """Median seconds of ``command`` over ``rounds`` runs, and the last run's stdout."""
    times, out = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - started)
        out = done.stdout
    return statistics.median(times), out


def browse_stage(work: Path, search: dict[str, Any]) -> dict[str, Any]:
    """``best``, ``best --plot`` and ``export`` on the finished search, each checked."""
    from mlflow import MlflowClient

    from ipt_ray.tracking.schema import logged_number

    uri, experiment = search["tracking_uri"], search["experiment"]
    cli = str(Path(sys.executable).with_name("ipt-ray"))
    common = ["--tracking-uri", uri, "--experiment", experiment]
    best_s, out = timed([cli, "best", *common, "--json", "--top", "100000"], work)
    rows = json.loads(out)["trials"]
    # The direct query: every child run of the parent, paged by hand.
    client = MlflowClient(tracking_uri=uri)
    runs, token = [], None
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.`mlflow.parentRunId` = '{search['parent_run_id']}'",
            max_results=500,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    # Read as a user would (tags since the constants left the metrics; metrics before).
    best_of = {r.info.run_id: logged_number(r.data, "best_val_accuracy") for r in runs}
    direct = sorted((v for v in best_of.values() if v is not None), reverse=True)
    listed = [r["value"] for r in rows if r["value"] is not None and r["run_id"] in best_of]
    plot_s, _ = timed([cli, "best", *common, "--plot", str(work / "plots")], work)
    export_s = []
    exported = None
    for i in range(3):
        target = work / f"export-{i}"
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        done = subprocess.run(
            [cli, "export", *common, "--out", str(target)],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        export_s.append(time.perf_counter() - started)
        if done.returncode == 0 and i == 0:
            exported = json.loads((target / "ipt_config.json").read_text())["provenance"]
    top_run = rows[0]["run_id"] if rows else None
    return {
        "trials_in_store": len(runs),
        "trials_listed": len(rows),
        "every_trial_listed": len(rows) == len(runs) == search["trials"],
        "ranking_matches_direct_query": listed[: len(direct)] == direct[: len(listed)],
        "best_s": best_s,
        "best_plot_s": plot_s,
        "export_s": statistics.median(export_s),
        "export_is_the_best": exported is not None and exported["trial_run_id"] == top_run,
    }


def state_stage(trials: int) -> dict[str, Any]:
    """The tracker's snapshot state of ``trials`` records: a deep copy against the shallow one."""
    from dataclasses import asdict

    from ipt_ray.tracking.record import TrialRecord

    records = []
    for i in range(trials):
        record = TrialRecord(
            f"t{i}", params={f"p{j}": j for j in range(30)}, sampled={"lr": 0.01}, max_epochs=2
        )
        record.metrics = {f"m{j}": 0.5 for j in range(25)}
        record.best_metrics = dict(record.metrics)
        record.checkpoints = {1: (0.5, "/a/1"), 2: (0.6, "/a/2")}
        record.logged_epochs = [1, 2]
        records.append(record)

    def median_ms(snapshot: Any) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            snapshot()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    deep = median_ms(lambda: [asdict(r) for r in records])
    shallow = median_ms(lambda: [r.state() for r in records])
    return {"trials": trials, "asdict_ms": deep, "state_ms": shallow, "ratio": deep / shallow}


def server_stage(work: Path, trials: int) -> dict[str, Any]:
    from ipt_ray.testing import mlflow_server

    with mlflow_server(work / "server") as url:
        return run_stage(work, "scale-server", trials, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--server-trials", type=int, default=300)
    parser.add_argument(
        "--samples", type=int, default=SAMPLES, help="training sentences per trial (its length)"
    )
    parser.add_argument("--stages", default="sqlite,tpe,browse,server")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ipt-ray-scale"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/scale.json"))
    parser.add_argument("--redo", action="store_true", help="run stages already in --out")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    for stage in args.stages.split(","):
        if stage in results and not args.redo:
            print(f"{stage}: done before (in {args.out})", flush=True)
            continue
        print(f"{stage}: running", flush=True)
        if stage == "sqlite":
            uri = f"sqlite:///{args.work / 'scale-sqlite.db'}"
            Path(args.work / "scale-sqlite.db").unlink(missing_ok=True)
            results[stage] = run_stage(args.work, "scale-sqlite", args.trials, uri, args.samples)
        elif stage == "tpe":
            results[stage] = tpe_stage(args.work, args.trials)
        elif stage == "browse":
            results[stage] = browse_stage(args.work, results["sqlite"])
        elif stage == "server":
            results[stage] = server_stage(args.work, args.server_trials)
        elif stage == "state":
            results[stage] = state_stage(args.trials)
        else:
            raise SystemExit(
                f"unknown stage {stage!r}; allowed: sqlite, tpe, browse, server, state"
            )
        results[stage]["measured"] = time.strftime("%Y-%m-%d %H:%M")
        save()
        print(json.dumps({k: v for k, v in results[stage].items() if k != "driver_rss_mib"}))


if __name__ == "__main__":
    main()
