"""Batches of a tokenised split, for training, evaluation and the feature cache alike."""

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
        mask = split.attention_mask[idx]
        width = max(int(mask.sum(dim=1).max().item()), 1)
        batch = {
            "input_ids": split.input_ids[idx, :width],
            "attention_mask": mask[:, :width],
            "labels": split.labels[idx],
            "index": idx,
        }
        if split.token_type_ids is not None:
            batch["token_type_ids"] = split.token_type_ids[idx, :width]
        yield batch
