"""Checkpoints: trainable weights as safetensors, the run's config as JSON. No pickle.

A checkpoint directory holds:

- ``weights.safetensors``: generator and head tensors (keys ``generator.*``, ``head.*``);
- ``config.json``: the :class:`TrainConfig`, the label names, pooling, the task metric, the
  ipt-ray version and parameter counts: everything needed to rebuild the model;
- ``train_state.safetensors`` + ``train_state.json`` (optional): optimizer and scheduler
  state, epoch and best score, so that training can resume at the next epoch;
- ``best_weights.safetensors`` (optional): the best epoch's weights when they are not the
  current ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ipt_ray import __version__
from ipt_ray.constants import CONFIG_FILE, STATE_FILE, WEIGHTS_FILE

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = STATE_FILE
BEST_WEIGHTS_FILE = "best_weights.safetensors"


def _atomic_write_text(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8"
    ) as f:
        f.write(text)
    os.replace(f.name, path)


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_weights(directory: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``weights.safetensors`` and ``config.json`` (``meta`` plus the ipt-ray version)."""
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(weights, directory / WEIGHTS_FILE)
    _atomic_write_text(
        directory / CONFIG_FILE,
        json.dumps({**meta, "ipt_ray_version": __version__}, indent=2, sort_keys=True),
    )


def read_config(directory: Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint as a dict."""
    return dict(json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")))


def load_weights(directory: Path, *, best: bool = False) -> dict[str, torch.Tensor]:
    """The trainable tensors; ``best=True`` prefers ``best_weights.safetensors`` if present."""
    if best and (directory / BEST_WEIGHTS_FILE).exists():
        return load_file(str(directory / BEST_WEIGHTS_FILE))
    return load_file(str(directory / WEIGHTS_FILE))


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        scalars: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[key] = value
        per_param[str(index)] = scalars
    return tensors, {"param_groups": state["param_groups"], "scalars": per_param}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, scalars in meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(
    directory: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    _atomic_save_tensors(tensors, directory / TRAIN_STATE_TENSORS)
    _atomic_write_text(directory / TRAIN_STATE_JSON, json.dumps(meta, indent=2))


def load_train_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Raises FileNotFoundError when the checkpoint holds weights only."""
    tensors = load_file(str(directory / TRAIN_STATE_TENSORS))
    meta = json.loads((directory / TRAIN_STATE_JSON).read_text(encoding="utf-8"))
    return tensors, meta
