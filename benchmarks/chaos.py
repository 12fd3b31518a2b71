"""Chaos soak: searches that must survive processes and nodes SIGKILLed under them.

Each round starts a 2-node loopback Ray cluster (``start_local_cluster``: 1 CPU, 3 GB per
node) and runs ``ipt-ray search smoke --address HEAD`` as a subprocess: 12 trials, 2 at a
time, ``--max-failures 3`` (and ``--worker-failures 2`` for ``--runner train``), a tiny random
BERT on a 3,000-row toy task (3,000 samples, batch 4; 8 epochs on the actor runner, 3 on the
train runner, whose worker group takes ~25 s to start: an unpruned trial takes 15-35 s; ASHA
prunes most trials after 1-2 epochs). Meanwhile a killer thread SIGKILLs, every 15-30 s
(seeded), one of: a Tune trial process (``ray::ImplicitFunc...``), a Ray Train worker
(``ray::RayTrainWorker...``, train runner only) or the worker node (every process of it; a
replacement node is started at once with ``add_worker_node``, so the cluster is back to 2
nodes). At most 6 kills per search; the killer stops when the search ends. Per search it records:

- completed: exit 0 and a JSON summary as the last stdout line (a search still running after
  25 minutes is stopped and counts as hung: ``ray status`` and the placement groups are kept);
- trials finished / pruned / failed (the summary's counts);
- gaps and repeats: trials whose ``val_accuracy`` steps in MLflow are not exactly 1..n;
- RUNNING: runs of the experiment left RUNNING; leaked / reaped / stalled: the summary's
  ``placement_groups_left`` / ``placement_groups_reaped`` / ``trials_stalled``;
  lost: ``tracking_calls_lost``; wall seconds; kills done by kind, and those it could not do
  (no such process at that moment); nodes the GCS counts at the end (2 once it has noticed).

Goal: every search completes with 0 gaps, 0 repeats, 0 RUNNING, 0 leaked and 0 lost.

    .venv/bin/python benchmarks/chaos.py [--rounds 5] [--runners actor,train] [--seed 0]
        [--out benchmarks/out/chaos.json] [--table]

The out file is rewritten (atomically) after every round, and rounds already in it are
skipped: run the same command again to resume. ``--table`` prints the README table from it.
Set ``IPT_RAY_LOCK=/tmp/ipt-ray-ray.lock`` on a shared machine: each round then holds an
exclusive ``flock`` on that file while its cluster runs (not the whole run: others get the
machine between rounds). Search logs and hang evidence go to ``<out>.logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ipt_ray.cluster import (
    LocalCluster,
    add_worker_node,
    cluster_processes,
    local_cluster_status,
    start_local_cluster,
    stop_local_cluster,
)
from ipt_ray.testing import machine_lock, ray_evidence

TRIALS, CONCURRENT, MAX_FAILURES, WORKER_FAILURES = 12, 2, 3, 2
FIXED = {"max_samples": 3000, "batch_size": 4}
EPOCHS = {"actor": 8, "train": 3}
KILL_EVERY_S, MAX_KILLS, SEARCH_TIMEOUT_S = (15.0, 30.0), 6, 1500.0
TITLES = {"trial": "ray::ImplicitFunc", "train_worker": "ray::RayTrainWorker"}
KINDS = {"actor": ["trial", "node"], "train": ["trial", "train_worker", "node"]}
SUMMARY_KEYS = ("placement_groups_left", "placement_groups_reaped", "trials_stalled")
SUMMARY_KEYS += ("tracking_calls_lost",)
FAST_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "HF_HUB_OFFLINE": "1"}


def titled(cluster: LocalCluster, prefix: str) -> list[int]:
    """PIDs of the cluster's processes whose title starts with ``prefix``."""
    ours = cluster_processes(cluster)
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    rows = (line.strip().split(None, 1) for line in out.splitlines())
    return sorted(
        int(r[0]) for r in rows if len(r) == 2 and r[1].startswith(prefix) if int(r[0]) in ours
    )


