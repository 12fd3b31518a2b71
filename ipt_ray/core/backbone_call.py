"""One pass of the frozen backbone as a value: run it alone, or fuse several into one batch.

:meth:`ipt_ray.core.model.IPTModel.encode` describes the pass it needs as a
:class:`BackboneCall` (input vectors with the prompt in place, mask, token types, position
ids, a deep prefix, the layer it starts at) and hands it to the model's ``backbone_runner``,
by default :func:`run_call`. A pack of trials (:mod:`ipt_ray.training.pack`) substitutes a
runner that collects the calls of several trials over the same backbone and runs them as one
batch (:func:`fuse` and :func:`split`):

- rows keep their own sequence and are right-padded to the longest (padding is masked, its
  token type is 0 and its position ids continue the row's own), so every row has the
  positions it would have alone: prompt first, text after it, padding at the end where no
  real position attends to it (encoders mask it; decoders see only what comes before);
- a deep prefix (L, 2, B, KV, P, D) joins along the batch dimension, so rows of different
  trials attend to their own trial's prefix only; calls fuse only with the same prefix
  length P, the same start layer, and the same set of optional inputs (:meth:`BackboneCall.key`).

Attention never crosses rows and the backbone is frozen in eval mode (no dropout, no batch
statistics), so a fused row's output equals its output alone up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ipt_ray.core.attention import layer_prefix
from ipt_ray.core.layers import hidden_states_of, layer_list, with_hidden_states


@dataclass
class BackboneCall:
    """What one backbone pass takes.

    Attributes:
        inputs_embeds: (B, S, H) input vectors (prompt and text); with ``start_layer`` > 0
            the hidden states that layer ``start_layer`` takes instead.
        attention_mask: (B, S) 1 for positions that are attended to.
        token_type_ids: (B, S) or None (the architecture has none).
        position_ids: (B, S) or None (the architecture's own, 0..S-1 from its first).
        layer_kv: (L, 2, B, KV, P, D) a deep prefix for every attention layer, or None.
        start_layer: 0, or the first layer run (a late prompt: layers below it are skipped).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    layer_kv: torch.Tensor | None = None
    start_layer: int = 0

    @property
    def rows(self) -> int:
        return int(self.inputs_embeds.shape[0])

    @property
    def length(self) -> int:
        return int(self.inputs_embeds.shape[1])

    def key(self) -> tuple[Any, ...]:
        """Calls with equal keys can run as one batch (see the module docstring)."""
        prefix = None if self.layer_kv is None else tuple(self.layer_kv.shape[-3:])
        return (
            self.start_layer,
            self.token_type_ids is not None,
            self.position_ids is not None,
            prefix,
            self.inputs_embeds.dtype,
            self.inputs_embeds.device,
        )


#: Runs one call on a backbone and returns its last hidden states (B, S, H).
BackboneRunner = Callable[[PreTrainedModel, BackboneCall], torch.Tensor]


@contextmanager
def _layers_from(backbone: PreTrainedModel, start: int) -> Iterator[nn.Module]:
    """Within the block the backbone has only layers ``start``..L-1; yields the first."""
    parent, attr, layers = layer_list(backbone)
    setattr(parent, attr, layers[start:])
    try:
        yield layers[start]
    finally:
        setattr(parent, attr, layers)


def _row_slice(value: Any, start: int, stop: int, batch: int) -> Any:
    """``value`` (a layer's call argument) cut to rows start..stop-1 where it has B rows.

    Tensors of 2 or more dims whose first dim is B are per-row (masks, position ids, rotary
    tables); the rest (1-dim cache positions, broadcast masks, options) is shared.
    """
    if isinstance(value, torch.Tensor):
        return value[start:stop] if value.dim() >= 2 and value.shape[0] == batch else value
    if isinstance(value, tuple | list):
        return type(value)(_row_slice(v, start, stop, batch) for v in value)
    return value


def _join_rows(parts: list[Any]) -> Any:
    """The outputs of a layer's row chunks, joined back along the rows."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, tuple):
        return tuple(_join_rows([p[i] for p in parts]) for i in range(len(first)))
    return first  # None, or a value every chunk shares


@contextmanager
def recomputed_layers(backbone: PreTrainedModel, chunk_rows: int | None = None) -> Iterator[None]:
    """Within the block each transformer layer keeps only its input for the backward pass
    and recomputes the rest there (activation checkpointing, per layer).

    Activation memory falls from every layer's intermediates to one (B, S, H) input per
    layer, for one more forward pass of compute in the backward. With ``chunk_rows`` R each
    layer runs (and is recomputed) R rows at a time, so the backward pass holds one chunk's
    intermediates of one layer at a time, whatever B is: a pack passes its largest member
    batch, which keeps a fused pass's peak from growing with its members. Exact: the
    backbone is frozen in eval mode and rows never meet in a layer, so the recomputation
    repeats the forward bit for bit. A backbone whose layer list is unknown
    (:func:`~ipt_ray.core.layers.layer_list`) keeps everything.
    """
    from torch.utils.checkpoint import checkpoint

    try:
        _, _, layers = layer_list(backbone)
    except ValueError:
        yield
        return
    originals = [layer.forward for layer in layers]

    def checkpointed(forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            batch = hidden_states_of(args, kwargs).shape[0]
            if not chunk_rows or batch <= chunk_rows:
                return checkpoint(forward, *args, use_reentrant=False, **kwargs)
            parts = []
            for start in range(0, batch, chunk_rows):
                stop = min(start + chunk_rows, batch)
                part_args = _row_slice(args, start, stop, batch)
                part_kwargs = {k: _row_slice(v, start, stop, batch) for k, v in kwargs.items()}
                parts.append(checkpoint(forward, *part_args, use_reentrant=False, **part_kwargs))
            return _join_rows(parts)

        return run

    for layer, forward in zip(layers, originals, strict=True):
        layer.forward = checkpointed(forward)
    try:
        yield
    finally:
        for layer, forward in zip(layers, originals, strict=True):
            layer.forward = forward


def run_call(backbone: PreTrainedModel, call: BackboneCall) -> torch.Tensor:
    """The backbone's last hidden states (B, S, H) for ``call``.

    With ``start_layer`` k > 0 the backbone's own forward runs with its layer list cut to
    layers k..L-1, and a hook puts ``inputs_embeds`` in as layer k's input. What the
    embeddings compute from the placeholder is discarded; the backbone builds the mask.
    """
    kwargs: dict[str, Any] = {"attention_mask": call.attention_mask, "use_cache": False}
    if call.token_type_ids is not None:
        kwargs["token_type_ids"] = call.token_type_ids
    if call.position_ids is not None:
        kwargs["position_ids"] = call.position_ids
    if not call.start_layer:
        with layer_prefix(call.layer_kv):
            return backbone(inputs_embeds=call.inputs_embeds, **kwargs).last_hidden_state
    hidden = call.inputs_embeds

    def inject(
        module: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return with_hidden_states(args, kw, hidden)

    with _layers_from(backbone, call.start_layer) as first:
        handle = first.register_forward_pre_hook(inject, with_kwargs=True)
        try:
            with layer_prefix(call.layer_kv):
                return backbone(inputs_embeds=hidden.detach(), **kwargs).last_hidden_state
        finally:
            handle.remove()


def _pad(tensor: torch.Tensor, length: int, fill: torch.Tensor | float = 0) -> torch.Tensor:
    """Right-pad (B, S, ...) along dim 1 to ``length`` with ``fill``."""
    missing = length - int(tensor.shape[1])
    if missing <= 0:
        return tensor
    shape = (tensor.shape[0], missing, *tensor.shape[2:])
    if isinstance(fill, torch.Tensor):
        return torch.cat([tensor, fill], dim=1)
    return torch.cat([tensor, tensor.new_full(shape, fill)], dim=1)


def _continued_positions(positions: torch.Tensor, length: int) -> torch.Tensor:
    """(B, S) position ids continued past their last to ``length`` columns."""
    missing = length - int(positions.shape[1])
    if missing <= 0:
        return positions
    step = torch.arange(1, missing + 1, device=positions.device, dtype=positions.dtype)
    return _pad(positions, length, positions[:, -1:] + step)


def fuse(calls: list[BackboneCall]) -> BackboneCall:
    """One call whose rows are every call's rows, in order, right-padded to the longest.

    Raises:
        ValueError: the calls have different :meth:`BackboneCall.key`\\ s.
    """
    keys = {call.key() for call in calls}
    if len(keys) != 1:
        raise ValueError(f"calls of different kinds cannot be fused: {sorted(map(str, keys))}")
    length = max(call.length for call in calls)
    first = calls[0]
    return BackboneCall(
        inputs_embeds=torch.cat([_pad(c.inputs_embeds, length) for c in calls]),
        attention_mask=torch.cat([_pad(c.attention_mask, length) for c in calls]),
        token_type_ids=None
        if first.token_type_ids is None
        else torch.cat([_pad(c.token_type_ids, length) for c in calls]),  # type: ignore[arg-type]
        position_ids=None
        if first.position_ids is None
        else torch.cat([_continued_positions(c.position_ids, length) for c in calls]),  # type: ignore[arg-type]
        layer_kv=None if first.layer_kv is None else torch.cat([c.layer_kv for c in calls], dim=2),  # type: ignore[misc]
        start_layer=first.start_layer,
    )


def split(hidden: torch.Tensor, calls: list[BackboneCall]) -> list[torch.Tensor]:
    """Each call's (B_i, S_i, H) part of the fused pass's (sum B_i, max S_i, H) output."""
    out, row = [], 0
    for call in calls:
        out.append(hidden[row : row + call.rows, : call.length])
        row += call.rows
    return out


__all__ = ["BackboneCall", "BackboneRunner", "fuse", "run_call", "split"]
