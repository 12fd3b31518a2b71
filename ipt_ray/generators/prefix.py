"""``prefix``: deep prompts, a key/value prefix in every attention layer (P-tuning v2).

Conditions on nothing. Trainable, without reparameterisation: ``L * 2 * P * KV * D``
(``2 * L * P * H`` for multi-head attention); with the MLP of width M:
``P * H + (H * M + M) + (M * 2 * L * KV * D + 2 * L * KV * D)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import kv_width, split_heads
from ipt_ray.generators.configs import PrefixConfig


class PrefixTuning(PromptGenerator):
    """A learned (L, 2, KV, P, D) prefix shared by every instance."""

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
