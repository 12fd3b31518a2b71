"""Trials per hour on 1 node against 2 nodes of the same total CPUs, and submission overhead.

Each round starts a local cluster (``ipt_ray.cluster.start_local_cluster``: token auth, its
own temp dir, fixed memory) with either 1 node of 2 CPUs or 2 nodes of 1 CPU, submits the
`smoke` space with ``ipt-ray search smoke --address http://127.0.0.1:PORT`` (a Ray Job, the
code shipped in its runtime environment, 2 trials at a time, one worker of 1 CPU each) and
follows it to the end. Measured from the client's side:

- submission overhead: from starting ``ipt-ray search`` to the first ``[trial] started`` line
  it prints (the job's driver reported a running trial);
- trials per hour: trials divided by the time from the first trial's start to the search's
  end line.

Layouts alternate round by round (1 node, 2 nodes, 1 node, ...); medians are reported. The
cluster is stopped after each round, also on failure. Cluster start-up is not counted.

    .venv/bin/python benchmarks/cluster_trials.py [--rounds 2] [--num-samples 6]
        [--model minilm] [--out benchmarks/out/cluster_trials.json]
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

from ipt_ray.cluster import start_local_cluster, stop_local_cluster

LAYOUTS = {"1 node x 2 CPUs": (1, 2), "2 nodes x 1 CPU": (2, 1)}


def one_round(nodes: int, cpus: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="iptb-"))  # short: Ray's socket paths are limited
    cluster = start_local_cluster(
        nodes, root=root, cpus_per_node=cpus, memory_per_node="5GB", timeout=180
    )
    try:
        env = cluster.client_env()
        submitted = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ipt_ray.cli",
                "search",
                "smoke",
                "--address",
                cluster.dashboard_url,
                "--storage",
                str(root / "storage"),
                "--tracking-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--num-samples",
                str(args.num_samples),
                "--max-concurrent",
                "2",
                "--set",
                f"model={args.model}",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        first_start = end = None
        summary: dict[str, Any] | None = None
        output = []
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            output.append(line)
            if "] started" in line and first_start is None:
                first_start = now
            if line.startswith("search 'smoke' done"):
                end = now
            if line.startswith('{"experiment"'):
                summary = json.loads(line)  # the --json line (job status lines may follow)
        code = proc.wait()
        if code != 0 or first_start is None or end is None or summary is None:
            raise RuntimeError(f"search failed (exit {code}): {''.join(output[-20:])}")
        trials = int(summary["counts"]["trials"])
        return {
            "nodes": nodes,
            "cpus_per_node": cpus,
            "trials": trials,
            "counts": summary["counts"],
            "submit_to_first_trial_s": first_start - submitted,
            "search_s": end - first_start,
            "trials_per_hour": trials * 3600.0 / (end - first_start),
        }
    finally:
        stop_local_cluster(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=6)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--out", default="benchmarks/out/cluster_trials.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        for name, (nodes, cpus) in LAYOUTS.items():
            result = {"layout": name, "round": i, **one_round(nodes, cpus, args)}
            rounds.append(result)
            print(
                f"{name}: submit->first trial {result['submit_to_first_trial_s']:.1f} s, "
                f"{result['trials']} trials in {result['search_s']:.0f} s = "
                f"{result['trials_per_hour']:.0f} trials/h",
                flush=True,
            )
    table = {}
    for name in LAYOUTS:
        mine = [r for r in rounds if r["layout"] == name]
        table[name] = {
            "trials_per_hour_median": statistics.median(r["trials_per_hour"] for r in mine),
            "submit_to_first_trial_s_median": statistics.median(
                r["submit_to_first_trial_s"] for r in mine
            ),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rounds": rounds, "medians": table}, indent=2))
    print("\n| layout | trials/hour | submit to first trial (s) |\n| --- | --- | --- |")
    for name, row in table.items():
        print(
            f"| {name} | {row['trials_per_hour_median']:.0f} | "
            f"{row['submit_to_first_trial_s_median']:.1f} |"
        )


if __name__ == "__main__":
    main()
