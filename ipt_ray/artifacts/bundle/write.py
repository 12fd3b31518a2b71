"""From a trial checkpoint to a bundle folder: its config, weights, model card and checksums.

Needs: a trial checkpoint (:mod:`ipt_ray.core.checkpoint`: ``weights.safetensors`` +
``config.json``). Provides: :func:`write_bundle`, which builds the folder atomically and checks
it with :func:`~ipt_ray.artifacts.bundle.verify.verify_bundle` before renaming it into place.
The layout is described in :mod:`ipt_ray.artifacts.bundle.format`.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ipt_ray import __version__
from ipt_ray.artifacts.bundle.card import model_card
from ipt_ray.artifacts.bundle.format import (
    CHECKSUMS_NAME,
    CONFIG_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    README_NAME,
    WEIGHTS_NAME,
    sha256_file,
    staged_dir,
    write_json,
)
from ipt_ray.artifacts.bundle.verify import verify_bundle
from ipt_ray.constants import CONFIG_FILE, WEIGHTS_FILE
from ipt_ray.core.backbone import MODEL_ALIASES
from ipt_ray.core.checkpoint import TRAIN_STATE_JSON, load_weights, read_config
from ipt_ray.errors import UserError

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
    test_metrics: Mapping[str, float] | None = None,
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
            "test": {str(k): _finite_or_none(v, k) for k, v in (test_metrics or {}).items()},
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


def write_bundle(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    provenance: dict[str, Any] | None = None,
    score: float | None = None,
    test_metrics: Mapping[str, float] | None = None,
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
        test_metrics: the trial's test-split metrics (``{"accuracy": 0.81, ...}``), kept
            under ``metric.test``.

    Returns:
        ``out_dir``.

    Raises:
        UserError: ``out_dir`` is not new or empty; the checkpoint lacks a file or key;
            ``provenance`` or ``score`` is not JSON-able.
    """
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    config = bundle_config_from_checkpoint(
        checkpoint_dir, score=score, provenance=provenance, test_metrics=test_metrics
    )
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


__all__ = ["bundle_config_from_checkpoint", "write_bundle", "write_checksums"]
