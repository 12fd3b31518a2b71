"""GPU figures: samples per second in fp32 and bf16 autocast, and trials per GPU.

Two parts, both on ``--device`` (default ``cuda``):

1. ``throughput``: a training step (forward, backward, fused AdamW on the trainable
   parameters, as :class:`ipt_ray.training.loop.TrainingRun` does it) and an evaluation forward of
   frozen-backbone models, per backbone, generator and precision, on random token ids (batch
   ``--batch-size``, ``--max-length`` tokens; the speed of a step does not depend on the
   weights' values). Backbones: ``minilm`` (the real weights) and ``roberta-base`` (RoBERTa's
   default config, 12 layers, hidden 768, 125M parameters, random weights: the real ones cannot
   be downloaded offline). Variants are interleaved round by round; medians are reported, with
   the peak memory the device allocated for each.
2. ``fractional``: one search (``task`` on ``mr`` with MiniLM, ``--trials`` trials of one
   epoch on ``--max-samples`` sentences, actor runner) per GPU share in ``--shares``: with
   share 0.25 Ray places four trials on one GPU at a time. Reported: trials per hour and the
   median in-trial samples per second.

    .venv/bin/python benchmarks/gpu.py [--parts throughput,fractional] [--device cuda]
        [--rounds 5] [--steps 10] [--shares 1,0.5,0.25] [--trials 8]
        [--out benchmarks/out/gpu.json]

``--device cpu --backbones minilm --fake-gpus 1`` runs both parts on a machine without a
GPU (a check of the script: bf16 autocast on CPU, Ray told it has one GPU to share).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

GENERATORS = ["task", "prefix", "ipt-encoder", "idpg"]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: Runs ``--steps`` steps with this autocast dtype (None: fp32) and waits for the device.
StepFn = Callable[[torch.dtype | None], None]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def make_backbone(name: str) -> tuple[Any, Any]:
    """(frozen backbone, tokenizer): MiniLM's real weights, or a random roberta-base."""
    from transformers import AutoConfig, AutoModel

    from ipt_ray.core.backbone import freeze, load_backbone, load_tokenizer

    if name == "minilm":
        return load_backbone("minilm")
    if name == "roberta-base":
        torch.manual_seed(0)
        return freeze(AutoModel.from_config(AutoConfig.for_model("roberta"))), load_tokenizer(
            "minilm"
        )
    raise SystemExit(f"unknown backbone {name!r}; allowed: minilm, roberta-base")


