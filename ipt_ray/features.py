"""Frozen-feature cache: what a generator reads that no trainable parameter changes.

IDPG conditions on the frozen backbone's pooled representation of the instance. Because the
backbone is frozen and in eval mode (see :mod:`ipt_ray.model`), that vector is a fixed function
of the tokenized instance: it is computed once per (backbone weights, tokenized data, pooling)
and reused across epochs, and, through a safetensors file under ``cache_root()/features/``,
across trials and searches on the same machine. A file lock makes concurrent trials compute it
once; writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ipt_ray.data import TokenizedSplit, cache_root
from ipt_ray.data.cache import atomic_path, file_lock

if TYPE_CHECKING:
    from ipt_ray.model import IPTModel

FORMAT = 1


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every parameter and buffer."""
    digest = hashlib.sha256()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(split: TokenizedSplit) -> str:
    digest = hashlib.sha256()
    for tensor in (split.input_ids, split.attention_mask, split.token_type_ids):
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def sentence_features(
    model: IPTModel,
    data: dict[str, TokenizedSplit],
    *,
    device: torch.device,
    batch_size: int = 128,
    cache: bool = True,
) -> dict[str, torch.Tensor]:
    """The frozen pooled representation of every instance: split -> (N, H) float32 on CPU.

    ``model`` is an :class:`ipt_ray.model.IPTModel` (its ``sentence_embedding`` and
    ``pooling`` are used). With ``cache`` the result is read from / written to disk.
    """
    key = json.dumps(
        {
            "format": FORMAT,
            "backbone": module_fingerprint(model.backbone),
            "pooling": model.pooling,
            "splits": {name: data_fingerprint(split) for name, split in sorted(data.items())},
        },
        sort_keys=True,
    )
    path = cache_root() / "features" / f"{hashlib.sha256(key.encode()).hexdigest()}.safetensors"
    if not cache:
        return _compute(model, data, device, batch_size)
    with file_lock(path.with_suffix(".lock")):
        cached = _load(path, key)
        if cached is not None:
            return cached
        features = _compute(model, data, device, batch_size)
        with atomic_path(path) as tmp:
            save_file(features, str(tmp), metadata={"key": key})
        return features


def _load(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("key") != key:
                return None
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError):
        return None


@torch.no_grad()
def _compute(
    model: IPTModel, data: dict[str, TokenizedSplit], device: torch.device, batch_size: int
) -> dict[str, torch.Tensor]:
    from ipt_ray.loop import batches

    was_training = model.training
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for name, split in data.items():
        parts = []
        for batch in batches(split, batch_size):
            types = batch.get("token_type_ids")
            parts.append(
                model.sentence_embedding(
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                    None if types is None else types.to(device),
                )
                .float()
                .cpu()
            )
        width = int(model.backbone.config.hidden_size)
        out[name] = torch.cat(parts) if parts else torch.empty(0, width)
    model.train(was_training)
    return out
