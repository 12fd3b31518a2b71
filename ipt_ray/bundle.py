"""Portable prompt bundles: the winning trial's prompts as a folder that loads anywhere.

Needs: a trial checkpoint (:mod:`ipt_ray.core.checkpoint`). Provides: a self-describing folder that
:func:`load_bundle` turns back into a model, with no Ray, no MLflow and no pickle involved.

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
    metric            {"name": "accuracy", "split": "validation", "score": float | null}
    params            {"trainable": int, "backbone": int, "trainable_share": float}
    training          {"best_epoch": int, "epochs": int, "train_config": {TrainConfig fields}}
    provenance        {} or where the bundle came from: search, experiment, experiment_id,
                      parent_run_id, trial_run_id, space_file, ... (filled by the MLflow layer)

Weights for a ``prefix`` generator with ``reparam`` keep the MLP (the rebuildable form); the
PEFT exporter (:mod:`ipt_ray.peft_export`) folds it.

The backbone is a reference, not a copy. A hub id (with its revision) loads wherever the hub
or its cache is reachable. A local directory is stored as given (a relative path then resolves
against the loader's working directory): the bundle needs that directory, or the caller
passes ``backbone=`` to :func:`load_bundle`. ``trust_remote_code`` is recorded, but a loader
only uses it when the caller also passes ``trust_remote_code=True``.

Security: loading reads JSON and safetensors only and never executes code from the bundle.
:func:`verify_bundle` refuses unknown format versions, file references that leave the folder,
symbolic links, sub-folders, files missing from or extra to ``checksums.json``, checksum
mismatches and weights that are not safetensors. The checksums guard against damage and
casual edits, not against an attacker who rewrites them as well: trust a bundle as much as
its source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ipt_ray import __version__
from ipt_ray.constants import CONFIG_FILE, WEIGHTS_FILE
from ipt_ray.core.backbone import MODEL_ALIASES, load_backbone, resolve_model
from ipt_ray.core.checkpoint import TRAIN_STATE_JSON, load_weights, read_config
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import IPTModel, build_model
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
_POOLINGS = ("first", "mean", "last")


# -- small helpers shared with the PEFT exporter ----------------------------------------------
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


# -- from a checkpoint to a bundle config ----------------------------------------------------
_CHECKPOINT_KEYS = (
    "train_config",
    "generator",
    "generator_config",
    "label_names",
    "num_labels",
    "metric",
    "pooling",
    "task",
    "is_pair",
)


def _finite_or_none(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what} must be a number, got {value!r}")
    return float(value) if math.isfinite(value) else None


def _check_provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    if provenance is None:
        return {}
    if not isinstance(provenance, Mapping) or not all(isinstance(k, str) for k in provenance):
        raise UserError(
            "provenance must be a mapping with string keys, e.g. "
            "{'parent_run_id': '...', 'trial_run_id': '...'}"
        )
    try:
        json.dumps(dict(provenance), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"provenance must hold JSON values only: {exc}") from None
    return dict(provenance)


def bundle_config_from_checkpoint(
    checkpoint_dir: Path,
    *,
    score: float | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ipt_config.json`` content for a trial checkpoint (see the module docstring).

    ``score`` defaults to the best validation score in ``train_state.json`` when present.

    Raises:
        UserError: the checkpoint lacks ``config.json`` / ``weights.safetensors`` or a key.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise UserError(f"checkpoint folder {str(checkpoint_dir)!r} does not exist")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (checkpoint_dir / name).is_file():
            raise UserError(f"{str(checkpoint_dir)!r} is not a trial checkpoint: {name} is missing")
    try:
        meta = read_config(checkpoint_dir)
    except (ValueError, OSError) as exc:
        raise UserError(
            f"cannot read {CONFIG_FILE} of checkpoint {str(checkpoint_dir)!r}: {exc}"
        ) from None
    missing = [k for k in _CHECKPOINT_KEYS if k not in meta]
    if missing:
        raise UserError(
            f"checkpoint {CONFIG_FILE} in {str(checkpoint_dir)!r} lacks "
            f"{', '.join(missing)}; re-save it with this ipt-ray version"
        )
    train = dict(meta["train_config"])
    if score is None and (checkpoint_dir / TRAIN_STATE_JSON).is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError):
            state = json.loads((checkpoint_dir / TRAIN_STATE_JSON).read_text(encoding="utf-8"))
            best = state.get("best_score")
            if isinstance(best, (int, float)) and not isinstance(best, bool):
                score = best
    options = dict(meta["generator_config"])
    model = str(train["model"])
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ipt_ray_version": __version__,
        "files": {"weights": WEIGHTS_NAME, "model_card": README_NAME},
        "backbone": {
            "model": model,
            "revision": train.get("revision"),
            "trust_remote_code": bool(train.get("trust_remote_code", False)),
            "tokenizer": model,
            "tokenizer_revision": train.get("revision"),
            "local_dir": model not in MODEL_ALIASES and Path(model).expanduser().is_dir(),
        },
        "generator": {"name": str(meta["generator"]), "options": options},
        "prompt_length": int(options.get("prompt_length") or train.get("prompt_length") or 0),
        "max_length": int(train["max_length"]),
        "pooling": str(meta["pooling"]),
        "label_names": [str(n) for n in meta["label_names"]],
        "num_labels": int(meta["num_labels"]),
        "is_pair": bool(meta["is_pair"]),
        "task": str(meta["task"]),
        "metric": {
            "name": str(meta["metric"]),
            "split": "validation",
            "score": _finite_or_none(score, "score"),
        },
        "params": {
            "trainable": int(meta.get("trainable_params", 0)),
            "backbone": int(meta.get("backbone_params", 0)),
            "trainable_share": float(meta.get("trainable_share", 0.0)),
        },
        "training": {
            "best_epoch": int(meta.get("best_epoch", 0)),
            "epochs": int(meta.get("epoch", 0)),
            "train_config": train,
        },
        "provenance": _check_provenance(provenance),
    }


# -- the model card ----------------------------------------------------------------------------
def _prompt_place(layer: Any) -> str:
    if not layer:
        return "the input embeddings"
    return f"the input of layer {layer} (a late prompt: layers below it see the text alone)"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def model_card(config: Mapping[str, Any]) -> str:
    """The bundle's README.md: what it is, how well it did, where it came from, how to load."""
    backbone, generator, metric = config["backbone"], config["generator"], config["metric"]
    params, training = config["params"], config["training"]
    knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(generator["options"].items()))
    model = backbone["model"] + (f" @ {backbone['revision']}" if backbone["revision"] else "")
    share = params["trainable_share"] * 100
    rows = [
        ("task", config["task"] + (" (text pairs)" if config["is_pair"] else "")),
        (f"{metric['split']} {metric['name']}", _fmt(metric["score"])),
        ("labels", ", ".join(config["label_names"])),
        ("generator", f"{generator['name']} ({knobs})"),
        ("prompt length", config["prompt_length"]),
        ("prompt joins", _prompt_place(training["train_config"].get("prompt_layer", 0))),
        ("backbone (frozen)", model),
        (
            "trainable parameters",
            f"{params['trainable']:,} ({share:.3g}% of the backbone's {params['backbone']:,})",
        ),
        ("max length", f"{config['max_length']} tokens (prompt excluded)"),
        ("pooling", f"{config['pooling']} over text positions, then a linear head"),
        ("best epoch", f"{training['best_epoch']} of {training['epochs']}"),
        (
            "written by",
            f"ipt-ray {config['ipt_ray_version']}, bundle format {config['format_version']}",
        ),
    ]
    lines = [
        f"# Prompt bundle: {generator['name']} on {config['task']}",
        "",
        "Instance-wise prompt tuning (ipt-ray) on a frozen backbone: only the prompt generator "
        "and a linear head were trained.",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {name} | {_fmt(value)} |" for name, value in rows],
        "",
        "## Load",
        "",
        "```python",
        "from ipt_ray.bundle import load_bundle",
        'bundle = load_bundle("path/to/this/folder")',
        'print(bundle.predict(["a text to classify"]))',
        "```",
        "",
        "Or `ipt-ray predict` on a .txt/.csv/.jsonl file. `bundle.prompt_vectors(texts)` "
        "gives the generated prompts.",
    ]
    if backbone["local_dir"]:
        lines += [
            "",
            f"The backbone is the local folder `{backbone['model']}`: loading needs it, "
            "or pass `backbone=` to `load_bundle`.",
        ]
    if backbone["trust_remote_code"]:
        lines += [
            "",
            "The backbone runs its own code from the hub: pass "
            "`trust_remote_code=True` to `load_bundle` if you trust it.",
        ]
    provenance = config.get("provenance") or {}
    if provenance:
        keys = [k for k in PROVENANCE_KEYS if k in provenance]
        keys += sorted(k for k in provenance if k not in PROVENANCE_KEYS)
        lines += ["", "## Provenance", "", "| | |", "| --- | --- |"]
        lines += [f"| {k.replace('_', ' ')} | {_fmt(provenance[k])} |" for k in keys]
    lines += [
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_NAME}`: generator and head tensors (safetensors)",
        f"- `{CONFIG_NAME}`: backbone, generator and knobs, labels, pooling, metric",
        f"- `{CHECKSUMS_NAME}`: sha256 of every other file",
        "",
        "No pickle and no code: loading reads JSON and safetensors only.",
        "",
    ]
    return "\n".join(lines)


# -- writing -----------------------------------------------------------------------------------
def write_bundle(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    provenance: dict[str, Any] | None = None,
    score: float | None = None,
) -> Path:
    """Export a trial checkpoint as a bundle folder (layout in the module docstring).

    Takes the best epoch's weights. The folder is built next to ``out_dir`` and renamed into
    place, so a failure leaves nothing behind.

    Args:
        checkpoint_dir: a trial checkpoint (``weights.safetensors`` + ``config.json``).
        out_dir: a new or empty folder.
        provenance: JSON values describing the search it came from (see ``PROVENANCE_KEYS``).
        score: the validation score of the best epoch (default: read from the checkpoint's
            train state when present).

    Returns:
        ``out_dir``.

    Raises:
        UserError: ``out_dir`` is not new or empty; the checkpoint lacks a file or key;
            ``provenance`` or ``score`` is not JSON-able.
    """
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    config = bundle_config_from_checkpoint(checkpoint_dir, score=score, provenance=provenance)
    weights = load_weights(checkpoint_dir, best=True)
    unknown = sorted(k for k in weights if k.split(".", 1)[0] not in ("generator", "head"))
    if unknown or "head.weight" not in weights:
        raise UserError(
            f"checkpoint weights in {str(checkpoint_dir)!r} are not ipt-ray trainable "
            f"weights (unexpected keys {unknown[:3]})"
        )
    with staged_dir(out_dir, "bundle") as tmp:
        save_file(
            {k: v.detach().to("cpu").contiguous() for k, v in sorted(weights.items())},
            str(tmp / WEIGHTS_NAME),
            metadata={
                "format": "pt",
                "ipt_ray_format": FORMAT_NAME,
                "ipt_ray_format_version": str(FORMAT_VERSION),
            },
        )
        write_json(tmp / CONFIG_NAME, config)
        (tmp / README_NAME).write_text(model_card(config), encoding="utf-8")
        write_checksums(tmp)
        verify_bundle(tmp)  # what we wrote must load
    return out_dir


def write_checksums(bundle_dir: Path) -> None:
    """(Re)write ``checksums.json`` over every other plain file of the folder."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(Path(bundle_dir).iterdir())
        if p.name != CHECKSUMS_NAME and p.is_file() and not p.is_symlink()
    }
    write_json(Path(bundle_dir) / CHECKSUMS_NAME, {"algorithm": "sha256", "files": files})


# -- verifying -----------------------------------------------------------------------------
def _is_plain_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\x00:")
        and not PurePosixPath(name).is_absolute()
        and not PureWindowsPath(name).is_absolute()
        and PurePosixPath(name).name == name
    )


def _bundle_file(bundle_dir: Path, name: Any, field: str) -> Path:
    """The path of a file the config or checksums names, refusing anything outside the folder."""
    if not _is_plain_name(name):
        raise UserError(
            f"bundle {field} {name!r} is not a plain file name inside the bundle; allowed: a "
            f"name such as {WEIGHTS_NAME!r} (no folders, '..' or absolute paths)"
        )
    path = bundle_dir / name
    if path.is_symlink():
        raise UserError(f"bundle file {name!r} is a symbolic link; bundles hold plain files only")
    if path.resolve().parent != bundle_dir.resolve():
        raise UserError(f"bundle {field} {name!r} points outside the bundle folder")
    return path


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"bundle file {what} is not valid JSON: {exc}") from None


_SCHEMA: dict[str, Any] = {
    "format": str,
    "format_version": int,
    "ipt_ray_version": str,
    "files": {"weights": str, "model_card": str},
    "backbone": {
        "model": str,
        "revision": (str, None),
        "trust_remote_code": bool,
        "tokenizer": str,
        "tokenizer_revision": (str, None),
        "local_dir": bool,
    },
    "generator": {"name": str, "options": dict},
    "prompt_length": int,
    "max_length": int,
    "pooling": str,
    "label_names": list,
    "num_labels": int,
    "is_pair": bool,
    "task": str,
    "metric": {"name": str, "split": str, "score": (float, int, None)},
    "params": {"trainable": int, "backbone": int, "trainable_share": (float, int)},
    "training": {"best_epoch": int, "epochs": int, "train_config": dict},
    "provenance": dict,
}


def _type_ok(value: Any, spec: Any) -> bool:
    kinds = spec if isinstance(spec, tuple) else (spec,)
    for kind in kinds:
        if kind is None and value is None:
            return True
        if kind is not None and isinstance(value, kind):
            # bool is an int to Python, not to a schema
            if isinstance(value, bool) and kind is not bool:
                continue
            return True
    return False


def _check_schema(value: Any, schema: Mapping[str, Any], where: str = "") -> None:
    if not isinstance(value, dict):
        raise UserError(f"{CONFIG_NAME}: {where.rstrip('.') or 'the file'} must be a JSON object")
    for key, spec in schema.items():
        name = f"{where}{key}"
        if key not in value:
            raise UserError(f"{CONFIG_NAME} lacks field {name!r}; the bundle is incomplete")
        if isinstance(spec, dict):
            _check_schema(value[key], spec, f"{name}.")
        elif not _type_ok(value[key], spec):
            kinds = spec if isinstance(spec, tuple) else (spec,)
            allowed = " or ".join("null" if k is None else k.__name__ for k in kinds)
            raise UserError(f"{CONFIG_NAME}: field {name!r} must be {allowed}, got {value[key]!r}")


def _check_config_values(config: dict[str, Any]) -> None:
    labels = config["label_names"]
    if not labels or not all(isinstance(n, str) for n in labels):
        raise UserError(f"{CONFIG_NAME}: label_names must be a non-empty list of strings")
    if len(set(labels)) != len(labels) or len(labels) != config["num_labels"]:
        raise UserError(
            f"{CONFIG_NAME}: label_names must be {config['num_labels']} distinct "
            f"names, got {labels!r}"
        )
    if config["pooling"] not in _POOLINGS:
        raise UserError(
            f"{CONFIG_NAME}: pooling {config['pooling']!r} is unknown; allowed: "
            + ", ".join(_POOLINGS)
        )
    for key in ("prompt_length", "max_length"):
        if config[key] < 1:
            raise UserError(f"{CONFIG_NAME}: {key} must be a positive integer, got {config[key]!r}")


def _check_weights(path: Path, num_labels: int) -> None:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            head = f.get_slice("head.weight").get_shape() if "head.weight" in keys else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(
            f"bundle file {path.name!r} is not a safetensors file "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "bundles hold safetensors weights only"
        ) from None
    unknown = [k for k in keys if k.split(".", 1)[0] not in ("generator", "head")]
    if unknown:
        raise UserError(
            f"bundle file {path.name!r} holds unexpected tensors {unknown[:3]}; "
            "allowed: generator.*, head.*"
        )
    if head is None or len(head) != 2 or head[0] != num_labels:
        raise UserError(
            f"bundle file {path.name!r}: head.weight must have shape "
            f"({num_labels}, hidden), got {head}"
        )


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Check a bundle folder before anything in it is used; return its ``ipt_config.json``.

    Checks, in order: the format and its version; that the folder holds plain files only (no
    sub-folders, no symbolic links); that ``checksums.json`` lists exactly the other files and
    every digest matches; the config's schema and values; that every file reference in the
    config is a plain name inside the folder; that the weights are safetensors with
    ``generator.*`` / ``head.*`` tensors and a head of ``num_labels`` rows.

    Raises:
        UserError: one line naming the file or field at fault.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise UserError(f"bundle folder {str(bundle_dir)!r} does not exist")
    for required in (CONFIG_NAME, CHECKSUMS_NAME):
        if not (bundle_dir / required).exists() and not (bundle_dir / required).is_symlink():
            raise UserError(f"bundle {str(bundle_dir)!r} is incomplete: {required} is missing")
    config_path = _bundle_file(bundle_dir, CONFIG_NAME, "file")
    config = _read_json(config_path, CONFIG_NAME)
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise UserError(
            f"{CONFIG_NAME} in {str(bundle_dir)!r} is not an ipt-ray bundle config "
            f"(format must be {FORMAT_NAME!r})"
        )
    version = config.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        raise UserError(
            f"bundle format version {version!r} is not supported by ipt-ray "
            f"{__version__}; supported: " + ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
        )

    for entry in sorted(bundle_dir.iterdir()):
        if entry.is_symlink():
            raise UserError(
                f"bundle file {entry.name!r} is a symbolic link; bundles hold plain files only"
            )
        if not entry.is_file():
            raise UserError(
                f"bundle holds {entry.name!r}, which is not a plain file; bundles "
                "hold plain files only"
            )
    checksums = _read_json(_bundle_file(bundle_dir, CHECKSUMS_NAME, "file"), CHECKSUMS_NAME)
    listed = checksums.get("files") if isinstance(checksums, dict) else None
    if not isinstance(listed, dict) or checksums.get("algorithm") != "sha256":
        raise UserError(
            f"{CHECKSUMS_NAME} must be {{'algorithm': 'sha256', 'files': {{name: digest}}}}"
        )
    present = {p.name for p in bundle_dir.iterdir()} - {CHECKSUMS_NAME}
    for name in sorted(present - set(listed)):
        raise UserError(
            f"bundle file {name!r} is not listed in {CHECKSUMS_NAME}; the bundle was modified"
        )
    for name, digest in sorted(listed.items()):
        path = _bundle_file(bundle_dir, name, f"{CHECKSUMS_NAME} entry")
        if not path.is_file():
            raise UserError(f"bundle {str(bundle_dir)!r} is incomplete: {name} is missing")
        if not isinstance(digest, str) or sha256_file(path) != digest.lower():
            raise UserError(
                f"checksum mismatch for bundle file {name!r}: it was modified or "
                "damaged after export"
            )

    _check_schema(config, _SCHEMA)
    _check_config_values(config)
    for field, name in sorted(config["files"].items()):
        path = _bundle_file(bundle_dir, name, f"config files.{field}")
        if not path.is_file():
            raise UserError(
                f"bundle {str(bundle_dir)!r} is incomplete: {name} (files.{field}) is missing"
            )
    _check_weights(bundle_dir / config["files"]["weights"], config["num_labels"])
    return config


# -- loading -----------------------------------------------------------------------------------
@dataclass
class LoadedBundle:
    """A bundle turned back into a model, ready to predict (in eval mode, no gradients).

    Attributes:
        model: the :class:`~ipt_ray.core.model.IPTModel` (frozen backbone, generator, head).
        tokenizer: the backbone's tokenizer.
        config: the bundle's ``ipt_config.json``.
        label_names: class names in logit order.
    """

    model: IPTModel
    tokenizer: PreTrainedTokenizerBase
    config: dict[str, Any]
    label_names: list[str]

    @property
    def device(self) -> torch.device:
        return next(self.model.head.parameters()).device

    def _batches(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None, batch_size: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        texts, text_pairs = _check_texts(texts, text_pairs, bool(self.config["is_pair"]))
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pairs is None else list(text_pairs[start : start + batch_size])
            encoded = self.tokenizer(
                list(texts[start : start + batch_size]),
                pairs,
                truncation=True,
                max_length=int(self.config["max_length"]),
                padding=True,
                padding_side="right",  # pooling of the last token assumes right padding
                return_tensors="pt",
            )
            batch = {
                k: encoded[k].to(torch.int64)
                for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in encoded
            }
            if batch["input_ids"].shape[1] == 0:  # only empty texts, and no special tokens
                pad = int(self.tokenizer.pad_token_id or 0)
                batch = {
                    k: torch.full((len(v), 1), pad if k == "input_ids" else 0)
                    for k, v in batch.items()
                }
            yield {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def logits(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """(N, C) float32 logits of ``texts`` (and ``text_pairs`` for pair bundles)."""
        self.model.eval()
        out = [
            self.model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).float().cpu()
            for b in self._batches(texts, text_pairs, batch_size)
        ]
        if not out:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """One ``{"label": name, "probabilities": {name: p}}`` per text, in input order.

        Raises:
            UserError: texts are not strings; pairs are missing for a pair bundle, given for a
                single-text one, or of another length.
        """
        logits = torch.from_numpy(self.logits(texts, text_pairs, batch_size))
        probs = torch.softmax(logits.double(), dim=-1).tolist()
        names = self.label_names
        return [
            {
                "label": names[int(np.argmax(row))],
                "probabilities": {name: float(p) for name, p in zip(names, row, strict=True)},
            }
            for row in probs
        ]

    @torch.no_grad()
    def prompt_vectors(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """The generated prompts per text, float32.

        Returns:
            ``{"input": (N, P, H)}`` for input prompts and/or ``{"layer_kv": (N, L, 2, KV, P,
            D)}`` for per-layer key/value prefixes (L layers, keys then values, KV key/value
            heads of width D). Static generators give the same vectors for every text.
        """
        self.model.eval()
        parts: dict[str, list[torch.Tensor]] = {}
        for b in self._batches(texts, text_pairs, batch_size):
            prompts = self.model.prompts(
                b["input_ids"], b["attention_mask"], b.get("token_type_ids")
            )
            if prompts.input is not None:
                parts.setdefault("input", []).append(prompts.input.float().cpu())
            if prompts.layer_kv is not None:  # (L, 2, B, KV, P, D) -> (B, L, 2, KV, P, D)
                parts.setdefault("layer_kv", []).append(
                    prompts.layer_kv.permute(2, 0, 1, 3, 4, 5).float().cpu()
                )
        return {k: torch.cat(v).numpy() for k, v in parts.items()}


def _check_texts(
    texts: Sequence[str], text_pairs: Sequence[str] | None, is_pair: bool
) -> tuple[Sequence[str], Sequence[str] | None]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise UserError("texts must be a list of strings")
    if text_pairs is not None:
        if isinstance(text_pairs, str) or not all(isinstance(t, str) for t in text_pairs):
            raise UserError("text_pairs must be a list of strings")
        if len(text_pairs) != len(texts):
            raise UserError(
                f"got {len(texts)} texts but {len(text_pairs)} text_pairs; "
                "allowed: one pair per text"
            )
        if not is_pair:
            raise UserError("this bundle was trained on single texts; pass no text_pairs")
    elif is_pair and len(texts) > 0:
        raise UserError(
            "this bundle was trained on text pairs; pass text_pairs (one second text per text)"
        )
    return texts, text_pairs


def load_bundle(
    bundle_dir: Path,
    *,
    backbone: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> LoadedBundle:
    """Verify a bundle, load its backbone by id and revision, and rebuild the model.

    Args:
        bundle_dir: the bundle folder.
        backbone: a hub id or local folder to use instead of the recorded backbone (e.g. where
            the recorded local folder does not exist here); the recorded revision is then not
            applied. It must be the same model, or predictions will be wrong.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        trust_remote_code: allow the backbone's own code, only honoured when the bundle also
            records ``trust_remote_code``.

    Raises:
        UserError: the bundle fails :func:`verify_bundle`; the backbone cannot be loaded or
            needs remote code the caller did not allow; the weights do not fit the generator.
    """
    bundle_dir = Path(bundle_dir)
    config = verify_bundle(bundle_dir)
    recorded = config["backbone"]
    if recorded["trust_remote_code"] and not trust_remote_code:
        raise UserError(
            f"the bundle's backbone {recorded['model']!r} runs its own code from the "
            "hub; pass trust_remote_code=True if you trust it"
        )
    remote = bool(recorded["trust_remote_code"] and trust_remote_code)
    model_ref = str(backbone) if backbone is not None else recorded["model"]
    revision = None if backbone is not None else recorded["revision"]
    net, tokenizer = load_backbone(model_ref, revision=revision, trust_remote_code=remote)
    if recorded["tokenizer"] != recorded["model"]:
        source, _ = resolve_model(recorded["tokenizer"])
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, revision=recorded["tokenizer_revision"], trust_remote_code=remote
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"could not load tokenizer {recorded['tokenizer']!r}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    generator = config["generator"]
    options = {k: v for k, v in generator["options"].items() if k != "prompt_length"}
    prompt_layer = config["training"]["train_config"].get("prompt_layer", 0)
    if not isinstance(prompt_layer, int) or isinstance(prompt_layer, bool) or prompt_layer < 0:
        raise UserError(
            f"{CONFIG_NAME}: training.train_config.prompt_layer must be a whole number from 0, "
            f"got {prompt_layer!r}"
        )
    train = TrainConfig(
        model=model_ref,
        revision=revision,
        trust_remote_code=remote,
        generator=generator["name"],
        prompt_length=int(config["prompt_length"]),
        generator_options=options,
        max_length=int(config["max_length"]),
        pooling=config["pooling"],
        prompt_layer=prompt_layer,
        head_dropout=0.0,
    )
    model, tokenizer = build_model(
        train, int(config["num_labels"]), backbone=net, tokenizer=tokenizer
    )
    weights = load_file(str(bundle_dir / config["files"]["weights"]))
    try:
        model.load_trainable_state_dict(weights)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise UserError(
            f"bundle weights do not fit generator {generator['name']!r} on backbone "
            f"{model_ref!r}: {first}"
        ) from None
    try:
        model = model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
    return LoadedBundle(model, tokenizer, config, list(config["label_names"]))


__all__ = [
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PROVENANCE_KEYS",
    "README_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "WEIGHTS_NAME",
    "LoadedBundle",
    "bundle_config_from_checkpoint",
    "load_bundle",
    "model_card",
    "verify_bundle",
    "write_bundle",
    "write_checksums",
]
