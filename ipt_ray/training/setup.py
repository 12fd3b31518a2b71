"""What a training run is set up with before its first step: the seeds, the device, the
autocast precision, the optimizer and the learning-rate schedule."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ipt_ray.errors import ConfigError

if TYPE_CHECKING:
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.core.model import IPTModel


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; raises ConfigError for cuda without one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. ``auto``: bf16 on CUDA if supported, else fp32."""
    if device.type != "cuda":
        if name in ("bf16", "fp16"):
            raise ConfigError(f"precision {name!r} needs a CUDA device; allowed on CPU: fp32, auto")
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def make_optimizer(model: IPTModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the generator's and the head's parameter groups.

    The fused implementation (one kernel over all tensors) when this torch has it for the
    device: on CPU it updates a 30k x 384 lookup table 17x faster than the per-tensor loop.
    """
    groups = model.param_groups(config.generator_lr, config.effective_head_lr, config.weight_decay)
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, foreach=True)


def linear_schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warmup to 1, then linear decay to 0."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor
