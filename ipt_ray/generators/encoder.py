"""``ipt-encoder``: IPT's encoder strategy (Jiang et al., 2022).

The instance's token vectors (the frozen input embeddings, or a trainable lookup table) go
through a small encoder (``cnn``, ``lstm`` or ``mlp``) of width h; its outputs at the first P
positions, projected back to H, are the prompt. Conditions on the whole instance (``lstm``),
a window of ``kernel_size`` tokens (``cnn``) or each token alone (``mlp``).

Trainable (H hidden size, h width, k kernel size):
``mlp``: ``H*h + h + h*H + H``; ``cnn``: ``H*h*k + h + h*H + H``;
``lstm`` (bidirectional, h per direction): ``8*(H*h + h*h + 2*h) + 2*h*H + H``;
plus ``V * H`` when ``source=lookup``.
"""

from __future__ import annotations

import torch
from torch import nn

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import TokenTable, first_positions
from ipt_ray.generators.configs import EncoderConfig, EncoderKind, TokenSource


class EncoderPrompt(PromptGenerator):
    """Prompt = first P outputs of a small encoder over the instance's token vectors."""

    def __init__(
        self, config: EncoderConfig, backbone: BackboneInfo, output_width: int | None = None
    ) -> None:
        """``output_width``: the width of each of the P output vectors (default H; ``ipt-prefix``
        asks for a key/value pair's, 2 * W)."""
        super().__init__(config, backbone)
        self.config: EncoderConfig = config
        H, h = backbone.hidden_size, config.hidden
        self.output_width = H if output_width is None else output_width
        self.table = TokenTable(backbone, 0, 0.02) if config.source is TokenSource.LOOKUP else None
        if config.encoder is EncoderKind.MLP:
            self.encoder: nn.Module = nn.Sequential(nn.Linear(H, h), nn.GELU())
            out_width = h
        elif config.encoder is EncoderKind.CNN:
            self.encoder = nn.Conv1d(H, h, config.kernel_size, padding=config.kernel_size // 2)
            out_width = h
        else:
            self.encoder = nn.LSTM(H, h, batch_first=True, bidirectional=True)
            out_width = 2 * h
        self.out = nn.Linear(out_width, self.output_width)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) token vectors and (B, T) mask -> (B, T, h') contextual states."""
        vectors = vectors * mask.unsqueeze(-1).to(vectors.dtype)  # padding contributes nothing
        kind = self.config.encoder
        if kind is EncoderKind.MLP:
            return self.encoder(vectors)
        if kind is EncoderKind.CNN:
            return torch.nn.functional.gelu(self.encoder(vectors.transpose(1, 2))).transpose(1, 2)
        # Pack so that the backward direction starts at each instance's last real token.
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            vectors, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.encoder(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=vectors.shape[1]
        )
        return states

    def instance_vectors(self, inputs: GeneratorInputs) -> torch.Tensor:
        """(B, P, output_width): the instance's P output vectors, before dropout."""
        if self.table is not None:
            vectors = self.table(inputs.input_ids)
        else:
            vectors = inputs.token_embeddings.float()
        states = self.encode(vectors, inputs.attention_mask)  # (B, T, h')
        return self.out(first_positions(states, inputs.attention_mask, self.config.prompt_length))

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        return Prompts(input=self.dropout(self.instance_vectors(inputs)))  # (B, P, H)

    def expected_num_params(self) -> int:
        H, h, k = self.backbone.hidden_size, self.config.hidden, self.config.kernel_size
        o = self.output_width  # H unless another generator asked for other vectors
        kind = self.config.encoder
        if kind is EncoderKind.MLP:
            n = H * h + h + h * o + o
        elif kind is EncoderKind.CNN:
            n = H * h * k + h + h * o + o
        else:
            n = 8 * (H * h + h * h + 2 * h) + 2 * h * o + o
        if self.table is not None:
            n += TokenTable.num_params(self.backbone, 0)
        return n
