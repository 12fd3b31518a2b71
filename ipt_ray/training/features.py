"""Frozen-feature cache: what a run reads that no trainable parameter changes.

Because the backbone is frozen and in eval mode (see :mod:`ipt_ray.core.model`), two things are
fixed functions of the tokenized instance, computed once and reused across epochs and, through
files under ``cache_root()/features/``, across trials and searches on the same machine:

- :func:`sentence_features`: the pooled representation IDPG conditions on, (N, H) per split,
  one safetensors file per (backbone weights, tokenized data, pooling);
- :func:`layer_states`: a late prompt's text states at the input of layer ``prompt_layer``
  (the output of the frozen layers below it), per split the real tokens' (len_i, H) rows of
  every instance in one float32 ``.npy`` file with their offsets, per (backbone weights,
  tokenized data, layer). Read memory-mapped: concurrent trials on a machine share the pages,
  and a late prompt's epoch never runs the layers below it.

A file lock makes concurrent trials compute each once; writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ipt_ray.data import TokenizedSplit, batches, cache_root
from ipt_ray.data.cache import file_lock, load_keyed_tensors, save_keyed_tensors

if TYPE_CHECKING:
    from ipt_ray.core.model import IPTModel

FORMAT = 1
STATES_FORMAT = 1


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


def _cache_key(model: IPTModel, data: dict[str, TokenizedSplit], **what: object) -> tuple[str, str]:
    """(key, its sha256): what a cached feature depends on, the backbone's weights and the
    tokenized splits included."""
    key = json.dumps(
        {
            **what,
            "backbone": module_fingerprint(model.backbone),
            "splits": {name: data_fingerprint(split) for name, split in sorted(data.items())},
        },
        sort_keys=True,
    )
    return key, hashlib.sha256(key.encode()).hexdigest()


def sentence_features(
    model: IPTModel,
    data: dict[str, TokenizedSplit],
    *,
    device: torch.device,
    batch_size: int = 128,
    cache: bool = True,
) -> dict[str, torch.Tensor]:
    """The frozen pooled representation of every instance: split -> (N, H) float32 on CPU.

    ``model`` is an :class:`ipt_ray.core.model.IPTModel` (its ``sentence_embedding`` and
    ``pooling`` are used). With ``cache`` the result is read from / written to disk.
    """
    key, digest = _cache_key(model, data, format=FORMAT, pooling=model.pooling)
    path = cache_root() / "features" / f"{digest}.safetensors"
    if not cache:
        return _compute(model, data, device, batch_size)
    with file_lock(path.with_suffix(".lock")):
        cached = load_keyed_tensors(path, key)
        if cached is not None:
            return cached
        features = _compute(model, data, device, batch_size)
        save_keyed_tensors(path, key, features)
        return features


def _device_batches(
    split: TokenizedSplit, batch_size: int, device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor, Any]]]:
    """Batches of a split in order, with (input_ids, attention_mask, token_type_ids or None)
    on ``device``."""
    for batch in batches(split, batch_size):
        types = batch.get("token_type_ids")
        yield (
            batch,
            (
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                None if types is None else types.to(device),
            ),
        )


@torch.no_grad()
def _compute(
    model: IPTModel, data: dict[str, TokenizedSplit], device: torch.device, batch_size: int
) -> dict[str, torch.Tensor]:
    was_training = model.training
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for name, split in data.items():
        parts = []
        for _, inputs in _device_batches(split, batch_size, device):
            parts.append(model.sentence_embedding(*inputs).float().cpu())
        width = int(model.backbone.config.hidden_size)
        out[name] = torch.cat(parts) if parts else torch.empty(0, width)
    model.train(was_training)
    return out


@dataclass(frozen=True)
class LayerStates:
    """One split's cached text states at a layer.

    Instance i's real tokens have the rows ``values[offsets[i]:offsets[i + 1]]``.

    Attributes:
        values: (sum of lengths, H) float32, memory-mapped read-only.
        offsets: (N + 1,) int64.
    """

    values: np.ndarray
    offsets: np.ndarray

    def batch(self, index: torch.Tensor, width: int) -> torch.Tensor:
        """(B, width, H) states of the instances ``index`` (B,), zero past each one's end."""
        out = torch.zeros(len(index), width, self.values.shape[1])
        for row, i in enumerate(index.tolist()):
            start, end = int(self.offsets[i]), int(self.offsets[i + 1])
            n = min(end - start, width)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a read-only memory map
                out[row, :n] = torch.from_numpy(self.values[start : start + n])
        return out


def layer_states(
    model: IPTModel,
    data: dict[str, TokenizedSplit],
    *,
    device: torch.device,
    batch_size: int = 128,
) -> dict[str, LayerStates]:
    """The text states at the input of ``model.prompt_layer`` for every split (see the module
    docstring), from the cache or computed and written to it."""
    key, digest = _cache_key(model, data, format=STATES_FORMAT, layer=model.prompt_layer)
    folder = cache_root() / "features" / f"states-{digest}"
    with file_lock(folder.with_suffix(".lock")):
        if not _states_complete(folder, key, data):
            _write_states(model, data, device, batch_size, folder, key)
    return {
        name: LayerStates(
            np.load(folder / f"{name}.values.npy", mmap_mode="r"),
            np.load(folder / f"{name}.offsets.npy"),
        )
        for name in data
    }


def _states_complete(folder: Path, key: str, data: dict[str, TokenizedSplit]) -> bool:
    try:
        if (folder / "key.json").read_text("utf-8") != key:
            return False
    except OSError:
        return False
    return all((folder / f"{name}.values.npy").is_file() for name in data)


@torch.no_grad()
def _write_states(
    model: IPTModel,
    data: dict[str, TokenizedSplit],
    device: torch.device,
    batch_size: int,
    folder: Path,
    key: str,
) -> None:
    was_training = model.training
    model.eval()
    hidden = int(model.backbone.config.hidden_size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, split in data.items():
            lengths = split.attention_mask.sum(dim=1).to(torch.int64)
            offsets = np.zeros(len(split) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(lengths.numpy())
            values = np.lib.format.open_memmap(
                tmp / f"{name}.values.npy", mode="w+", dtype=np.float32,
                shape=(int(offsets[-1]), hidden),
            )  # fmt: skip
            for batch, inputs in _device_batches(split, batch_size, device):
                states, _ = model.frozen_states(*inputs)
                rows = states.float().cpu().numpy()
                for row, i in enumerate(batch["index"].tolist()):
                    start, end = int(offsets[i]), int(offsets[i + 1])
                    values[start:end] = rows[row, : end - start]
            values.flush()
            del values
            np.save(tmp / f"{name}.offsets.npy", offsets)
        (tmp / "key.json").write_text(key, "utf-8")
        for item in tmp.iterdir():
            item.chmod(0o644)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        model.train(was_training)