def killer(
    cluster: LocalCluster, runner: str, rng: random.Random, stop: threading.Event, log: list
) -> None:
    """Until ``stop`` is set: every 15-30 s SIGKILL one random target (at most MAX_KILLS)."""
    started = time.monotonic()
    while len([e for e in log if "pids" in e]) < MAX_KILLS:
        if stop.wait(rng.uniform(*KILL_EVERY_S)):
            return
        kind = rng.choice(KINDS[runner])
        event: dict[str, Any] = {"kind": kind, "at_s": round(time.monotonic() - started, 1)}
        if kind == "node":
            pids = sorted(cluster_processes(cluster, 1)) if len(cluster.pids) > 1 else []
        else:
            found = titled(cluster, TITLES[kind])
            pids = [rng.choice(found)] if found else []
        if not pids:
            log.append({**event, "skipped": "no target"})
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        event["pids"] = len(pids)
        if kind == "node":
            time.sleep(1.0)
            try:
                add_worker_node(cluster, timeout=120)
                event["replaced"] = True
            except Exception as exc:  # a finding: report it, keep the soak going
                event["replace_error"] = str(exc)[-2000:]
        log.append(event)


def nodes_alive(cluster: LocalCluster, wait: float = 90.0) -> int | None:
    """Live nodes as the GCS counts them, once it has noticed a node killed lately (its
    health checks take a while): waits up to ``wait`` seconds for the cluster's 2 nodes."""
    deadline = time.monotonic() + wait
    status = local_cluster_status(cluster)
    while not status.running and time.monotonic() < deadline:
        time.sleep(2.0)
        status = local_cluster_status(cluster)
    return status.nodes_alive


def mlflow_check(uri: str, experiment_id: str, parent: str) -> dict[str, int]:
    """Trials whose val_accuracy steps are not 1..n (gap / repeat), runs left RUNNING."""
    from mlflow import MlflowClient

    from ipt_ray.testing import metric_steps

    runs = MlflowClient(tracking_uri=uri).search_runs([experiment_id], max_results=1000)
    gaps = repeats = 0
    for run in runs:
        if run.info.run_id == parent:
            continue
        steps = metric_steps(uri, run.info.run_id, "val_accuracy")
        repeats += len(steps) != len(set(steps))
        gaps += sorted(set(steps)) != list(range(1, len(set(steps)) + 1))
    running = sum(r.info.status == "RUNNING" for r in runs)
    return {"runs": len(runs), "gaps": gaps, "repeats": repeats, "running": running}


def search_args(
    cluster: LocalCluster, runner: str, uri: str, storage: Path, model: Path, task: Path
) -> list[str]:
    """``ipt-ray search smoke`` against ``cluster`` with this benchmark's settings."""
    args = [sys.executable, "-m", "ipt_ray.cli", "search", "smoke", "--json", "--address"]
    args += [cluster.head_address, "--tracking-uri", uri, "--storage", str(storage)]
    options = {"runner": runner, "num-samples": TRIALS, "max-concurrent": CONCURRENT}
    options["max-failures"] = MAX_FAILURES
    if runner == "train":
        options["worker-failures"] = WORKER_FAILURES
    args += [a for k, v in options.items() for a in (f"--{k}", str(v))]
    fixed = {"model": model, "task": task, **FIXED, "epochs": EPOCHS[runner]}
    return args + [a for k, v in fixed.items() for a in ("--set", f"{k}={v}")]


def run_round(
    runner: str, index: int, seed: int, model: Path, task: Path, logs: Path, lock: str | None = None
) -> dict[str, Any]:
    """One search of ``runner`` on a fresh 2-node cluster under the killer; its record."""
    record: dict[str, Any] = {"runner": runner, "round": index, "completed": False}
    rng = random.Random(f"{seed}-{runner}-{index}")
    logs.mkdir(parents=True, exist_ok=True)
    os.environ.update(FAST_ENV)  # read by the nodes' processes too
    with machine_lock(lock), tempfile.TemporaryDirectory(prefix="iptk-") as tmp:
        root = Path(tmp)  # short: Ray's socket paths are limited
        sizes = {"memory_per_node": "3GB", "object_store_memory": "300MB"}
        cluster = start_local_cluster(2, root=root, cpus_per_node=1, timeout=180, **sizes)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        args = search_args(cluster, runner, uri, root / "storage", model, task)
        kills: list[dict[str, Any]] = []
        stop = threading.Event()
        log_path = logs / f"{runner}-{index}.log"
        try:
            started = time.monotonic()
            with log_path.open("w") as out:
                proc = subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, text=True, env=cluster.client_env()
                )
                thread = threading.Thread(target=killer, args=(cluster, runner, rng, stop, kills))
                thread.start()
                try:
                    record["exit"] = proc.wait(timeout=SEARCH_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    record["hung"] = True
                    (logs / f"{runner}-{index}.evidence.json").write_text(
                        json.dumps(ray_evidence(cluster), indent=1)
                    )
                    proc.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=60)
                    proc.kill()
                    record["exit"] = proc.wait()
                record["wall_s"] = round(time.monotonic() - started, 1)
                stop.set()
                thread.join()
            record["kills"] = dict(Counter(e["kind"] for e in kills if "pids" in e))
            record["skipped"] = dict(Counter(e["kind"] for e in kills if "skipped" in e))
            record["events"] = kills
            lines = log_path.read_text(errors="replace").strip().splitlines()
            summary = None
            with contextlib.suppress(IndexError, ValueError):
                summary = json.loads(lines[-1])
            record["nodes_at_end"] = nodes_alive(cluster)
            if isinstance(summary, dict) and record["exit"] == 0:
                record["completed"] = True
                record.update(summary["counts"])
                for key in SUMMARY_KEYS:
                    record[key] = summary.get(key)  # None: this CLI does not report it
                record.update(mlflow_check(uri, summary["experiment_id"], summary["parent_run_id"]))
            else:
                record["output_tail"] = "\n".join(lines[-40:])
        finally:
            stop.set()
            try:
                stop_local_cluster(cluster)
            except Exception as exc:
                record["stop_error"] = str(exc)
    return record


