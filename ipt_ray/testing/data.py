"""Toy data: short sentences with a learnable sentiment label, a CSV task file of them,
and a search-space YAML over a tiny backbone and such a file."""

from __future__ import annotations

import random
from pathlib import Path

_POSITIVE = [
    "good",
    "great",
    "fine",
    "superb",
    "lovely",
    "moving",
    "brilliant",
    "charming",
    "fun",
    "warm",
]
_NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "messy", "tedious", "bland", "poor", "flat"]
_FILLER = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "story",
    "cast",
    "it",
    "is",
    "was",
    "and",
    "but",
    "very",
    "quite",
    "really",
]
TOY_WORDS = sorted(set(_POSITIVE + _NEGATIVE + _FILLER))


def toy_sentences(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` short sentences with a learnable sentiment label (1 positive, 0 negative)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        cue = rng.choice(_POSITIVE if label else _NEGATIVE)
        words = [rng.choice(_FILLER) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), cue)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_toy_csv(path: str | Path, n: int = 120, seed: int = 0, pair: bool = False) -> Path:
    """A CSV task file (columns text[, text_pair], label with names negative/positive)."""
    import csv

    path = Path(path)
    texts, labels = toy_sentences(n, seed)
    pairs, _ = toy_sentences(n, seed + 1)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "text_pair", "label"] if pair else ["text", "label"])
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            name = "positive" if label else "negative"
            writer.writerow([text, pairs[i], name] if pair else [text, name])
    return path


def tiny_space_text(model: Path, task: Path, search: str, params: str, **fixed: object) -> str:
    """A search-space YAML over a tiny backbone and a toy task: 48 samples, max length 16,
    batch 16, 2 epochs unless ``fixed`` says otherwise; ``search`` and ``params`` are the
    YAML bodies of those sections."""
    import json

    values: dict[str, object] = {
        "task": str(task),
        "model": str(model),
        "max_samples": 48,
        "max_length": 16,
        "batch_size": 16,
        "epochs": 2,
        **fixed,
    }
    return (
        "fixed:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
        + "search:\n"
        + "".join(f"  {line}\n" for line in search.strip().splitlines())
        + "params:\n"
        + "".join(f"  {line}\n" for line in params.strip().splitlines())
    )
