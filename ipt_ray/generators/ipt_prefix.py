"""``ipt-prefix``: IPT's best published variant, a static deep prefix plus an instance part.

A P-tuning v2 prefix, keys and values of length P in every layer (the ``prefix`` generator's,
without reparameterisation), plus ``scale`` times an instance part: the instance's first P
token rows of a trainable vocabulary table (``source=lookup``, IPT token-level) or the first P
outputs of ipt-encoder's ``cnn``, ``lstm`` or ``mlp`` over the frozen input embeddings. The
instance part enters layer 0's prefix only (``layers=first``, the authors') or every layer's
(``layers=all``, the same part in each).

Shapes (B batch, P length, L layers, W = key/value heads x head width, = H for multi-head
attention): the instance part is (B, P, 2W), one vector per prefix position whose first W
entries add to that position's key and last W to its value, as in the authors' code
(IPT-Prompttuning/IPT, ``soft_template.py``: a vocabulary table of width 2H whose rows add to
layer 0's past key/values, 0.05 times). The static prefix is (L, 2, P, W); the sum is split
into KV heads of width D, (L, 2, B, KV, P, D), the layout every deep prompt takes.

Trainable: ``2·L·P·W`` (static) plus, for the instance part with output width O = 2W,
``lookup``: ``V·O`` (``rank`` r: ``V·r + r·O``); an encoder: ipt-encoder's formula
(:mod:`~ipt_ray.generators.encoder`) with O for H in the projection, e.g. ``mlp`` with token
readout ``H·h + h + h·O + O``.
"""

from __future__ import annotations

import torch
from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import TokenTable, first_positions, kv_width, split_heads
from ipt_ray.generators.configs import (
    InstanceSource,
    IPTPrefixConfig,
    PrefixConfig,
    PrefixLayers,
)
from ipt_ray.generators.encoder import EncoderPrompt
from ipt_ray.generators.prefix import PrefixTuning


class IPTPrefix(PromptGenerator):
    """Prefix (L, 2, B, KV, P, D) = static prefix + scale * instance part (layer 0 or all)."""

    def __init__(self, config: IPTPrefixConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: IPTPrefixConfig = config
        P, W = config.prompt_length, kv_width(backbone)
        self.static = PrefixTuning(
            PrefixConfig(prompt_length=P, init_std=config.init_std), backbone
        )
        self.table: TokenTable | None = None
        self.encoder: EncoderPrompt | None = None
        if config.source is InstanceSource.LOOKUP:
            self.table = TokenTable(backbone, config.rank, config.init_std, width=2 * W)
        else:
            self.encoder = EncoderPrompt(config.encoder_config(), backbone, output_width=2 * W)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def deep(self) -> bool:
        return True

    def instance_part(self, inputs: GeneratorInputs) -> torch.Tensor:
        """(B, P, 2W): keys' W entries then values' per prefix position; zero past the text."""
        if self.encoder is not None:
            return self.encoder.instance_vectors(inputs)
        assert self.table is not None  # one of the two is built, by source
        P = self.config.prompt_length
        rows = self.table(inputs.input_ids[:, :P])  # (B, <=P, 2W)
        return first_positions(rows, inputs.attention_mask, P)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        B, P = inputs.input_ids.shape[0], self.config.prompt_length
        static = self.static.static_prefix()  # (L, 2, P, W)
        kv = static.unsqueeze(2).expand(-1, -1, B, -1, -1)  # (L, 2, B, P, W)
        part = self.instance_part(inputs).view(B, P, 2, -1).permute(2, 0, 1, 3)  # (2, B, P, W)
        part = self.config.scale * part.unsqueeze(0)  # (1, 2, B, P, W)
        if self.config.layers is PrefixLayers.FIRST:
            kv = torch.cat([kv[:1] + part, kv[1:]], dim=0)
        else:
            kv = kv + part
        return Prompts(layer_kv=split_heads(self.dropout(kv), self.backbone))

    def expected_num_params(self) -> int:
        static = self.static.expected_num_params()
        if self.encoder is not None:
            return static + self.encoder.expected_num_params()
        width = 2 * kv_width(self.backbone)
        return static + TokenTable.num_params(self.backbone, self.config.rank, width)