def step_fns(
    backbone: Any, tokenizer: Any, generator: str, args: argparse.Namespace, device: torch.device
) -> tuple[StepFn, StepFn, int]:
    """(train step, eval forward, trainable parameters) of one generator on ``backbone``."""
    from ipt_ray.core.backbone import uses_token_types
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.core.model import build_model
    from ipt_ray.training.setup import make_optimizer

    config = TrainConfig(model="minilm", generator=generator, max_length=args.max_length)
    config.validate()
    model, _ = build_model(config, 2, backbone=backbone, tokenizer=tokenizer)
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    vocab = backbone.get_input_embeddings().num_embeddings
    ids = torch.randint(5, vocab, (args.batch_size, args.max_length), device=device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch_size,), device=device)
    types = torch.zeros_like(ids) if uses_token_types(backbone) else None

    def autocast(dtype: torch.dtype | None) -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def train(dtype: torch.dtype | None) -> None:
        for _ in range(args.steps):
            with autocast(dtype):
                logits = model(ids, mask, types)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)

    @torch.no_grad()
    def evaluate(dtype: torch.dtype | None) -> None:
        for _ in range(args.steps):
            with autocast(dtype):
                model(ids, mask, types)
        synchronize(device)

    return train, evaluate, model.num_trainable_params()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backbone_name in args.backbones.split(","):
        backbone, tokenizer = make_backbone(backbone_name)
        backbone.to(device)
        variants = {}
        for generator in args.generators.split(","):
            train, evaluate, trainable = step_fns(backbone, tokenizer, generator, args, device)
            for precision, dtype in PRECISIONS.items():
                variants[(generator, precision)] = (train, evaluate, dtype, trainable)
        times: dict[tuple[str, str, str], list[float]] = {}
        peaks: dict[tuple[str, str], int] = {}
        for (generator, precision), (train, evaluate, dtype, _) in variants.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            train(dtype)  # warm-up (kernels, optimizer state)
            evaluate(dtype)
            if device.type == "cuda":
                peaks[(generator, precision)] = torch.cuda.max_memory_allocated(device)
        for _ in range(args.rounds):
            for (generator, precision), (train, evaluate, dtype, _) in variants.items():
                for kind, fn in (("train", train), ("eval", evaluate)):
                    start = time.perf_counter()
                    fn(dtype)
                    elapsed = time.perf_counter() - start
                    times.setdefault((generator, precision, kind), []).append(
                        args.steps * args.batch_size / elapsed
                    )
        backbone_params = sum(p.numel() for p in backbone.parameters())
        for (generator, precision), (*_, trainable) in variants.items():
            row = {
                "backbone": backbone_name,
                "backbone_params": backbone_params,
                "generator": generator,
                "precision": precision,
                "trainable_params": trainable,
                "train_samples_per_s": statistics.median(times[(generator, precision, "train")]),
                "eval_samples_per_s": statistics.median(times[(generator, precision, "eval")]),
                "peak_gib": peaks.get((generator, precision), 0) / 2**30,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        del variants, backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def fractional(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray

    from ipt_ray.tuning.run import run_search
    from ipt_ray.tuning.space import parse_space

    rows = []
    gpus = args.fake_gpus if args.fake_gpus is not None else torch.cuda.device_count()
    ray.init(num_gpus=gpus, log_to_driver=False)
    try:
        for share in (float(s) for s in args.shares.split(",")):
            concurrent = max(1, int(gpus / share))
            space = parse_space(
                f"name: gpu-share-{share:g}\n"
                "fixed: {task: mr, model: minilm, epochs: 1, batch_size: 32, max_length: 64, "
                f"max_samples: {args.max_samples}, precision: {args.precision}}}\n"
                f"search: {{num_samples: {args.trials}, seed: 0, scheduler: none}}\n"
                "params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
                "  generator: {choices: {task: {}}}\n"
            )
            root = Path(tempfile.mkdtemp(prefix="ipt-ray-gpu-"))
            start = time.perf_counter()
            summary = run_search(
                space,
                tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                artifact_root=root / "mlartifacts",
                storage=root / "ray",
                cpus_per_worker=args.cpus_per_trial,
                gpus_per_worker=share,
                max_concurrent=concurrent,
                runner="actor",
            )
            seconds = time.perf_counter() - start
            speeds = [
                float(t.metrics["samples_per_second"])
                for t in summary.trials
                if t.metrics.get("samples_per_second") is not None
            ]
            row = {
                "gpu_share": share,
                "concurrent": concurrent,
                "trials": len(summary.trials),
                "seconds": seconds,
                "trials_per_hour": 3600 * len(summary.trials) / seconds,
                "median_trial_samples_per_s": statistics.median(speeds) if speeds else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="throughput,fractional")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbones", default="minilm,roberta-base")
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--shares", default="1,0.5,0.25")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=4000)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--precision", default="auto", help="the searches' precision")
    parser.add_argument("--fake-gpus", type=float, help="tell Ray this many GPUs (a CPU check)")
    parser.add_argument("--out", default="benchmarks/out/gpu.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; allowed: --device cpu (a check of the script)")
    result: dict[str, Any] = {"args": vars(args), "device": device_name(device)}
    parts = args.parts.split(",")
    if "throughput" in parts:
        result["throughput"] = throughput(args, device)
    if "fractional" in parts:
        result["fractional"] = fractional(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"device: {result['device']}; written {args.out}")


if __name__ == "__main__":
    main()
