"""Tokenise a task once per (content, tokenizer, max length) and cache it as safetensors.

The cache file is ``cache_root()/tokenized/<sha>.safetensors`` where ``<sha>`` hashes the
task's fingerprint, the tokenizer's identity (``name_or_path``, class name, a hash of its
sorted vocabulary, its truncation side) and ``max_length``. The key itself is stored in the
file's metadata and checked on load. Files are written to a temporary name and renamed, under
a lock, so concurrent trials tokenise once and a crash never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ipt_ray.data.cache import cache_root, file_lock, load_keyed_tensors, save_keyed_tensors
from ipt_ray.data.task import SPLIT_NAMES, Split, TaskData
from ipt_ray.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: Bump when the tokenised layout changes; older cache files are then ignored.
CACHE_FORMAT = 1
#: Examples per tokenizer call (bounds peak memory of the Python lists it returns).
CHUNK = 2048
#: The token tensors of a batch, in the order the model takes them.
TOKEN_FIELDS = ("input_ids", "attention_mask", "token_type_ids")
_FIELDS = (*TOKEN_FIELDS, "labels")


@dataclass
class TokenizedSplit:
    """One tokenised split of N examples, right-padded to L = ``max_length``.

    Attributes:
        input_ids: (N, L) int64 token ids, padded with the tokenizer's pad id.
        attention_mask: (N, L) int64, 1 for real tokens and 0 for padding.
        token_type_ids: (N, L) int64 segment ids when the tokenizer returns them, else None.
        labels: (N,) int64 label ids.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """What makes two tokenizers tokenise alike: name, class, vocabulary hash, truncation side."""
    vocab = sorted(tokenizer.get_vocab().items())
    vocab_sha = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    return {
        "name_or_path": str(tokenizer.name_or_path),
        "class": type(tokenizer).__name__,
        "vocab_sha256": vocab_sha.hexdigest(),
        "truncation_side": str(getattr(tokenizer, "truncation_side", "right")),
    }


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    max_length: int,
) -> dict[str, torch.Tensor]:
    """Tokenise texts (pairs as ``(text, text_pair)``) the one way training and inference share.

    Truncated to ``max_length`` tokens and right-padded to it (pooling of the last token and
    :func:`~ipt_ray.data.batching.trim_padding` assume right padding).

    Returns:
        ``input_ids`` and ``attention_mask``, plus ``token_type_ids`` when the tokenizer makes
        them: (N, max_length) int64 each.
    """
    encoded = tokenizer(
        list(texts),
        None if text_pairs is None else list(text_pairs),
        truncation=True,
        max_length=max_length,
        padding="max_length",
        padding_side="right",
        return_tensors="pt",
    )
    return {key: encoded[key].to(torch.int64) for key in TOKEN_FIELDS if key in encoded}


def tokenize_split(
    split: Split, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> TokenizedSplit:
    """Tokenise one split with :func:`encode_texts`, in chunks of :data:`CHUNK` examples.

    Returns:
        A :class:`TokenizedSplit` with tensors of shape (N, max_length) and (N,).
    """
    chunks: dict[str, list[torch.Tensor]] = {key: [] for key in TOKEN_FIELDS}
    for start in range(0, len(split), CHUNK):
        pairs = None if split.text_pairs is None else split.text_pairs[start : start + CHUNK]
        encoded = encode_texts(tokenizer, split.texts[start : start + CHUNK], pairs, max_length)
        for key, tensor in encoded.items():
            chunks[key].append(tensor)
    empty = torch.zeros((0, max_length), dtype=torch.int64)
    return TokenizedSplit(
        input_ids=torch.cat(chunks["input_ids"]) if chunks["input_ids"] else empty,
        attention_mask=torch.cat(chunks["attention_mask"]) if chunks["attention_mask"] else empty,
        token_type_ids=torch.cat(chunks["token_type_ids"]) if chunks["token_type_ids"] else None,
        labels=torch.tensor(split.labels, dtype=torch.int64),
    )


def _cache_key(task: TaskData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    return json.dumps(
        {
            "format": CACHE_FORMAT,
            "task": task.fingerprint(),
            "tokenizer": tokenizer_identity(tokenizer),
            "max_length": max_length,
        },
        sort_keys=True,
    )


def _cache_path(key: str) -> Path:
    return cache_root() / "tokenized" / f"{hashlib.sha256(key.encode()).hexdigest()}.safetensors"


def _load(path: Path, key: str) -> dict[str, TokenizedSplit] | None:
    """The cached splits, or None if the file is missing, unreadable or for another key."""
    tensors = load_keyed_tensors(path, key)
    if tensors is None:
        return None
    try:
        return {
            split: TokenizedSplit(
                input_ids=tensors[f"{split}.input_ids"],
                attention_mask=tensors[f"{split}.attention_mask"],
                token_type_ids=tensors.get(f"{split}.token_type_ids"),
                labels=tensors[f"{split}.labels"],
            )
            for split in SPLIT_NAMES
        }
    except KeyError:
        return None


def _save(path: Path, key: str, splits: dict[str, TokenizedSplit]) -> None:
    tensors = {
        f"{split}.{field}": value.contiguous()
        for split, data in splits.items()
        for field in _FIELDS
        if (value := getattr(data, field)) is not None
    }
    save_keyed_tensors(path, key, tensors)


def tokenize_task(
    task: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    cache: bool = True,
) -> dict[str, TokenizedSplit]:
    """Tokenise every split of ``task``, reusing the on-disk cache when ``cache`` is True.

    The caller sets up the tokenizer (for GPT-2: ``tokenizer.pad_token = tokenizer.eos_token``).

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}``, each (N, max_length) right-padded.

    Raises:
        ConfigError: ``max_length`` is not a positive integer.
        DataError: the tokenizer has no pad token.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"max_length must be a positive integer, got {max_length!r}")
    if tokenizer.pad_token_id is None:
        raise DataError(
            f"tokenizer {tokenizer.name_or_path!r} has no pad token; set "
            "tokenizer.pad_token = tokenizer.eos_token (or add a pad token) before tokenizing"
        )
    if not cache:
        return {name: tokenize_split(s, tokenizer, max_length) for name, s in task.splits().items()}
    key = _cache_key(task, tokenizer, max_length)
    path = _cache_path(key)
    cached = _load(path, key)
    if cached is not None:
        logger.debug("tokenised %s from cache %s", task.name, path)
        return cached
    with file_lock(path.with_suffix(".lock")):
        cached = _load(path, key)  # another process may have written it while we waited
        if cached is not None:
            return cached
        splits = {
            name: tokenize_split(s, tokenizer, max_length) for name, s in task.splits().items()
        }
        _save(path, key, splits)
    logger.info("tokenised %s (max_length %d) into %s", task.name, max_length, path)
    return splits