def problems(record: dict[str, Any]) -> list[str]:
    """What in one search's record misses the goal (empty: all met)."""
    if not record["completed"]:
        return [f"search did not complete (exit {record['exit']}, hung {'hung' in record})"]
    found = [
        f"{key}={record.get(key)}"
        for key in ("gaps", "repeats", "running", "placement_groups_left", "tracking_calls_lost")
        if record.get(key) != 0
    ]
    found += [
        f"node not replaced: {e['replace_error']}" for e in record["events"] if "replace_error" in e
    ]
    return found + ([f"stop_error: {record['stop_error']}"] if "stop_error" in record else [])


def table(records: list[dict[str, Any]]) -> str:
    """The README table: one row per runner."""
    head = (
        "| runner | rounds | completed | trials finished / pruned / failed | gaps | repeats "
        "| RUNNING | leaked | reaped | lost | kills (trial / train worker / node) "
        "| median wall |"
    )
    rows = [head, "|" + " --- |" * 12]
    for runner in sorted({r["runner"] for r in records}):
        mine = [r for r in records if r["runner"] == runner]
        done = [r for r in mine if r["completed"]]

        def total(key: str, rs: list[dict[str, Any]] = done) -> str:
            values = [r.get(key) for r in rs]
            return "n/a" if None in values else str(sum(values))

        kills = " / ".join(
            str(sum(r["kills"].get(k, 0) for r in mine)) for k in ("trial", "train_worker", "node")
        )
        wall = statistics.median(r["wall_s"] for r in mine)
        rows.append(
            f"| {runner} | {len(mine)} | {len(done)}/{len(mine)} | {total('finished')} / "
            f"{total('pruned')} / {total('failed')} | {total('gaps')} | {total('repeats')} | "
            f"{total('running')} | {total('placement_groups_left')} | "
            f"{total('placement_groups_reaped')} | {total('tracking_calls_lost')} | {kills} | "
            f"{wall:.0f} s |"
        )
    return "\n".join(rows)


def save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per runner")
    parser.add_argument("--runners", default="actor,train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/chaos.json"))
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    data = json.loads(args.out.read_text()) if args.out.exists() else {"rounds": []}
    if args.table:
        print(table(data["rounds"]))
        return
    from ipt_ray.testing import save_tiny_backbone, write_toy_csv

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ipt-chaos-") as tmp:
        model = save_tiny_backbone("bert", Path(tmp) / "bert")
        task = write_toy_csv(Path(tmp) / "toy.csv", n=3000)
        todo = [(i, r) for i in range(args.rounds) for r in args.runners.split(",")]
        for index, runner in todo:
            if any(r["runner"] == runner and r["round"] == index for r in data["rounds"]):
                continue
            logs, lock = args.out.with_suffix(".logs"), os.environ.get("IPT_RAY_LOCK")
            record = run_round(runner, index, args.seed, model, task, logs, lock)
            record["problems"] = problems(record)
            data["rounds"].append(record)
            save(args.out, data)
            print(json.dumps(record), flush=True)
    print(table(data["rounds"]))


if __name__ == "__main__":
    main()
