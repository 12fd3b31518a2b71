"""``task``: a static task-level soft prompt at the input (Lester et al., 2021).

Conditions on nothing: every instance gets the same P vectors. Trainable: ``P * H``.
"""

from __future__ import annotations

import enum
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
    help_field,
)


class PromptInit(str, enum.Enum):
    """How a static prompt starts."""

    VOCAB = "vocab"  # rows of the frozen vocabulary embeddings, drawn at random
    RANDOM = "random"  # N(0, init_std^2)


@dataclass
class TaskPromptConfig(GeneratorConfig):
    init: PromptInit = help_field(
        PromptInit.VOCAB, "vocab: copy random rows of the vocabulary embeddings; random: normal"
    )
    init_std: float = help_field(0.02, "standard deviation of the random initialisation")


def init_static_prompt(
    length: int, backbone: BackboneInfo, init: PromptInit, std: float
) -> torch.Tensor:
    """A (length, H) starting prompt: vocabulary rows (Lester et al.) or normal noise."""
    if init is PromptInit.VOCAB and backbone.word_embeddings is not None:
        vocab = backbone.word_embeddings
        ids = torch.randint(0, vocab.shape[0], (length,))
        return vocab[ids].detach().clone().float()
    return torch.randn(length, backbone.hidden_size) * std


@register
class TaskPrompt(PromptGenerator):
    """The same (P, H) prompt for every instance."""

    name = "task"
    config_class = TaskPromptConfig
    default_lr = 3e-2

    def __init__(self, config: TaskPromptConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: TaskPromptConfig = config
        self.prompt = nn.Parameter(
            init_static_prompt(config.prompt_length, backbone, config.init, config.init_std)
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        batch = inputs.input_ids.shape[0]
        prompt = self.prompt.unsqueeze(0).expand(batch, -1, -1)  # (B, P, H)
        return Prompts(input=self.dropout(prompt))

    def expected_num_params(self) -> int:
        return self.config.prompt_length * self.backbone.hidden_size
