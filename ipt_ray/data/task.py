"""The in-memory form of a labelled text-classification task: three splits and label names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ipt_ray.constants import ACCURACY, F1, F1_MACRO, MCC

#: Metrics a task can name as its standard one. ``f1`` is the binary F1 of label 1.
METRICS = (ACCURACY, F1, MCC, F1_MACRO)

#: Split names, in the order they appear in :class:`TaskData` and in cache files.
SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class Split:
    """One split of a task: N examples.

    Attributes:
        texts: N input texts.
        text_pairs: N second texts for sentence-pair tasks, or None for single-sentence tasks.
        labels: N label ids in ``range(num_labels)`` of the owning :class:`TaskData`.

    Raises:
        ValueError: the lists have different lengths (a bug in the code that built it).
    """

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int]

    def __post_init__(self) -> None:
        n = len(self.texts)
        if len(self.labels) != n or (self.text_pairs is not None and len(self.text_pairs) != n):
            pairs = None if self.text_pairs is None else len(self.text_pairs)
            raise ValueError(
                f"Split lists differ in length: texts {n}, text_pairs {pairs}, "
                f"labels {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: Sequence[int]) -> Split:
        """Return a new split holding the examples at ``indices``, in that order."""
        return Split(
            texts=[self.texts[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            labels=[self.labels[i] for i in indices],
        )


@dataclass
class TaskData:
    """A classification task ready for tokenisation.

    Attributes:
        name: catalog name (``"mr"``, ``"glue/sst2"``, ...) or the local path it came from.
        label_names: one name per label id; ``label_names[i]`` names label ``i``.
        metric: the task's standard metric, one of :data:`METRICS`.
        train, validation, test: the three splits; all pair or all single-sentence.

    Raises:
        ValueError: inconsistent content (fewer than 2 labels, a label id out of range, an
            unknown metric, mixed pair/single splits): a bug in the code that built it. Loaders
            turn user mistakes into :class:`~ipt_ray.errors.DataError` before this point.
    """

    name: str
    label_names: list[str]
    metric: str
    train: Split
    validation: Split
    test: Split

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        if len(self.label_names) < 2:
            raise ValueError(f"a task needs at least 2 label names, got {self.label_names!r}")
        k = len(self.label_names)
        pair_kinds = {split.text_pairs is None for split in self.splits().values()}
        if len(pair_kinds) != 1:
            raise ValueError(f"task {self.name!r} mixes pair and single-sentence splits")
        for split_name, split in self.splits().items():
            bad = next((y for y in split.labels if not 0 <= y < k), None)
            if bad is not None:
                raise ValueError(
                    f"{split_name} label {bad} of task {self.name!r} not in range({k})"
                )

    @property
    def num_labels(self) -> int:
        """Number of classes, ``len(label_names)``."""
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks (every split has ``text_pairs``)."""
        return self.train.text_pairs is not None

    def splits(self) -> dict[str, Split]:
        """The splits by name: ``{"train": ..., "validation": ..., "test": ...}``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def describe(self) -> dict[str, str | int]:
        """The task as a run's dataset input names it: name, :meth:`fingerprint`, split sizes."""
        sizes = {name: len(split) for name, split in self.splits().items()}
        return {"name": self.name, "digest": self.fingerprint(), **sizes}

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the content: label names and every split's texts and labels.

        The name and metric are not part of it, so the same data loaded from two paths shares
        a fingerprint (and a tokenisation cache entry). Stable across processes and machines.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps({"label_names": self.label_names}).encode("utf-8"))
        for split_name, split in self.splits().items():
            record = [split_name, split.texts, split.text_pairs, split.labels]
            digest.update(b"\n")
            digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()
