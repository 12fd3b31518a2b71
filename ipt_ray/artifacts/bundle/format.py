"""Portable prompt bundles: the winning trial's prompts as a folder that loads anywhere.

This module is the format: file names, versions and the small file helpers that the writer
(:mod:`.write`), the checker (:mod:`.verify`), the loader (:mod:`.load`) and the PEFT exporter
(:mod:`ipt_ray.artifacts.peft`) share. Needs: nothing heavy (no torch). Provides: a
self-describing folder that :func:`~ipt_ray.artifacts.bundle.load_bundle` turns back into a
model, with no Ray, no MLflow and no pickle involved.

Layout (format ``ipt-ray-bundle``, version 1)::

    my-bundle/
      prompt.safetensors   generator + head tensors of the BEST epoch (keys generator.*, head.*)
      ipt_config.json      everything needed to rebuild the model (schema below)
      README.md            model card: task, metric and score, parameters, generator, backbone,
                           provenance, how to load
      checksums.json       {"algorithm": "sha256", "files": {name: hex digest}} of every other file

``ipt_config.json`` (all keys required; ``null`` where noted)::

    format            "ipt-ray-bundle"
    format_version    1 (a loader refuses versions it does not know)
    ipt_ray_version   version that wrote the bundle
    files             {"weights": "prompt.safetensors", "model_card": "README.md"}: plain names
                      inside the bundle (no folders, no "..", no absolute paths, no symlinks)
    backbone          {"model": hub id | local directory | alias, "revision": str | null,
                       "trust_remote_code": bool, "tokenizer": str (the model unless set),
                       "tokenizer_revision": str | null, "local_dir": bool (whether
                       "model" was a local folder at export)}
    generator         {"name": "task" | "prefix" | ..., "options": {knob: value}} (the
                      generator's full config, prompt_length included)
    prompt_length     P
    max_length        tokens per instance, prompt excluded (longer texts are truncated)
    pooling           "first" | "mean" | "last", over text positions
    label_names       class names in logit order
    num_labels        len(label_names)
    is_pair           whether instances are (text, text_pair)
    task              the task's name as trained
    metric            {"name": "accuracy", "split": "validation", "score": float | null,
                       "test": {metric: float | null} (the trial's test split; {} if unknown;
                       absent in bundles written before ipt-ray recorded it)}
    params            {"trainable": int, "backbone": int, "trainable_share": float}
    training          {"best_epoch": int, "epochs": int, "train_config": {TrainConfig fields}}
    provenance        {} or where the bundle came from: search, experiment, experiment_id,
                      parent_run_id, trial_run_id, space_file, ... (filled by the MLflow layer)

Weights for a ``prefix`` generator with ``reparam`` keep the MLP (the rebuildable form); the
PEFT exporter (:mod:`ipt_ray.artifacts.peft`) folds it.

The backbone is a reference, not a copy. A hub id (with its revision) loads wherever the hub
or its cache is reachable. A local directory is stored as given (a relative path then resolves
against the loader's working directory): the bundle needs that directory, or the caller
passes ``backbone=`` to :func:`~ipt_ray.artifacts.bundle.load_bundle`. ``trust_remote_code``
is recorded, but a loader only uses it when the caller also passes ``trust_remote_code=True``.

Security: loading reads JSON and safetensors only and never executes code from the bundle.
:func:`~ipt_ray.artifacts.bundle.verify_bundle` refuses unknown format versions, file
references that leave the folder, symbolic links, sub-folders, files missing from or extra
to ``checksums.json``, checksum mismatches and weights that are not safetensors. The
checksums guard against damage and casual edits, not against an attacker who rewrites them as
well: trust a bundle as much as its source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipt_ray.errors import UserError

FORMAT_NAME = "ipt-ray-bundle"
FORMAT_VERSION = 1
#: Format versions this ipt-ray reads.
SUPPORTED_FORMAT_VERSIONS = (1,)

CONFIG_NAME = "ipt_config.json"
WEIGHTS_NAME = "prompt.safetensors"
README_NAME = "README.md"
CHECKSUMS_NAME = "checksums.json"

#: Provenance slots the model card shows first (others are shown after them).
PROVENANCE_KEYS = (
    "search",
    "experiment",
    "experiment_id",
    "parent_run_id",
    "trial_run_id",
    "space_file",
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented, key-sorted JSON (strict: NaN is refused)."""
    path.write_text(
        json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )


@contextlib.contextmanager
def staged_dir(out_dir: Path, what: str) -> Iterator[Path]:
    """Build a folder atomically: yield a temporary folder next to ``out_dir``, then rename.

    Raises:
        UserError: ``out_dir`` exists and is a file, a symbolic link or a non-empty folder.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UserError(
            f"cannot write the {what} to {str(out_dir)!r}: it exists and is not a "
            "folder; allowed: a new or empty folder"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(
            f"cannot write the {what} to {str(out_dir)!r}: the folder is not empty; "
            "allowed: a new or empty folder"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp (and safetensors) make things private; this is to share
        for path in tmp.iterdir():
            path.chmod(0o644)
        try:
            os.replace(tmp, out_dir)  # POSIX: replaces an empty folder, fails on a non-empty one
        except OSError as exc:
            raise UserError(
                f"cannot write the {what} to {str(out_dir)!r}: {exc.strerror}"
            ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PROVENANCE_KEYS",
    "README_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "WEIGHTS_NAME",
    "sha256_file",
    "staged_dir",
    "write_json",
]
