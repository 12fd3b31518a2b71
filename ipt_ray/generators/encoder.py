"""``ipt-encoder``: IPT's encoder strategy (Jiang et al., 2022).

The instance's token vectors (the frozen input embeddings, or a trainable lookup table) go
through a small encoder (``cnn``, ``lstm`` or ``mlp``) of width h. With ``readout=tokens``
(the default) its outputs at the first P positions, projected back to H, are the prompt; it
conditions on the whole instance (``lstm``), windows of tokens (``cnn``) or each token alone
(``mlp``). With ``readout=pooled`` (IPT's sentence encoders) its outputs are pooled over the
text's real tokens, max for ``cnn`` and mean for ``lstm`` (``mlp`` encodes the mean input
vector), and one projection gives all P vectors: every prompt vector sees the whole text.

``cnn`` runs ``num_kernels`` convolutions of windows k, k + 1, ... (k = ``kernel_size``),
their outputs side by side (width h' = n·h); ``lstm`` stacks ``lstm_layers`` bidirectional
layers (h' = 2h); ``mlp`` is one layer (h' = h).

Trainable (H hidden size, h width, k kernel size, n kernels, l LSTM layers, P length):
the encoder, ``mlp``: ``H*h + h``; ``cnn``: the sum over windows k_i of ``H*h*k_i + h``;
``lstm``: ``8*(H*h + h*h + 2*h) + (l - 1) * 8*(3*h*h + 2*h)``; plus the projection,
``tokens``: ``h'*H + H``, ``pooled``: ``h'*P*H + P*H``; plus ``V * H`` when ``source=lookup``.
(``ipt-prefix`` asks for other output vectors, width O = 2W: read O for H in the projection.)
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from ipt_ray.generators.base import BackboneInfo, GeneratorInputs, PromptGenerator, Prompts
from ipt_ray.generators.blocks import TokenTable, first_positions
from ipt_ray.generators.configs import EncoderConfig, EncoderKind, Readout, TokenSource


def _masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d), (B, T) -> (B, d): the mean over real tokens."""
    weights = mask.unsqueeze(-1).to(vectors.dtype)
    return (vectors * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _masked_max(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d), (B, T) -> (B, d): the per-feature maximum over real tokens."""
    padding = ~mask.unsqueeze(-1).bool()
    return vectors.masked_fill(padding, torch.finfo(vectors.dtype).min).max(dim=1).values


class EncoderPrompt(PromptGenerator):
    """Prompt = P vectors read from a small encoder over the instance's token vectors."""

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
        elif config.encoder is EncoderKind.CNN and config.num_kernels == 1:
            # One window: the layout (and checkpoint keys) ipt-encoder always had.
            self.encoder = nn.Conv1d(H, h, config.kernel_size, padding=config.kernel_size // 2)
            out_width = h
        elif config.encoder is EncoderKind.CNN:
            self.encoder = nn.ModuleList(nn.Conv1d(H, h, k) for k in config.kernel_sizes)
            out_width = h * config.num_kernels
        else:
            self.encoder = nn.LSTM(
                H, h, num_layers=config.lstm_layers, batch_first=True, bidirectional=True
            )
            out_width = 2 * h
        pooled = config.readout is Readout.POOLED
        per_instance = config.prompt_length if pooled else 1
        self.out = nn.Linear(out_width, per_instance * self.output_width)
        self.dropout = nn.Dropout(config.dropout)

    def _convolve(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, h'): each window's convolution, GELU, side by side."""
        x = vectors.transpose(1, 2)  # (B, H, T)
        if isinstance(self.encoder, nn.Conv1d):
            return F.gelu(self.encoder(x)).transpose(1, 2)
        outs = []
        convs = cast(nn.ModuleList, self.encoder)  # several windows
        for k, conv in zip(self.config.kernel_sizes, convs, strict=True):
            # Output t sees tokens t - (k-1)//2 .. t + k//2: T outputs for odd and even k.
            outs.append(F.gelu(conv(F.pad(x, ((k - 1) // 2, k // 2)))))
        return torch.cat(outs, dim=1).transpose(1, 2)

    def encode(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) token vectors and (B, T) mask -> (B, T, h') contextual states."""
        vectors = vectors * mask.unsqueeze(-1).to(vectors.dtype)  # padding contributes nothing
        kind = self.config.encoder
        if kind is EncoderKind.MLP:
            return self.encoder(vectors)
        if kind is EncoderKind.CNN:
            return self._convolve(vectors)
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
        mask, P = inputs.attention_mask, self.config.prompt_length
        if self.config.readout is Readout.TOKENS:
            states = self.encode(vectors, mask)  # (B, T, h')
            return self.out(first_positions(states, mask, P))
        kind = self.config.encoder
        if kind is EncoderKind.MLP:  # IPT's MLP: over the mean-pooled input vectors
            sentence = self.encoder(_masked_mean(vectors, mask))  # (B, h)
        elif kind is EncoderKind.CNN:  # IPT's TextCNN: max over time
            sentence = _masked_max(self.encode(vectors, mask), mask)  # (B, n*h)
        else:
            sentence = _masked_mean(self.encode(vectors, mask), mask)  # (B, 2h)
        return self.out(sentence).view(sentence.shape[0], P, -1)

    def forward(self, inputs: GeneratorInputs) -> Prompts:
        return Prompts(input=self.dropout(self.instance_vectors(inputs)))  # (B, P, H)

    def expected_num_params(self) -> int:
        H, h, config = self.backbone.hidden_size, self.config.hidden, self.config
        o = self.output_width  # H unless another generator asked for other vectors
        kind = config.encoder
        if kind is EncoderKind.MLP:
            n, width = H * h + h, h
        elif kind is EncoderKind.CNN:
            n, width = sum(H * h * k + h for k in config.kernel_sizes), h * config.num_kernels
        else:
            n = 8 * (H * h + h * h + 2 * h) + (config.lstm_layers - 1) * 8 * (3 * h * h + 2 * h)
            width = 2 * h
        per_instance = config.prompt_length if config.readout is Readout.POOLED else 1
        n += width * per_instance * o + per_instance * o
        if self.table is not None:
            n += TokenTable.num_params(self.backbone, 0)
        return n
