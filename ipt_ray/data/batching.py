"""Batches of tokenised text, for training, evaluation and the feature cache alike."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ipt_ray.data.tokenization import TokenizedSplit


def batches(
    split: TokenizedSplit, batch_size: int, order: torch.Tensor | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of a tokenized split, trimmed to their longest real sequence.

    Yields dicts with ``input_ids``/``attention_mask`` (B, T'), optional ``token_type_ids``,
    ``labels`` (B,) and ``index`` (B,) into the split.
    """
    index = torch.arange(len(split)) if order is None else order
    for start in range(0, len(index), batch_size):
        idx = index[start : start + batch_size]
        tokens = {"input_ids": split.input_ids[idx], "attention_mask": split.attention_mask[idx]}
        if split.token_type_ids is not None:
            tokens["token_type_ids"] = split.token_type_ids[idx]
        yield {**trim_padding(tokens), "labels": split.labels[idx], "index": idx}


def trim_padding(tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut right-padded (B, L) token tensors to the batch's longest real sequence T' <= L.

    At least one column stays (padding, masked out) when every text is empty, so the model
    always gets a (B, T') batch with T' >= 1. Needs B >= 1.
    """
    width = max(int(tokens["attention_mask"].sum(dim=1).max().item()), 1)
    return {key: value[:, :width].contiguous() for key, value in tokens.items()}
