"""What ``ipt-ray ui`` costs: MLflow's own ``mlflow ui`` (its defaults: 4 workers, a job
runner and its consumers) and ``ipt-ray ui`` (1 worker, no job runner), side by side on the
same store.

For each, ``--rounds`` times (alternating, so that both see the same machine load): start it
on a free port, time until ``/health`` answers and the experiment page's API call
(``/ajax-api/2.0/mlflow/experiments/search``) returns, then sum the proportional set size
(PSS: shared pages split between the processes sharing them) of the server's whole process
tree, and stop it. Reports the medians. Linux only (``/proc/PID/smaps_rollup``).

    .venv/bin/python benchmarks/ui_server.py [--rounds 3] [--out benchmarks/out/ui_server.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

#: MLflow's switch for its server's job runner: unset, so that each tool picks its own.
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def tree_pss_bytes(pid: int) -> int:
    """PSS of ``pid`` and every descendant."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            rollup = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_round(uri: str, tool: str) -> dict[str, float]:
    port = free_port()
    command = [str(Path(sys.executable).with_name(tool)), "ui", "--port", str(port)]
    if tool == "mlflow":
        command += ["--backend-store-uri", uri, "--host", "127.0.0.1"]
    else:
        command += ["--tracking-uri", uri]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    started = time.perf_counter()
    server = subprocess.Popen(
        command,
        env={**{k: v for k, v in os.environ.items() if k != JOBS_ENV}, "PATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError(f"mlflow ui did not start: {command}") from None
                time.sleep(0.1)
        ready = time.perf_counter() - started
        request = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        answered = time.perf_counter() - started
        time.sleep(1.0)  # workers finish importing
        pss = tree_pss_bytes(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return {"ready_s": ready, "answered_s": answered, "pss_mib": pss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/ui_server.json"))
    args = parser.parse_args()
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)  # a store with one experiment and run
        experiment = client.create_experiment("bench", artifact_location=Path(tmp).as_uri())
        client.set_terminated(client.create_run(experiment).info.run_id)
        settings = {"mlflow ui (defaults)": "mlflow", "ipt-ray ui": "ipt-ray"}
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name, tool in settings.items():
                rows[name].append(one_round(uri, tool))
                print(name, rows[name][-1], flush=True)
    result = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rows.items()
    }
    result["rounds"] = args.rounds  # type: ignore[assignment]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
