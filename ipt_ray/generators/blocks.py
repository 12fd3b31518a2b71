"""Building blocks that more than one generator uses (torch).

* :func:`init_static_prompt`: a static prompt's start (``task``; ``ipt-lookup`` hybrid mode).
* :class:`TokenTable` and :func:`first_positions`: a trainable token table and the first P
  positions of an instance (``ipt-lookup``, ``ipt-encoder``, ``ipt-prefix``).
* :func:`kv_width` and :func:`split_heads`: the key/value prefix layout (``prefix``, ``idpg``,
  ``ipt-prefix``).
* :func:`activation`: a bottleneck's nonlinearity (``idpg``, ``lpt``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ipt_ray.generators.base import BackboneInfo
from ipt_ray.generators.configs import Activation, PromptInit

_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.TANH: nn.Tanh,
    Activation.RELU: nn.ReLU,
    Activation.GELU: nn.GELU,
}


def activation(kind: Activation) -> nn.Module:
    """The nonlinearity module of an ``activation`` knob."""
    return _ACTIVATIONS[kind]()


def init_static_prompt(
    length: int, backbone: BackboneInfo, init: PromptInit, std: float
) -> torch.Tensor:
    """A (length, H) starting prompt: vocabulary rows (Lester et al.) or normal noise."""
    if init is PromptInit.VOCAB and backbone.word_embeddings is not None:
        vocab = backbone.word_embeddings
        ids = torch.randint(0, vocab.shape[0], (length,))
        return vocab[ids].detach().clone().float()
    return torch.randn(length, backbone.hidden_size) * std


class TokenTable(nn.Module):
    """A trainable (V, H') table, full or factorised as (V, r) @ (r, H').

    H' is ``width`` (default H). A full table of width H starts as the vocabulary embeddings;
    any other starts as N(0, init_std^2).
    """

    def __init__(
        self, backbone: BackboneInfo, rank: int, init_std: float, width: int | None = None
    ) -> None:
        super().__init__()
        V = backbone.vocab_size
        H = backbone.hidden_size if width is None else width
        self.proj: nn.Linear | None
        if rank == 0:
            if backbone.word_embeddings is not None and width in (None, backbone.hidden_size):
                weight = backbone.word_embeddings.detach().clone().float()
            else:
                weight = torch.randn(V, H) * init_std
            self.table = nn.Embedding.from_pretrained(weight, freeze=False)
            self.proj = None
        else:
            self.table = nn.Embedding(V, rank)
            nn.init.normal_(self.table.weight, std=init_std)
            self.proj = nn.Linear(rank, H, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, H) vectors."""
        out = self.table(ids)
        return out if self.proj is None else self.proj(out)

    @staticmethod
    def num_params(backbone: BackboneInfo, rank: int, width: int | None = None) -> int:
        V = backbone.vocab_size
        H = backbone.hidden_size if width is None else width
        return V * H if rank == 0 else V * rank + rank * H


def first_positions(vectors: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, H) vectors, (B, T) mask -> (B, length, H): the first ``length`` positions.

    Positions past an instance's last real token are zero vectors, whether they are padding
    in the batch or beyond T, so that a prompt never depends on what it is batched with.
    """
    out = vectors[:, :length] * mask[:, :length].unsqueeze(-1).to(vectors.dtype)
    missing = length - out.shape[1]
    return F.pad(out, (0, 0, 0, missing)) if missing > 0 else out


def kv_width(backbone: BackboneInfo) -> int:
    """Width of one layer's key (or value) vector: KV heads times head width."""
    return backbone.num_kv_heads * backbone.head_dim


def split_heads(kv: torch.Tensor, backbone: BackboneInfo) -> torch.Tensor:
    """(L, 2, B, P, KV * D) -> (L, 2, B, KV, P, D), the layout :class:`Prompts` expects."""
    L, two, B, P, _ = kv.shape
    return kv.reshape(L, two, B, P, backbone.num_kv_heads, backbone.head_dim).transpose(3, 4)
