"""Packed trials on one device, without Ray: device memory per extra trial and throughput.

What issue 17 asks of a GPU (trials per hour and GPU memory per extra trial at K = 1 to 16,
packed against the actor runner with fractional GPUs, for MiniLM and a roberta-base-sized
backbone), measured with the parts that do the work and nothing else:

- ``processes``: K processes at once on the device, each training its trials one after the
  other over its own copy of the backbone, as the ``actor`` runner's K trial processes do
  with ``--gpus-per-worker 1/K`` (each its own CUDA context and weights);
- ``packed``: one process holding the backbone once and training K trials at a time in a
  :class:`~ipt_ray.training.pack.Pack`, the next trial joining as one ends, as the ``packed``
  runner's server does (``packed-recompute``: with ``Pack(recompute=True)``).

Each measurement trains 2K trials (``task``, prompt lengths 8 and 16, two learning rates, one
epoch of ``--max-samples`` sentences of ``mr`` per split). Ray is left out on purpose: the
device image has no Ray, and Ray's wheel (79 MB) is over what one device call can carry; the
processes here are what the runners' processes run, so what is measured is the runners'
training and memory, not Ray's scheduling.

Backbones are built from their configs with random weights (speed and memory do not depend
on the weights' values; MiniLM's real weights, 91 MB, cannot travel to the device either):
``minilm`` (BERT, 6 layers, hidden 384, MiniLM-L6's shape) and ``roberta-base`` (12 layers,
hidden 768, 125M parameters), both with MiniLM's tokenizer.

Memory: the device's used memory (NVML, else ``nvidia-smi``) sampled every 0.2 s, its peak
minus its level before the measurement; on CPU the PSS of the benchmark's child processes.
Per extra trial: (peak at K - peak at 1) / (K - 1). Throughput: trial-epochs per hour of the
whole measurement (process start, backbone load and evaluation included), and the training
phase alone (samples per second summed over the trials that ran at once).

    .venv/bin/python benchmarks/packed_gpu.py --prepare .device   # here: tokenizer + mr
    python3 benchmarks/packed_gpu.py --assets .device [--device cuda] [--ks 1,2,4,8,16]
        [--backbones minilm,roberta-base] [--runners processes,packed]
        [--max-samples 2000] [--budget-s 420] [--out benchmarks/out/packed_gpu.json]

``--device cpu --ks 1,2 --backbones minilm --max-samples 64`` checks the script on a machine
without a GPU. Resumable: a (backbone, runner, K) already in ``--out`` with the same settings
is skipped; each row is written when measured. ``--budget-s`` skips what would start after
that many seconds, so the device call ends inside its limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trial_memory import PeakSampler, pss_bytes

from ipt_ray.constants import PACK_PROCESS_ENV

GIB = 2**30
HERE = Path(__file__).resolve().parent
BACKBONES: dict[str, dict[str, Any]] = {
    "minilm": {
        "model_type": "bert",
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    },
    "roberta-base": {"model_type": "roberta"},  # RobertaConfig's defaults are roberta-base
}
RUNNERS = ("processes", "packed", "packed-recompute")


# -- assets (run here, where the tokenizer and the data are) ---------------------------------
def prepare(assets: Path) -> None:
    """Write MiniLM's tokenizer and the cached ``mr`` task under ``assets`` (about 2 MB)."""
    from transformers import AutoTokenizer

    from ipt_ray.core.backbone import resolve_model
    from ipt_ray.data.cache import cache_root
    from ipt_ray.data.catalog import load_task

    load_task("mr")  # parses and caches it if it is not yet
    AutoTokenizer.from_pretrained(resolve_model("minilm")[0]).save_pretrained(assets / "tokenizer")
    shutil.copytree(
        cache_root() / "tasks" / "mr", assets / "cache" / "tasks" / "mr", dirs_exist_ok=True
    )
    size = sum(f.stat().st_size for f in assets.rglob("*") if f.is_file())
    print(f"written {assets} ({size / 2**20:.1f} MiB)")


