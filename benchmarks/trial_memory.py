"""Memory of concurrent trials: what each additional concurrent MiniLM trial costs.

Runs the same search (``task`` on `mr` with MiniLM, 4 trials of 1 epoch on 1,000 samples,
1 CPU per trial) with 1 and then 2 trials at a time on a local Ray of 2 CPUs, for each runner
(``actor``: the trial trains in Tune's trial process; ``train``: one Ray Train worker per
trial), while a sampler adds up, every 0.5 s, the proportional set size (PSS: shared pages
split between the processes sharing them) of every Ray worker process (``ray::`` in its
command line: Tune's trial actors, Ray Train's controllers, helpers and workers, idle pooled
workers) and of the raylet (it holds the object store, where the shared backbone lives). The
cost of one more concurrent trial is the difference of the peaks. Linux only
(``/proc/PID/smaps_rollup``).

    .venv/bin/python benchmarks/trial_memory.py [--max-samples 1000] [--runners actor,train]
        [--prompt-layer 0] [--out benchmarks/out/trial_memory.json]

``--prompt-layer k`` trains a late prompt instead (the layers below k are cached: their
activations are never held).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def ray_worker_pss_bytes(root: int | None = None) -> tuple[int, dict[str, int]]:
    """Total PSS of the processes whose command line starts with ``ray::`` (and the raylet),
    and per name; with ``root`` only the descendants of that process id, so that another
    Ray on the same machine (a second benchmark, a test run) is not counted."""
    total, by_name = 0, {}
    if root is None:
        procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    else:
        import psutil

        try:
            procs = [Path(f"/proc/{k.pid}") for k in psutil.Process(root).children(recursive=True)]
        except psutil.Error:
            procs = []
    for proc in procs:
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if cmdline.endswith("/raylet"):
                cmdline = "raylet"
            elif not cmdline.startswith("ray::"):
                continue
        except OSError:
            continue
        pss = pss_bytes(int(proc.name))
        total += pss
        name = cmdline.split()[0]
        by_name[name] = by_name.get(name, 0) + pss
    return total, by_name


def pss_bytes(pid: int) -> int:
    """The proportional set size of process ``pid`` (0 if it is gone)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """Calls ``read()`` every ``interval`` seconds on a thread and keeps the largest reading:
    ``peak["bytes"]`` and, merged in, the dict ``read`` returned with it. ``read`` returns
    ``(bytes, details)``; by default the PSS of the Ray worker processes below this process
    (:func:`ray_worker_pss_bytes`, the local Ray it started), with ``peak["by_name"]``.
    :meth:`start` starts sampling; :meth:`stop` ends it and returns the peak in bytes."""

    def __init__(
        self,
        read: Callable[[], tuple[int, dict[str, Any]]] | None = None,
        interval: float = 0.5,
    ) -> None:
        self.read = read or _ray_workers_of(os.getpid())
        self.interval = interval
        self.peak: dict[str, Any] = {"bytes": 0, "by_name": {}} if read is None else {"bytes": 0}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            total, details = self.read()
            if total > self.peak["bytes"]:
                self.peak.update(bytes=total, **details)
            if self.done.wait(self.interval):
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return int(self.peak["bytes"])


def _ray_workers_of(root: int) -> Callable[[], tuple[int, dict[str, Any]]]:
    def read() -> tuple[int, dict[str, Any]]:
        total, by_name = ray_worker_pss_bytes(root)
        return total, {"by_name": by_name}

    return read


def search_peak(
    concurrent: int, max_samples: int, runner: str, prompt_layer: int
) -> dict[str, object]:
    import ray

    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    space = (
        "name: trial-memory\nfixed:\n  task: mr\n  model: minilm\n"
        f"  max_samples: {max_samples}\n  max_length: 64\n  batch_size: 32\n  epochs: 1\n"
        f"  prompt_layer: {prompt_layer}\n"
        f"search:\n  num_samples: 4\n  seed: 0\n  scheduler: none\n"
        f"  max_concurrent: {concurrent}\n"
        "params:\n  lr: [0.02]\n  generator: {choices: {task: {}}}\n"
    )
    root = Path(tempfile.mkdtemp(prefix="ipt-ray-memory-"))
    sampler = PeakSampler()
    peak = sampler.peak

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        time.sleep(3)  # Ray's prestarted idle workers settle first
        idle, _ = ray_worker_pss_bytes(os.getpid())
        sampler.start()
        run_search(
            parse_space(space),
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifact_root=root / "mlartifacts",
            storage=root / "ray",
            runner=runner,
        )
    finally:
        sampler.stop()
        ray.shutdown()
    return {
        "runner": runner,
        "concurrent": concurrent,
        "idle_bytes": idle,
        "peak_bytes": peak["bytes"],
        **peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-samples", type=int, default=1000)
    parser.add_argument("--runners", default="actor,train")
    parser.add_argument("--prompt-layer", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/trial_memory.json")
    args = parser.parse_args()
    gib = 2**30
    out: dict[str, object] = {"runners": {}}
    for runner in args.runners.split(","):
        rows = [search_peak(k, args.max_samples, runner, args.prompt_layer) for k in (1, 2)]
        for row in rows:
            names = ", ".join(
                f"{n} {b / gib:.2f}"
                for n, b in sorted(row["by_name"].items(), key=lambda kv: -kv[1])  # type: ignore[union-attr]
            )
            print(
                f"{runner}, {row['concurrent']} at a time: peak PSS "
                f"{int(row['peak_bytes']) / gib:.2f} GiB "
                f"(idle {int(row['idle_bytes']) / gib:.2f}); {names}"
            )
        extra = (int(rows[1]["peak_bytes"]) - int(rows[0]["peak_bytes"])) / gib
        print(f"{runner}: one more concurrent trial: {extra:.2f} GiB", flush=True)
        out["runners"][runner] = {"rows": rows, "extra_trial_gib": extra}  # type: ignore[index]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
