"""What a training process keeps for its next run: the frozen backbone, its tokenizer, tasks.

A search's trial processes are reused (Tune reuses the trial actor; see
:mod:`ipt_ray.tuning.trial`), so the second trial in a process finds the backbone built and the task
loaded, and starts training in well under a second. The backbone is frozen and never written, so one
instance serves any number of runs one after another; it comes from the node's shared copy in the
object store when the search published one (:mod:`ipt_ray.tuning.shared_backbone`), else from disk
or the hub. No Ray import here.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from ipt_ray.core.backbone import load_backbone, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ipt_ray.core.config import TrainConfig
    from ipt_ray.data import TaskData


class SharedWeights(Protocol):
    """A backbone whose weights another layer shares between processes (a search's
    :class:`ipt_ray.tuning.shared_backbone.SharedBackbone`): the training layer needs only
    these two calls, and imports nothing of Ray."""

    def serves(self, model: str, revision: str | None, trust_remote_code: bool) -> bool:
        """Whether it holds this backbone."""

    def materialize(self) -> PreTrainedModel:
        """The frozen backbone over the shared weights (eval mode, no gradients)."""


#: How many backbones and tasks a process keeps (least recently used ones go first).
MAX_BACKBONES = 1
MAX_TASKS = 4

_backbones: OrderedDict[tuple[Any, ...], tuple[PreTrainedModel, PreTrainedTokenizerBase]] = (
    OrderedDict()
)
_tasks: OrderedDict[tuple[Any, ...], TaskData] = OrderedDict()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def backbone(
    config: TrainConfig, shared: SharedWeights | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The frozen backbone and tokenizer of ``config.model`` (built once per process).

    Raises:
        UserError: the model cannot be loaded.
    """
    key = (config.model, config.revision, config.trust_remote_code)
    if key in _backbones:
        _backbones.move_to_end(key)
        return _backbones[key]
    if shared is not None and shared.serves(*key):
        loaded = (
            shared.materialize(),
            load_tokenizer(
                config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
            ),
        )
    else:
        loaded = load_backbone(
            config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    _remember(_backbones, key, loaded, MAX_BACKBONES)
    _freeze_heap()
    return loaded


def _freeze_heap() -> None:
    """Collect garbage once, then move every object alive (torch, transformers, Ray and the
    backbone: some 480,000 objects) out of the collector's sight (:func:`gc.freeze`).

    Every :func:`release_memory` after a run then scans only what runs created since: 0.2 s
    less per trial, which Tune spends between a trial and the next in the same process
    (its reset waits for the trial's thread to end). Frozen objects are still freed by
    reference counting; :func:`clear` unfreezes them, so that a forgotten backbone's cycles
    are collected too.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def task(config: TrainConfig) -> TaskData:
    """The task of ``config`` with its split and sample cap (loaded once per process).

    Raises:
        UserError: the task cannot be loaded.
    """
    from ipt_ray.data import load_task

    kwargs = config.task_kwargs()
    key = (config.task, json.dumps(kwargs, sort_keys=True, default=str))
    if key not in _tasks:
        _remember(_tasks, key, load_task(config.task, **kwargs), MAX_TASKS)
    _tasks.move_to_end(key)
    return _tasks[key]


def clear() -> None:
    """Forget every cached backbone and task (and let the collector see the objects
    :func:`_freeze_heap` hid from it again)."""
    _backbones.clear()
    _tasks.clear()
    gc.unfreeze()


def release_memory() -> None:
    """Collect garbage and hand freed heap (and cached GPU) memory back.

    glibc keeps freed memory for reuse: after a run, most of a process's peak (the
    activations of every batch width it saw) would otherwise stay resident while it waits
    for its next trial. Once a backbone is warm the collection scans only what was created
    since it was loaded (see :func:`_freeze_heap`).
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()  # a GPU shared with other trials gets the cached blocks back
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


__all__ = ["MAX_BACKBONES", "MAX_TASKS", "backbone", "clear", "release_memory", "task"]
