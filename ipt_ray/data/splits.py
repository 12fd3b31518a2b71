"""Seeded, stratified splitting and subsampling.

Every function is deterministic given its seed (Python's :class:`random.Random` seeded with a
string, stable across processes and versions) and keeps label proportions as equal as integer
counts allow (largest-remainder allocation per label).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from ipt_ray.data.task import Split, TaskData
from ipt_ray.errors import DataError

#: Fractions of a task with no predefined splits that go to train / validation / test.
TRAIN_FRACTION = 0.8
#: Share of a train split carved off as validation when a source has no validation split.
CARVE_FRACTION = 0.1
#: At most this many train examples are carved off as validation.
CARVE_CAP = 5000


def split_sizes(n: int) -> tuple[int, int, int]:
    """Sizes of an 80/10/10 split of ``n`` rows: train gets ``floor(0.8 n)``, the rest is
    halved with the odd one going to test (10,605 rows -> 8,484 / 1,060 / 1,061)."""
    n_train = n * 8 // 10
    n_val = (n - n_train) // 2
    return n_train, n_val, n - n_train - n_val


def min_rows_for_split() -> int:
    """The smallest row count whose 80/10/10 split leaves no split empty (6)."""
    n = 1
    while min(split_sizes(n)) == 0:
        n += 1
    return n


def _allocate(total: int, counts: Sequence[int]) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, ties to the
    lower class index); never gives a class more than it has. Needs ``total <= sum(counts)``."""
    n = sum(counts)
    if total == 0:
        return [0] * len(counts)
    base = [total * c // n for c in counts]
    left = total - sum(base)
    order = sorted(range(len(counts)), key=lambda i: (-(total * counts[i] % n), i))
    for i in order:
        if left == 0:
            break
        if base[i] < counts[i]:
            base[i] += 1
            left -= 1
    return base


def stratified_partition(labels: Sequence[int], sizes: Sequence[int], seed: str) -> list[list[int]]:
    """Partition ``range(len(labels))`` into parts of the given sizes, stratified by label.

    Args:
        labels: N label ids.
        sizes: part sizes summing to N; parts are filled in order, the last gets the rest.
        seed: seeds the per-label shuffles (a string such as ``"0:split"``).

    Returns:
        One sorted index list per part.

    Raises:
        ValueError: ``sizes`` does not sum to N (a bug in the caller).
    """
    if sum(sizes) != len(labels) or any(s < 0 for s in sizes):
        raise ValueError(f"part sizes {list(sizes)} do not partition {len(labels)} rows")
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    classes = sorted(by_label)
    pools = {c: by_label[c][:] for c in classes}
    for c in classes:
        rng.shuffle(pools[c])
    used = dict.fromkeys(classes, 0)
    parts: list[list[int]] = []
    for size in sizes[:-1]:
        take = _allocate(size, [len(pools[c]) - used[c] for c in classes])
        part: list[int] = []
        for c, k in zip(classes, take, strict=True):
            part.extend(pools[c][used[c] : used[c] + k])
            used[c] += k
        parts.append(sorted(part))
    parts.append(sorted(i for c in classes for i in pools[c][used[c] :]))
    return parts


def split_three_ways(pool: Split, *, seed: int, source: str) -> tuple[Split, Split, Split]:
    """Split one pool of examples 80/10/10 into train, validation and test, stratified.

    Raises:
        DataError: too few rows for every split to get at least one.
    """
    sizes = split_sizes(len(pool))
    if min(sizes) == 0:
        raise DataError(
            f"{source} has {len(pool)} rows, too few to split 80/10/10 into non-empty "
            f"train/validation/test; need at least {min_rows_for_split()} rows "
            "(or give a split column or separate train/validation/test files)"
        )
    train, val, test = stratified_partition(pool.labels, sizes, f"{seed}:split")
    return pool.select(train), pool.select(val), pool.select(test)


def carve_validation(train: Split, *, seed: int, source: str) -> tuple[Split, Split]:
    """Carve a validation split off ``train``: 10% (rounded up, at most 5,000), stratified.

    Returns:
        ``(smaller train, validation)``.

    Raises:
        DataError: fewer than 2 training rows.
    """
    n = len(train)
    if n < 2:
        raise DataError(
            f"{source} has {n} training rows, too few to carve a validation split from; "
            "need at least 2 (or give validation rows)"
        )
    n_val = min(math.ceil(n * CARVE_FRACTION), CARVE_CAP)
    keep, val = stratified_partition(train.labels, [n - n_val, n_val], f"{seed}:carve")
    return train.select(keep), train.select(val)


def subsample(split: Split, max_samples: int, *, seed: str) -> Split:
    """At most ``max_samples`` examples of ``split``, stratified; the split itself if smaller.
    Kept examples stay in their original order."""
    n = len(split)
    if n <= max_samples:
        return split
    keep, _ = stratified_partition(split.labels, [max_samples, n - max_samples], seed)
    return split.select(keep)


def cap_splits(task: TaskData, max_samples: int, *, seed: int) -> TaskData:
    """Return ``task`` with every split cut to at most ``max_samples`` examples (smoke runs)."""
    capped = {
        name: subsample(split, max_samples, seed=f"{seed}:cap:{name}")
        for name, split in task.splits().items()
    }
    return TaskData(
        name=task.name,
        label_names=task.label_names,
        metric=task.metric,
        train=capped["train"],
        validation=capped["validation"],
        test=capped["test"],
    )
