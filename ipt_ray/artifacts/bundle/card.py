"""A bundle's model card (its README.md): what it is, how well it did, where it came from.

Needs: a bundle config (:func:`~ipt_ray.artifacts.bundle.write.bundle_config_from_checkpoint`).
Provides: Markdown text; no file is written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipt_ray.artifacts.bundle.format import (
    CHECKSUMS_NAME,
    CONFIG_NAME,
    PROVENANCE_KEYS,
    WEIGHTS_NAME,
)


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
        *((f"test {name}", _fmt(value)) for name, value in metric.get("test", {}).items()),
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
        "from ipt_ray import load_bundle",
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


__all__ = ["model_card"]
