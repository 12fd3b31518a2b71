"""Frozen backbone weights held once per node in Ray's object store, mapped by every trial.

The search's driver loads the backbone once (before Ray starts: a backbone that does not load is
a one-line error) and puts its tensors (every parameter and buffer,
as raw bytes in one buffer) into the object store: :func:`publish_backbone`. A trial process
calls :func:`materialize`: Ray copies the object to the process's node the first time any
process there asks for it, and every process on the node then maps those same shared-memory
pages (``ray.get`` returns a numpy array over the object-store buffer, no copy). The model is built
on the meta device (no weights allocated, no random initialisation) and every parameter and
buffer is pointed at those pages. A trial's backbone thus costs no private memory and no
loading time, however many trials share the node.

The pages are writable in Ray's mapping, and a write would change the weights of every trial
on the node. The backbone is frozen and nothing writes to it; to make a bug loud rather than
silent, the pages that hold the weights are made read-only in each trial process (``mprotect``,
Linux; guard bytes around the weights keep other objects out of those pages): a write there
is a segmentation fault of that process, not a quiet change of every other trial's backbone.

Not shared (the search does not publish them, so each trial loads its own): backbones with
``trust_remote_code`` (their classes live in modules a trial process may not import the same
way), and searches whose trials use different backbones.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import math
import mmap
import sys
import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: Bytes before and after the weights in the published buffer (the largest common page size).
GUARD_BYTES = 1 << 16
_ALIGN = 64


@dataclass(frozen=True)
class SharedBackbone:
    """A backbone published to the object store.

    Small when pickled (names and a reference): a process that only passes it on imports
    nothing of transformers.

    Attributes:
        model, revision: the backbone as the run config names it (``TrainConfig.model``).
        model_class, config_class: ``module:name`` of the transformers classes
            (``transformers.models.bert.modeling_bert:BertModel``).
        config: the model config as a dict (``PretrainedConfig.to_dict()``).
        tensors: ObjectRef of one uint8 array holding every parameter and buffer (guard bytes
            at both ends); a tensor shared by several names (tied weights) is stored once.
        index: ``name -> (byte offset, dtype name, shape)`` of each stored tensor.
        aliases: ``name -> stored name`` for the other names of tied tensors.
        nbytes: bytes of all stored tensors (alignment and guards not counted).
    """

    model: str
    revision: str | None
    model_class: str
    config_class: str
    config: dict[str, Any]
    tensors: Any
    index: dict[str, tuple[int, str, tuple[int, ...]]]
    aliases: dict[str, str]
    nbytes: int

    def serves(self, model: str, revision: str | None, trust_remote_code: bool) -> bool:
        """Whether a run naming this backbone can use these weights."""
        return not trust_remote_code and (model, revision) == (self.model, self.revision)

    def materialize(self) -> PreTrainedModel:
        """:func:`materialize`: the frozen backbone over this shared copy."""
        return materialize(self)


def _named_tensors(net: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    """(name, tensor, is_parameter) of every parameter and buffer, tied names included."""
    params = [(n, t, True) for n, t in net.named_parameters(remove_duplicate=False)]
    buffers = [(n, t, False) for n, t in net.named_buffers(remove_duplicate=False)]
    return params + buffers


def publish_backbone(
    net: PreTrainedModel, *, model: str, revision: str | None = None
) -> SharedBackbone:
    """Put the weights of ``net`` into the object store (needs ``ray.init``).

    Args:
        net: the backbone as :func:`ipt_ray.core.backbone.load_backbone` loaded it.
        model, revision: how runs name it (``TrainConfig.model`` and ``revision``); trials
            whose config names the same use the shared copy.
    """
    import ray

    index: dict[str, tuple[int, str, tuple[int, ...]]] = {}
    aliases: dict[str, str] = {}
    first_name: dict[int, str] = {}
    flats: list[tuple[int, torch.Tensor]] = []
    offset, nbytes = GUARD_BYTES, 0
    for name, tensor, _ in _named_tensors(net):
        if id(tensor) in first_name:
            aliases[name] = first_name[id(tensor)]
            continue
        first_name[id(tensor)] = name
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        index[name] = (offset, str(flat.dtype).removeprefix("torch."), tuple(tensor.shape))
        flats.append((offset, flat))
        nbytes += flat.numel() * flat.element_size()
        offset += -(-flat.numel() * flat.element_size() // _ALIGN) * _ALIGN
    # One buffer: a guard, the tensors (each 64-byte aligned), a guard. The guards make every
    # memory page that holds a weight belong to this buffer alone, so that a trial process can
    # make all of those pages read-only without touching a neighbouring object's memory.
    buffer = np.zeros(offset + GUARD_BYTES, dtype=np.uint8)
    for start, flat in flats:
        if flat.numel():
            raw = flat.view(torch.uint8).numpy()
            buffer[start : start + raw.nbytes] = raw
    ref = ray.put(buffer)
    del buffer
    return SharedBackbone(
        model,
        revision,
        _qualified(type(net)),
        _qualified(type(net.config)),
        net.config.to_dict(),
        ref,
        index,
        aliases,
        nbytes,
    )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> Any:
    module, _, qualname = name.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def materialize(shared: SharedBackbone) -> PreTrainedModel:
    """The frozen backbone over the node's shared copy of the weights (eval mode, no grads).

    Raises:
        RuntimeError: the published tensors do not match the model's own names (a different
            transformers version between the driver and this process).
    """
    import ray

    from ipt_ray.core.backbone import freeze

    buffer: np.ndarray = ray.get(shared.tensors)
    config = _resolve(shared.config_class).from_dict(shared.config)
    with torch.device("meta"):
        net = _resolve(shared.model_class)(config)
    made: dict[str, torch.Tensor] = {}
    with warnings.catch_warnings():
        # torch warns that the buffer is not writable: that is the point.
        warnings.simplefilter("ignore", UserWarning)
        whole = torch.from_numpy(buffer)
        for name, _, is_param in _named_tensors(net):
            source = shared.aliases.get(name, name)
            if source not in shared.index:
                raise RuntimeError(
                    f"shared backbone {shared.model!r} has no tensor {name!r}; the driver and "
                    "the trials must run the same transformers version"
                )
            if source not in made:
                start, dtype, shape = shared.index[source]
                width = torch.empty((), dtype=getattr(torch, dtype)).element_size()
                count = math.prod(shape)
                raw = whole[start : start + count * width]
                tensor = raw.view(getattr(torch, dtype)).reshape(shape)
                made[source] = nn.Parameter(tensor, requires_grad=False) if is_param else tensor
            module_name, _, leaf = name.rpartition(".")
            module = net.get_submodule(module_name)
            if is_param:
                module._parameters[leaf] = made[source]
            else:
                module._buffers[leaf] = made[source]
    _protect(buffer)
    left = [n for n, t, _ in _named_tensors(net) if t.is_meta]
    if left:
        raise RuntimeError(f"shared backbone {shared.model!r}: tensors left unset: {left[:5]}")
    return freeze(net)


_PROT_READ, _PROT_READ_WRITE = 1, 3


def _mprotect(start: int, length: int, prot: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).mprotect(
            ctypes.c_void_p(start), ctypes.c_size_t(length), prot
        )


def _protect(buffer: np.ndarray) -> None:
    """Make the pages of ``buffer`` that hold weights read-only in this process (the guards at
    both ends keep neighbouring objects out of them), until ``buffer`` is garbage: then the
    object store may reuse that memory for objects this process puts."""
    if not sys.platform.startswith("linux") or mmap.PAGESIZE > GUARD_BYTES:
        return
    start = buffer.ctypes.data + GUARD_BYTES
    first = start // mmap.PAGESIZE * mmap.PAGESIZE  # round down: inside the first guard
    end = -(-(buffer.ctypes.data + buffer.nbytes - GUARD_BYTES) // mmap.PAGESIZE) * mmap.PAGESIZE
    if end <= first:
        return
    _mprotect(first, end - first, _PROT_READ)
    weakref.finalize(buffer, _mprotect, first, end - first, _PROT_READ_WRITE)


__all__ = ["SharedBackbone", "materialize", "publish_backbone"]
