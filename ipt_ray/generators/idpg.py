"""``idpg``: IDPG's bottleneck generator (Wu et al., 2022).

Conditions on the frozen backbone's pooled representation s (B, H) of the instance (an extra
forward pass without prompt, no gradient): ``up(act(down(s)))`` gives P vectors at the input
layer, or (``placement=layers``) a key/value prefix for every layer, where a learned per-layer
vector is added to the bottleneck so that one up-projection serves all L layers.

Trainable (H hidden, M bottleneck, P length, L layers, W = KV heads * head width):
``input``: ``down + up`` with ``down = H*M + M`` and ``up = M*P*H + P*H``;
``layers``: ``down + L*M + M*2*P*W + 2*P*W``.
With ``weights=phm`` (rank n) each ``in x out`` matrix costs ``n**3 + in*out/n`` instead of
``in*out`` (biases unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

from ipt_ray.errors import ConfigError
from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import activation, kv_width, split_heads
from ipt_ray.generators.configs import IDPGConfig, Placement, Weights


class PHMLinear(nn.Module):
    """y = x W + b with W = sum_i A_i kron B_i (Zhang et al., 2021).

    A: (n, n, n), B: (n, in/n, out/n); parameters ``n**3 + in*out/n + out``.
    """

    def __init__(self, in_features: int, out_features: int, n: int) -> None:
        super().__init__()
        for name, size in (("input width", in_features), ("output width", out_features)):
            if size % n:
                raise ConfigError(f"phm_rank {n} must divide the {name} {size}")
        self.n = n
        self.A = nn.Parameter(torch.randn(n, n, n) / n)
        self.B = nn.Parameter(torch.empty(n, in_features // n, out_features // n))
        nn.init.xavier_uniform_(self.B)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def weight(self) -> torch.Tensor:
        """The (in, out) matrix sum_i kron(A_i, B_i)."""
        n, a, b = self.n, self.B.shape[1], self.B.shape[2]
        # kron(A_i, B_i)[(p, r), (q, s)] = A_i[p, q] * B_i[r, s]
        w = torch.einsum("ipq,irs->prqs", self.A, self.B)
        return w.reshape(n * a, n * b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight() + self.bias


def linear(in_features: int, out_features: int, config: IDPGConfig) -> nn.Module:
    if config.weights is Weights.PHM:
        return PHMLinear(in_features, out_features, config.phm_rank)
    return nn.Linear(in_features, out_features)


def linear_params(in_features: int, out_features: int, config: IDPGConfig) -> int:
    n = config.phm_rank
    if config.weights is Weights.PHM:
        return n**3 + in_features * out_features // n + out_features
    return in_features * out_features + out_features


class IDPGPrompt(PromptGenerator):
    """Prompt = up(act(down(pooled frozen representation)))."""

    needs_sentence_embedding = True

    def __init__(self, config: IDPGConfig, backbone: BackboneInfo) -> None:
        super().__init__(config, backbone)
        self.config: IDPGConfig = config
        H, M, P = backbone.hidden_size, config.bottleneck, config.prompt_length
        self.down = linear(H, M, config)
        self.act = activation(config.activation)
        self.layer_embedding: nn.Parameter | None = None
        if config.placement is Placement.LAYERS:
            self.layer_embedding = nn.Parameter(torch.zeros(backbone.num_layers, M))
            self.up = linear(M, 2 * P * kv_width(backbone), config)
        else:
            self.up = linear(M, P * H, config)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def deep(self) -> bool:
        return self.config.placement is Placement.LAYERS

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        if inputs.sentence_embedding is None:
            raise ValueError("idpg needs GeneratorInputs.sentence_embedding")
        s = inputs.sentence_embedding.float()  # (B, H)
        B, P = s.shape[0], self.config.prompt_length
        z = self.down(s)  # (B, M)
        if self.layer_embedding is None:
            prompt = self.up(self.act(z)).view(B, P, -1)  # (B, P, H)
            return Prompts(input=self.dropout(prompt))
        z = self.act(z.unsqueeze(0) + self.layer_embedding.unsqueeze(1))  # (L, B, M)
        kv = self.up(z).view(self.backbone.num_layers, B, 2, P, -1).transpose(1, 2)
        return Prompts(layer_kv=split_heads(self.dropout(kv), self.backbone))  # (L, 2, B, KV, P, D)

    def expected_num_params(self) -> int:
        H, M, P = self.backbone.hidden_size, self.config.bottleneck, self.config.prompt_length
        down = linear_params(H, M, self.config)
        if self.config.placement is Placement.LAYERS:
            L, W = self.backbone.num_layers, kv_width(self.backbone)
            return down + L * M + linear_params(M, 2 * P * W, self.config)
        return down + linear_params(M, P * H, self.config)
