"""``prefix``: deep prompts, a key/value prefix in every attention layer (P-tuning v2).

Conditions on nothing. Trainable, without reparameterisation: ``L * 2 * P * KV * D``
(``2 * L * P * H`` for multi-head attention); with the MLP of width M:
``P * H + (H * M + M) + (M * 2 * L * KV * D + 2 * L * KV * D)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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


@dataclass
class PrefixConfig(GeneratorConfig):
    reparam: bool = help_field(
        False,
        "produce the prefix through an MLP from P embeddings (prefix tuning); the MLP "
        "can be folded away after training",
    )
    reparam_hidden: int = help_field(512, "width M of the reparameterisation MLP")
    init_std: float = help_field(0.02, "standard deviation of the initial prefix")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("reparam_hidden", self.reparam_hidden, 1, 65536, integer=True)


def kv_width(backbone: BackboneInfo) -> int:
    """Width of one layer's key (or value) vector: KV heads times head width."""
    return backbone.num_kv_heads * backbone.head_dim


@register
class PrefixTuning(PromptGenerator):
    """A learned (L, 2, KV, P, D) prefix shared by every instance."""

    name = "prefix"
    config_class = PrefixConfig
    default_lr = 1e-2

    def __init__(self, config: PrefixConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: PrefixConfig = config
        P, L, W = config.prompt_length, backbone.num_layers, kv_width(backbone)
        self.mlp: nn.Sequential | None
        if config.reparam:
            self.embedding = nn.Parameter(torch.randn(P, backbone.hidden_size) * config.init_std)
            self.mlp = nn.Sequential(
                nn.Linear(backbone.hidden_size, config.reparam_hidden),
                nn.Tanh(),
                nn.Linear(config.reparam_hidden, L * 2 * W),
            )
        else:
            self.prefix = nn.Parameter(torch.randn(L, 2, P, W) * config.init_std)
            self.mlp = None
        self.dropout = nn.Dropout(config.dropout)

    @property
    def deep(self) -> bool:
        return True

    def static_prefix(self) -> torch.Tensor:
        """The instance-independent prefix as (L, 2, P, KV * D)."""
        if self.mlp is None:
            return self.prefix
        P, L = self.config.prompt_length, self.backbone.num_layers
        out = self.mlp(self.embedding)  # (P, L * 2 * W)
        return out.view(P, L, 2, -1).permute(1, 2, 0, 3)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        batch = inputs.input_ids.shape[0]
        prefix = self.dropout(self.static_prefix())
        return Prompts(
            layer_kv=split_heads(prefix.unsqueeze(2).expand(-1, -1, batch, -1, -1), self.backbone)
        )

    def expected_num_params(self) -> int:
        P, L, H, W = (
            self.config.prompt_length,
            self.backbone.num_layers,
            self.backbone.hidden_size,
            kv_width(self.backbone),
        )
        if not self.config.reparam:
            return L * 2 * P * W
        M = self.config.reparam_hidden
        return P * H + (H * M + M) + (M * L * 2 * W + L * 2 * W)


def split_heads(kv: torch.Tensor, backbone: BackboneInfo) -> torch.Tensor:
    """(L, 2, B, P, KV * D) -> (L, 2, B, KV, P, D), the layout :class:`Prompts` expects."""
    L, two, B, P, _ = kv.shape
    return kv.reshape(L, two, B, P, backbone.num_kv_heads, backbone.head_dim).transpose(3, 4)