def build_backbone(name: str, assets: Path, work: Path) -> Path:
    """A folder holding backbone ``name`` with random weights (seed 0) and the tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = work / f"{name}-sized"
    if (folder / "config.json").exists():
        return folder
    spec = dict(BACKBONES[name])
    tokenizer = AutoTokenizer.from_pretrained(assets / "tokenizer")
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- one measured process ---------------------------------------------------------------------
def trial_settings(index: int, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "task": "mr",
        "model": str(model),
        "generator": "task",
        "prompt_length": (8, 16)[index % 2],
        "lr": (0.01, 0.03)[(index // 2) % 2],
        "seed": index,
        "epochs": 1,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "max_samples": args.max_samples,
        "device": args.device,
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Train ``spec["trials"]`` (settings) in this process: in turn, or ``spec["pack"]`` at a
    time in a pack. Returns timings (seconds since ``spec["t0"]``) and device memory."""
    import torch

    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.data.catalog import load_task
    from ipt_ray.training.api import config_from_settings
    from ipt_ray.training.loop import TrainingRun
    from ipt_ray.training.pack import Pack, PackMember

    configs = [config_from_settings(s) for s in spec["trials"]]
    backbone, tokenizer = load_backbone(configs[0].model)
    # One task for all trials, capped as their configs say (every trial has the same cap).
    task = load_task(configs[0].task, **configs[0].task_kwargs())
    shared = {"backbone": backbone, "tokenizer": tokenizer, "task": task}
    loaded = time.time() - spec["t0"]
    fits: list[dict[str, float]] = []

    def fit(run: TrainingRun) -> None:
        start = time.time() - spec["t0"]
        result = run.fit()
        fits.append(
            {
                "start": start,
                "end": time.time() - spec["t0"],
                # Per epoch (the final metrics keep only the best epoch's validation).
                "samples_per_second": statistics.median(
                    e.metrics["samples_per_second"] for e in result.history
                ),
            }
        )

    if not spec["pack"]:
        for config in configs:
            fit(TrainingRun(config, device=spec["device"], **shared))
    else:
        pack = Pack(recompute=spec["recompute"])

        def member(config: Any) -> Any:
            def body(m: PackMember) -> None:
                run = TrainingRun(config, device=spec["device"], **shared)
                m.attach(run)
                fit(run)

            return body

        for i, config in enumerate(configs):
            while len(pack.running) >= spec["pack"]:  # the next trial joins as one ends
                time.sleep(0.02)
            pack.start(f"t{i}", member(config))
        pack.join()
        errors = [repr(m.error) for m in pack.members.values() if m.error is not None]
        if errors:
            raise RuntimeError("; ".join(errors))
    cuda = spec["device"].startswith("cuda")
    return {
        "loaded": loaded,
        "fits": fits,
        "max_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }


# -- the measurement --------------------------------------------------------------------------
def _gpu_used_bytes() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
    except Exception:  # no NVML binding: the same number from nvidia-smi
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(float(out.stdout.split()[0]) * 2**20)


def _children_pss_bytes() -> int:
    import psutil

    return sum(pss_bytes(p.pid) for p in psutil.Process().children(recursive=True))


def measure(runner: str, k: int, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train 2K trials with ``runner`` at concurrency K; see the module docstring."""
    trials = [trial_settings(i, model, args) for i in range(2 * k)]
    if runner == "processes":  # K processes, two trials each
        specs = [{"trials": trials[i::k], "pack": 0, "recompute": False} for i in range(k)]
    else:
        specs = [{"trials": trials, "pack": k, "recompute": runner == "packed-recompute"}]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    if runner != "processes":  # as the packed runner starts its servers
        env.update(PACK_PROCESS_ENV)
    # The device's used memory (on CPU: the PSS of this process's children) over its level now.
    read = _gpu_used_bytes if args.device.startswith("cuda") else _children_pss_bytes
    base = read()
    sampler = PeakSampler(lambda: (read() - base, {}), interval=0.2)
    sampler.start()
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                json.dumps({**s, "t0": t0, "device": args.device}),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for s in specs
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t0
    peak = sampler.stop()
    if any(p.returncode for p in procs):
        raise RuntimeError(
            f"{runner} K={k}: a worker failed (exit {[p.returncode for p in procs]})"
        )
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    fits = [f for r in results for f in r["fits"]]
    # The training phase: while every slot was busy, samples per second of all trials at once.
    rates = [f["samples_per_second"] for f in fits]
    return {
        "runner": runner,
        "concurrent": k,
        "backbone": model.name,
        "settings": settings_key(args),
        "trials": len(fits),
        "wall_seconds": wall,
        "trial_epochs_per_hour": len(fits) / wall * 3600,
        "training_samples_per_second": statistics.median(rates) * k,
        "load_seconds": max(r["loaded"] for r in results),
        "peak_bytes": peak,
        "max_allocated_bytes": [r["max_allocated_bytes"] for r in results],
    }


def settings_key(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "device": args.device,
        "max_samples": args.max_samples,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backbone and runner: GiB per extra trial at each K; per K, packed over processes."""
    out: dict[str, Any] = {}
    by = {(r["backbone"], r["runner"], r["concurrent"]): r for r in rows}
    for (backbone, runner, k), row in sorted(by.items()):
        entry = out.setdefault(backbone, {"extra_trial_gib": {}, "throughput_ratio": {}})
        base = by.get((backbone, runner, 1))
        if base is not None and k > 1:
            extra = (row["peak_bytes"] - base["peak_bytes"]) / (k - 1) / GIB
            entry["extra_trial_gib"].setdefault(runner, {})[k] = round(extra, 3)
        alone = by.get((backbone, "processes", k))
        if runner != "processes" and alone is not None:
            ratio = row["trial_epochs_per_hour"] / alone["trial_epochs_per_hour"]
            entry["throughput_ratio"].setdefault(runner, {})[k] = round(ratio, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="write the assets to this folder and stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--assets", type=Path, default=Path(".device"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--ks", default="1,2,4,8,16")
    parser.add_argument("--backbones", default="minilm,roberta-base")
    parser.add_argument("--runners", default="processes,packed")
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/packed_gpu.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.prepare:
        prepare(args.prepare)
        return
    started = time.monotonic()
    os.environ["IPT_RAY_CACHE"] = str((args.assets / "cache").resolve())
    unknown = set(args.runners.split(",")) - set(RUNNERS)
    if unknown or not set(args.backbones.split(",")) <= set(BACKBONES):
        raise SystemExit(f"--runners from {RUNNERS}, --backbones from {tuple(BACKBONES)}")
    rows: list[dict[str, Any]] = (
        json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    )
    work = args.out.parent / "packed-gpu-backbones"
    for backbone in args.backbones.split(","):
        model = build_backbone(backbone, args.assets, work)
        for k in (int(k) for k in args.ks.split(",")):
            for runner in args.runners.split(","):  # side by side at each K
                done = any(
                    (r["backbone"], r["runner"], r["concurrent"], r["settings"])
                    == (model.name, runner, k, settings_key(args))
                    for r in rows
                )
                if done:
                    continue
                if args.budget_s is not None and time.monotonic() - started > args.budget_s:
                    print(f"budget spent: {backbone} {runner} K={k} not measured", flush=True)
                    continue
                row = measure(runner, k, model, args)
                rows.append(row)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"rows": rows}, indent=2))
                print(
                    f"{backbone} {runner} K={k}: {row['trials']} trials in "
                    f"{row['wall_seconds']:.0f} s, "
                    f"{row['trial_epochs_per_hour']:.0f} trial-epochs/h, peak "
                    f"{row['peak_bytes'] / GIB:.2f} GiB",
                    flush=True,
                )
    summary = summarize(rows)
    args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
