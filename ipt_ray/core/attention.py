"""Deep prompts: one attention function that prepends a per-layer key/value prefix.

Registered in transformers' ``AttentionInterface`` as ``ipt_prefix``, it wraps SDPA. Outside
a :func:`layer_prefix` block it *is* SDPA, so a backbone set to it behaves exactly as before.
Inside, the n-th attention call of the forward pass gets layer n's prefix: keys and values
of shape (B, KV, P, D) are concatenated before the instance's own, and the attention mask
gains P always-visible columns. The query length does not change; position ids are the
caller's choice (:meth:`ipt_ray.core.model.IPTModel.encode` shifts the text to P..P+T-1, as a
key/value cache of length P would). Works for every architecture that routes attention
through the interface (BERT, RoBERTa, ELECTRA, DistilBERT, GPT-2, Llama, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "ipt_prefix"


@dataclass
class _PrefixState:
    kv: torch.Tensor  # (L, 2, B, KV, P, D)
    next_layer: int = 0


_ACTIVE: ContextVar[_PrefixState | None] = ContextVar("ipt_prefix_state", default=None)


@contextmanager
def layer_prefix(kv: torch.Tensor | None) -> Iterator[None]:
    """Within the block, attention layer n attends to ``kv[n]`` too.

    Args:
        kv: (L, 2, B, KV, P, D) or None (no prefix).

    Raises:
        RuntimeError: the forward pass inside the block called attention a number of times
            other than L (an architecture this mechanism does not fit).
    """
    if kv is None:
        yield
        return
    state = _PrefixState(kv)
    token = _ACTIVE.set(state)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
    if state.next_layer != kv.shape[0]:
        raise RuntimeError(
            f"deep prompt has {kv.shape[0]} layers but the backbone ran attention "
            f"{state.next_layer} times"
        )


def _extend_mask(
    mask: torch.Tensor | None,
    prefix: int,
    q_len: int,
    kv_len: int,
    causal: bool,
    device: torch.device,
) -> torch.Tensor | None:
    """Add ``prefix`` visible key columns in front of an SDPA mask (bool or additive)."""
    if mask is None:
        if not (causal and q_len > 1):
            return None  # everything visible before, and still
        own = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril(kv_len - q_len)
        mask = own[None, None]
    shape = (*mask.shape[:-1], prefix)
    if mask.dtype == torch.bool:
        block = torch.ones(shape, dtype=torch.bool, device=mask.device)
    else:
        block = torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([block, mask], dim=-1)


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SDPA attention with the active layer's prefix; query/key/value are (B, heads, T, D)."""
    state = _ACTIVE.get()
    if state is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    layer = state.next_layer
    state.next_layer += 1
    if layer >= state.kv.shape[0]:
        raise RuntimeError(f"deep prompt has {state.kv.shape[0]} layers; attention call {layer}")
    k_prefix = state.kv[layer, 0].to(key.dtype)  # (B, KV, P, D)
    v_prefix = state.kv[layer, 1].to(value.dtype)
    causal = kwargs.pop("is_causal", None)
    if causal is None:
        causal = bool(getattr(module, "is_causal", False))
    mask = _extend_mask(
        attention_mask, k_prefix.shape[2], query.shape[2], key.shape[2], causal, query.device
    )
    key = torch.cat([k_prefix, key], dim=2)
    value = torch.cat([v_prefix, value], dim=2)
    return sdpa_attention_forward(module, query, key, value, mask, is_causal=False, **kwargs)


AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
