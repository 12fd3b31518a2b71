"""``task``: a static task-level soft prompt at the input (Lester et al., 2021).

Conditions on nothing: every instance gets the same P vectors. Trainable: ``P * H``.
"""

from __future__ import annotations

from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import init_static_prompt
from ipt_ray.generators.configs import TaskPromptConfig


class TaskPrompt(PromptGenerator):
    """The same (P, H) prompt for every instance."""

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
