"""``ipt-lookup``: IPT's token-level strategy (Jiang et al., 2022).

A trainable vocabulary-sized table; an instance's prompt is the table rows of its first P
input tokens. Conditions on the instance's first P token ids. In ``hybrid`` mode the prompt
is a static task prompt plus ``scale`` times the instance part (IPT's prefix + instance mode).

Trainable: ``V * H`` (full table) or ``V * r + r * H`` (rank r), plus ``P * H`` in hybrid mode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ipt_ray.generators import register
from ipt_ray.generators.base import (
    BackboneInfo,
    GeneratorConfig,
    GeneratorInputs,
    PromptGenerator,
    Prompts,
    check_range,
    help_field,
)
from ipt_ray.generators.task import PromptInit, init_static_prompt


class LookupMode(str, enum.Enum):
    INPUT = "input"  # the instance prompt alone
    HYBRID = "hybrid"  # static task prompt + scale * instance prompt


@dataclass
class LookupConfig(GeneratorConfig):
    mode: LookupMode = help_field(
        LookupMode.INPUT,
        "input: instance prompt only; hybrid: static task prompt plus the scaled instance prompt",
    )
    rank: int = help_field(
        0,
        "0: a full V x H table initialised from the vocabulary "
        "embeddings; r > 0: a V x r table times an r x H projection",
    )
    scale: float = help_field(1.0, "hybrid mode: weight of the instance part")
    static_lr_scale: float = help_field(
        1.0, "hybrid mode: learning-rate multiplier of the static prompt"
    )
    init_std: float = help_field(0.02, "standard deviation of random initialisations")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rank", self.rank, 0, 65536, integer=True)
        check_range("scale", self.scale, 0.0, 1e3)
        check_range("static_lr_scale", self.static_lr_scale, 1e-3, 1e4)


class TokenTable(nn.Module):
    """A trainable (V, H) table, full or factorised as (V, r) @ (r, H)."""

    def __init__(self, backbone: BackboneInfo, rank: int, init_std: float) -> None:
        super().__init__()
        V, H = backbone.vocab_size, backbone.hidden_size
        self.proj: nn.Linear | None
        if rank == 0:
            if backbone.word_embeddings is not None:
                weight = backbone.word_embeddings.detach().clone().float()
            else:
                weight = torch.randn(V, H) * init_std
            self.table = nn.Embedding.from_pretrained(weight, freeze=False)
            self.proj = None
        else:
            self.table = nn.Embedding(V, rank)
            nn.init.normal_(self.table.weight, std=init_std)
            self.proj = nn.Linear(rank, H, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, H) vectors."""
        out = self.table(ids)
        return out if self.proj is None else self.proj(out)

    @staticmethod
    def num_params(backbone: BackboneInfo, rank: int) -> int:
        V, H = backbone.vocab_size, backbone.hidden_size
        return V * H if rank == 0 else V * rank + rank * H


def first_positions(vectors: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, H) vectors, (B, T) mask -> (B, length, H): the first ``length`` positions.

    Positions past an instance's last real token are zero vectors, whether they are padding
    in the batch or beyond T, so that a prompt never depends on what it is batched with.
    """
    out = vectors[:, :length] * mask[:, :length].unsqueeze(-1).to(vectors.dtype)
    missing = length - out.shape[1]
    return F.pad(out, (0, 0, 0, missing)) if missing > 0 else out


@register
class LookupPrompt(PromptGenerator):
    """Prompt = table rows of the instance's first P tokens (+ a static prompt in hybrid)."""

    name = "ipt-lookup"
    config_class = LookupConfig
    default_lr = 1e-2

    def __init__(self, config: LookupConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: LookupConfig = config
        self.table = TokenTable(backbone, config.rank, config.init_std)
        self.static: nn.Parameter | None = None
        if config.mode is LookupMode.HYBRID:
            self.static = nn.Parameter(
                init_static_prompt(
                    config.prompt_length, backbone, PromptInit.VOCAB, config.init_std
                )
            )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        P = self.config.prompt_length
        instance = self.table(inputs.input_ids[:, :P])  # (B, <=P, H)
        instance = first_positions(instance, inputs.attention_mask, P)  # (B, P, H)
        if self.static is not None:
            instance = self.static.unsqueeze(0) + self.config.scale * instance
        return Prompts(input=self.dropout(instance))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        if self.static is None:
            return super().param_groups(lr)
        return [
            {"params": list(self.table.parameters()), "lr": lr},
            {"params": [self.static], "lr": lr * self.config.static_lr_scale},
        ]

    def expected_num_params(self) -> int:
        static = (
            self.config.prompt_length * self.backbone.hidden_size if self.static is not None else 0
        )
        return TokenTable.num_params(self.backbone, self.config.rank) + static
