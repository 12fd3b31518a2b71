"""GLUE, SuperGLUE and Rotten Tomatoes from the Hugging Face hub (needs internet).

Canonical names are ``glue/<task>`` (cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli),
``superglue/<task>`` (boolq, cb, rte) and ``rotten_tomatoes``. Accepted aliases: the bare
GLUE names (``sst2`` means ``glue/sst2``; bare ``rte`` is GLUE's), the bare SuperGLUE names
that do not clash (``boolq``, ``cb``) and the ``super_glue/<task>`` spelling.

GLUE and SuperGLUE test splits carry no labels, so the official validation split (for MNLI
``validation_matched``) becomes the test split and a validation split is carved off the
training split: 10%, at most 5,000 examples, stratified and seeded. Rotten Tomatoes keeps its
own three splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ipt_ray.constants import ACCURACY, F1, F1_MACRO, MCC
from ipt_ray.data.splits import carve_validation
from ipt_ray.data.task import Split, TaskData
from ipt_ray.errors import DataError

GLUE = "nyu-mll/glue"
SUPER_GLUE = "aps/super_glue"


@dataclass(frozen=True)
class HubTask:
    """Where a hub task lives and how its columns map onto :class:`Split`.

    Attributes:
        name: canonical catalog name, e.g. ``"glue/sst2"``.
        path, config: the arguments of ``datasets.load_dataset``.
        text_column, text_pair_column: columns giving ``texts`` and ``text_pairs`` (None for
            single-sentence tasks).
        metric: the task's standard metric.
        test_split: the hub split used as our test split.
        validation_split: the hub split used as validation, or None to carve it from train.
    """

    name: str
    path: str
    config: str | None
    text_column: str
    text_pair_column: str | None
    metric: str = ACCURACY
    test_split: str = "validation"
    validation_split: str | None = None
    label_column: str = "label"


HUB_TASKS: dict[str, HubTask] = {
    task.name: task
    for task in (
        HubTask("glue/cola", GLUE, "cola", "sentence", None, MCC),
        HubTask("glue/sst2", GLUE, "sst2", "sentence", None),
        HubTask("glue/mrpc", GLUE, "mrpc", "sentence1", "sentence2", F1),
        HubTask("glue/qqp", GLUE, "qqp", "question1", "question2", F1),
        HubTask(
            "glue/mnli", GLUE, "mnli", "premise", "hypothesis", test_split="validation_matched"
        ),
        HubTask("glue/qnli", GLUE, "qnli", "question", "sentence"),
        HubTask("glue/rte", GLUE, "rte", "sentence1", "sentence2"),
        HubTask("glue/wnli", GLUE, "wnli", "sentence1", "sentence2"),
        HubTask("superglue/boolq", SUPER_GLUE, "boolq", "question", "passage"),
        HubTask("superglue/cb", SUPER_GLUE, "cb", "premise", "hypothesis", F1_MACRO),
        HubTask("superglue/rte", SUPER_GLUE, "rte", "premise", "hypothesis"),
        HubTask(
            "rotten_tomatoes",
            "cornell-movie-review-data/rotten_tomatoes",
            None,
            "text",
            None,
            test_split="test",
            validation_split="validation",
        ),
    )
}


def _aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name in HUB_TASKS:
        family, _, short = name.partition("/")
        if family == "superglue":
            aliases[f"super_glue/{short}"] = name
        if short:
            aliases.setdefault(short, name)
    # Bare "rte" must mean GLUE's RTE whatever the table order.
    aliases["rte"] = "glue/rte"
    return aliases


#: Alternative spellings of hub task names, mapped to the canonical name.
HUB_ALIASES: dict[str, str] = _aliases()


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or "no details"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _column(dataset: Any, column: str, task: HubTask, split: str) -> list[Any]:
    if column not in dataset.column_names:
        raise DataError(
            f"hub dataset {task.path} ({task.config}) split {split!r} has no column {column!r}; "
            f"columns found: {', '.join(dataset.column_names)}"
        )
    return list(dataset[column])


def _to_split(dataset: Any, task: HubTask, split: str) -> Split:
    """Convert one hub split; rows with a negative (missing) label are dropped."""
    labels = [int(y) for y in _column(dataset, task.label_column, task, split)]
    texts = [str(t) for t in _column(dataset, task.text_column, task, split)]
    pairs = (
        None
        if task.text_pair_column is None
        else [str(t) for t in _column(dataset, task.text_pair_column, task, split)]
    )
    keep = [i for i, y in enumerate(labels) if y >= 0]
    whole = Split(texts=texts, text_pairs=pairs, labels=labels)
    return whole if len(keep) == len(labels) else whole.select(keep)


def _label_names(dataset: Any, task: HubTask, labels: list[int]) -> list[str]:
    feature = dataset.features.get(task.label_column)
    names = getattr(feature, "names", None)
    if names:
        return [str(n) for n in names]
    return [str(i) for i in range(max(labels) + 1)]


def load_hub_task(name: str, *, seed: int) -> TaskData:
    """Load hub task ``name`` (canonical) with ``datasets.load_dataset``.

    Raises:
        DataError: the hub cannot be reached (or ``datasets`` is missing), or the dataset
            lacks an expected split or column.
    """
    task = HUB_TASKS[name]
    offline_hint = (
        "offline tasks are 'mr' and 'bbc-news', or pass a local .csv/.jsonl/.json/.parquet file"
    )
    try:
        import datasets

        loaded = datasets.load_dataset(task.path, task.config)
    except Exception as exc:  # any failure here means the hub (or its cache) is unusable
        raise DataError(
            f"could not load {name!r} ({task.path}) from the Hugging Face hub "
            f"({_one_line(exc)}); {offline_hint}"
        ) from exc
    wanted = ["train", task.test_split] + ([task.validation_split] if task.validation_split else [])
    missing = [s for s in wanted if s not in loaded]
    if missing:
        raise DataError(
            f"hub dataset {task.path} ({task.config}) has no split {missing[0]!r}; "
            f"splits found: {', '.join(loaded)}"
        )
    train = _to_split(loaded["train"], task, "train")
    test = _to_split(loaded[task.test_split], task, task.test_split)
    if task.validation_split is None:
        train, validation = carve_validation(train, seed=seed, source=name)
    else:
        validation = _to_split(loaded[task.validation_split], task, task.validation_split)
    return TaskData(
        name=name,
        label_names=_label_names(loaded["train"], task, train.labels),
        metric=task.metric,
        train=train,
        validation=validation,
        test=test,
    )
