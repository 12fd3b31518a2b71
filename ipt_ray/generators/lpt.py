"""``lpt``: Late Prompt Tuning's instance-aware prompt generator (Liu et al., 2022).

The prompt joins the text at the input of layer k (``prompt_layer``; 0, unset, means the
middle layer L // 2, as the authors' layer 12 of RoBERTa-large's 24). It conditions on the
text's own frozen states there, the output of layers 0..k-1 (``GeneratorInputs.layer_states``,
the states layers k..L-1 then take, computed once without gradient or read from the features
cache): pooled to one vector s (B, H), ``up(act(down(s)))`` gives the P prompt vectors.

Pooling ``auto`` is the authors' naive prompt generator (xyltt/LPT, ``NPG``): the first
token's state on encoders, the last real token's on decoders; ``mean`` and ``max`` go over
the real tokens only, so that padding never changes a prompt.

Trainable (H hidden size, M bottleneck, P length): ``H*M + M + M*P*H + P*H``.
"""

from __future__ import annotations

import torch
from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import activation
from ipt_ray.generators.configs import LPTConfig, StatePooling


def pool_states(states: torch.Tensor, mask: torch.Tensor, how: StatePooling) -> torch.Tensor:
    """(B, T, H) states and (B, T) mask of a right-padded batch -> (B, H).

    ``how`` must be resolved (not ``auto``). Raises ValueError on ``auto``.
    """
    if how is StatePooling.FIRST:
        return states[:, 0]
    if how is StatePooling.LAST:
        last = mask.sum(dim=1).clamp(min=1) - 1  # (B,) index of the last real token
        return states[torch.arange(states.shape[0], device=states.device), last]
    real = mask.unsqueeze(-1).bool()  # (B, T, 1)
    if how is StatePooling.MEAN:
        weights = real.to(states.dtype)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if how is StatePooling.MAX:
        return states.masked_fill(~real, torch.finfo(states.dtype).min).max(dim=1).values
    raise ValueError(f"pooling {how.value!r} must be resolved before pooling")


class LatePromptGenerator(PromptGenerator):
    """Prompt = up(act(down(pool(text states at the prompt layer)))), (B, P, H)."""

    needs_layer_states = True

    def __init__(self, config: LPTConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: LPTConfig = config
        H, M, P = backbone.hidden_size, config.bottleneck, config.prompt_length
        self.pooling = config.pooling
        if self.pooling is StatePooling.AUTO:
            # A decoder's first token has seen nothing of the text; its last has seen it all.
            self.pooling = StatePooling.LAST if backbone.is_decoder else StatePooling.FIRST
        self.down = nn.Linear(H, M)
        self.act = activation(config.activation)
        self.up = nn.Linear(M, P * H)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        if inputs.layer_states is None:
            raise ValueError("lpt needs GeneratorInputs.layer_states (a late prompt's states)")
        states = inputs.layer_states.float()  # (B, T, H)
        s = pool_states(states, inputs.attention_mask, self.pooling)  # (B, H)
        prompt = self.up(self.act(self.down(s))).view(s.shape[0], self.config.prompt_length, -1)
        return Prompts(input=self.dropout(prompt))  # (B, P, H)

    def expected_num_params(self) -> int:
        H, M, P = self.backbone.hidden_size, self.config.bottleneck, self.config.prompt_length
        return H * M + M + M * P * H + P * H
