"""Checking a bundle folder before anything in it is used.

Needs: a folder (see :mod:`ipt_ray.artifacts.bundle.format`); reads JSON and safetensors
headers only, never tensors into a model and never code. Provides: :func:`verify_bundle`, which
returns the checked ``ipt_config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from safetensors import SafetensorError, safe_open

from ipt_ray import __version__
from ipt_ray.artifacts.bundle.format import (
    CHECKSUMS_NAME,
    CONFIG_NAME,
    FORMAT_NAME,
    SUPPORTED_FORMAT_VERSIONS,
    WEIGHTS_NAME,
    sha256_file,
)
from ipt_ray.core.config import POOLINGS
from ipt_ray.errors import UserError


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
    if config["pooling"] not in POOLINGS:
        raise UserError(
            f"{CONFIG_NAME}: pooling {config['pooling']!r} is unknown; allowed: "
            + ", ".join(POOLINGS)
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


__all__ = ["verify_bundle"]
