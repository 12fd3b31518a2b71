"""Time one training step: frozen backbone + each generator, against full fine-tuning.

Same backbone (MiniLM by default), same real `mr` batches (batch 32, max length 64), same
threads; variants are interleaved round by round so that machine noise hits them alike, and
the median over rounds is reported. Also times the lower bound of a frozen step: forward plus
backward to the input embeddings only (no generator, no head update).

    .venv/bin/python benchmarks/step_time.py [--model minilm] [--rounds 7] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ipt_ray.core.backbone import load_backbone
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import build_model
from ipt_ray.data import batches, load_task, tokenize_task
from ipt_ray.training.setup import make_optimizer

GENERATORS = ["task", "prefix", "ipt-lookup", "ipt-encoder", "idpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/out/step_time.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    task = load_task("mr", seed=0)
    backbone, tokenizer = load_backbone(args.model)
    data = tokenize_task(task, tokenizer, args.max_length)["train"]
    batch_list = list(batches(data, args.batch_size))[: args.steps]

    steps: dict[str, Callable[[], None]] = {}
    for name in GENERATORS:
        config = TrainConfig(model=args.model, generator=name, max_length=args.max_length)
        config.validate()
        model, _ = build_model(config, task.num_labels, backbone=backbone, tokenizer=tokenizer)
        model.train()
        # As the loop does by default: frozen sentence vectors come from the feature cache.
        features = None
        if model.generator.needs_sentence_embedding:
            features = [
                model.sentence_embedding(
                    b["input_ids"], b["attention_mask"], b.get("token_type_ids")
                )
                for b in batch_list
            ]
        steps[name] = make_step(model, make_optimizer(model, config), batch_list, features)

    # Lower bound of a frozen step: forward plus backward to P prompt input vectors (no
    # generator, no head, no optimizer), same sequence length as an input prompt of P = 16.
    prompt_length = TrainConfig().prompt_length

    def lower_bound() -> None:
        for b in batch_list:
            emb = backbone.get_input_embeddings()(b["input_ids"])
            prompt = torch.zeros(emb.shape[0], prompt_length, emb.shape[2], requires_grad=True)
            mask = torch.cat(
                [torch.ones(emb.shape[0], prompt_length, dtype=torch.long), b["attention_mask"]],
                dim=1,
            )
            out = backbone(inputs_embeds=torch.cat([prompt, emb], 1), attention_mask=mask)
            out.last_hidden_state[:, prompt_length:].mean().backward()

    steps["lower bound (fwd+bwd to P prompt inputs)"] = lower_bound

    full, _ = load_backbone(args.model)
    full.requires_grad_(True)
    full.train()
    full_config = TrainConfig(model=args.model, generator="task", max_length=args.max_length)
    full_model, _ = build_model(full_config, task.num_labels, backbone=full, tokenizer=tokenizer)
    full_model.backbone.requires_grad_(True)  # build_model froze it; unfreeze for this baseline
    full_opt = torch.optim.AdamW(full_model.parameters(), lr=5e-5, fused=True)
    steps["full fine-tuning"] = make_step(full_model, full_opt, batch_list)

    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / len(batch_list))

    full_median = statistics.median(times["full fine-tuning"])
    rows = []
    lower = statistics.median(times["lower bound (fwd+bwd to P prompt inputs)"])
    print(f"{'variant':42s} {'median s/step':>14s} {'x full FT':>10s} {'x lower bound':>14s}")
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "median_s_per_step": median,
                "ratio_to_full": median / full_median,
                "ratio_to_lower_bound": median / lower,
            }
        )
        print(f"{name:42s} {median:14.3f} {median / full_median:10.2f} {median / lower:14.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}, indent=2)
    )


def make_step(model, optimizer, batch_list, features=None) -> Callable[[], None]:
    def step() -> None:
        for i, b in enumerate(batch_list):
            cached = None if features is None else features[i]
            logits = model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"), cached)
            loss = torch.nn.functional.cross_entropy(logits, b["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return step


if __name__ == "__main__":
    main()
