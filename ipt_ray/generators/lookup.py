"""``ipt-lookup``: IPT's token-level strategy (Jiang et al., 2022).

A trainable vocabulary-sized table; an instance's prompt is the table rows of its first P
input tokens. Conditions on the instance's first P token ids. In ``hybrid`` mode the prompt
is a static task prompt plus ``scale`` times the instance part (IPT's prefix + instance mode).

Trainable: ``V * H`` (full table) or ``V * r + r * H`` (rank r), plus ``P * H`` in hybrid mode.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import TokenTable, first_positions, init_static_prompt
from ipt_ray.generators.configs import LookupConfig, LookupMode, PromptInit


class LookupPrompt(PromptGenerator):
    """Prompt = table rows of the instance's first P tokens (+ a static prompt in hybrid)."""

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
