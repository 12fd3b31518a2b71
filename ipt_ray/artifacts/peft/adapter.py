"""Export static prompts as a PEFT adapter (``ipt-ray export --format peft``).

Needs: a trial checkpoint or a bundle whose generator is static: ``task`` (one prompt for
every instance) or ``prefix``. Provides: a folder that ``peft`` loads with
``PeftModel.from_pretrained(AutoModel.from_pretrained(backbone), folder)``; writing it needs
neither ``peft`` nor the backbone's weights (only its ``config.json``, for layer and head counts).

Layout::

    adapter/
      adapter_config.json        PEFT config, task_type FEATURE_EXTRACTION (the base is AutoModel)
      adapter_model.safetensors  {"prompt_embeddings": tensor}
      head.safetensors           {"weight": (C, H), "bias": (C,)}: ipt-ray's linear head
      ipt_head.json              pooling, label names, prompt positions to drop, max length, ...
      README.md                  how to get ipt-ray's logits with PEFT

Mapping (checked against peft 0.21.2, ``PeftModel.get_prompt`` and
``PeftModelForFeatureExtraction.forward``):

- ``task`` -> ``PROMPT_TUNING``: ``prompt_embeddings`` is the (P, H) prompt. PEFT prepends it to
  the word embeddings, so the prompt takes positions 0..P-1 and the text P..P+T-1, as in
  :meth:`ipt_ray.core.model.IPTModel.encode`; its hidden states include the P prompt positions,
  which are dropped before pooling.
- ``prefix`` -> ``PREFIX_TUNING`` with ``prefix_projection=False``: ``prompt_embeddings`` is the
  folded prefix (an MLP of ``reparam`` is evaluated once) as (P, L * 2 * W), W = KV heads x head
  width, ordered (layer, key/value, head, head width) along the second axis: PEFT views it as
  (B, P, 2L, KV, D) and permutes to per-layer (key, value) of (B, KV, P, D). From ipt-ray's
  (L, 2, P, W) prefix that is ``permute(2, 0, 1, 3).reshape(P, -1)``; ``num_attention_heads``
  is KV and ``token_dim`` is W (what PEFT itself sets for grouped-query attention). PEFT passes
  it as a ``DynamicCache`` of length P, so the text takes positions P..P+T-1, as in ipt-ray, and
  its hidden states hold text positions only.

Differences to know (documented in the adapter's README): PEFT's feature-extraction forward
drops ``token_type_ids`` for prompt methods (with a warning), so for text pairs on backbones
with segment embeddings the README shows the call that passes them; PEFT's prefix tuning
needs a base model that takes ``past_key_values`` (not DistilBERT or DeBERTa-v2), so such
exports are refused here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ipt_ray import __version__
from ipt_ray.artifacts.bundle.format import CONFIG_NAME, README_NAME, staged_dir, write_json
from ipt_ray.artifacts.bundle.verify import verify_bundle
from ipt_ray.artifacts.bundle.write import bundle_config_from_checkpoint
from ipt_ray.artifacts.peft.layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    HUB_IDS,
    PEFT_TYPES,
)
from ipt_ray.artifacts.peft.readme import adapter_readme
from ipt_ray.constants import CONFIG_FILE, WEIGHTS_FILE
from ipt_ray.core.backbone import resolve_model
from ipt_ray.core.checkpoint import load_weights
from ipt_ray.errors import UserError
from ipt_ray.generators import BackboneInfo, build_generator, generator_names
from ipt_ray.generators.prefix import PrefixTuning
from ipt_ray.generators.task import TaskPrompt


def _read_source(source: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(bundle-style config, best weights) of a bundle or a trial checkpoint."""
    if (source / CONFIG_NAME).exists():
        config = verify_bundle(source)
        return config, load_file(str(source / config["files"]["weights"]))
    if (source / CONFIG_FILE).exists() or (source / WEIGHTS_FILE).exists():
        return bundle_config_from_checkpoint(source), load_weights(source, best=True)
    raise UserError(
        f"{str(source)!r} is neither an ipt-ray bundle ({CONFIG_NAME}) nor a trial "
        f"checkpoint ({CONFIG_FILE} + {WEIGHTS_FILE})"
    )


def _backbone_config(backbone: dict[str, Any], trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    if backbone["trust_remote_code"] and not trust_remote_code:
        raise UserError(
            f"the backbone {backbone['model']!r} runs its own code from the hub; "
            "pass trust_remote_code=True if you trust it"
        )
    source, local = resolve_model(backbone["model"])
    kwargs: dict[str, Any] = {"trust_remote_code": bool(backbone["trust_remote_code"])}
    if local:
        kwargs["local_files_only"] = True
    elif backbone["revision"]:
        kwargs["revision"] = backbone["revision"]
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not read the config of backbone {backbone['model']!r}: {first[:200]}"
        ) from None


def _info(config: Any) -> BackboneInfo:
    """Sizes as :func:`ipt_ray.core.backbone.backbone_info` computes them, from the config alone."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    return BackboneInfo(
        hidden_size=hidden,
        num_layers=int(config.num_hidden_layers),
        num_heads=heads,
        num_kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(config, "head_dim", None) or hidden // heads),
        vocab_size=int(getattr(config, "vocab_size", 0) or 0),
        max_positions=1 << 30,
        is_decoder=False,
        supports_deep_prompts=True,
    )


def _takes_past_key_values(config: Any) -> bool | None:
    """Whether the AutoModel class of ``config`` accepts ``past_key_values`` (None: unknown).

    transformers 5.24 renamed the argument ``cache`` and still takes ``past_key_values`` (what
    PEFT passes) as a deprecated alias until 5.40: either name counts.
    """
    from transformers import MODEL_MAPPING

    try:
        cls: Any = MODEL_MAPPING[type(config)]
    except (KeyError, ValueError):
        return None
    params = inspect.signature(cls.forward).parameters
    return "past_key_values" in params or "cache" in params


def prompt_embeddings(
    generator_name: str,
    options: dict[str, Any],
    weights: dict[str, torch.Tensor],
    info: BackboneInfo,
) -> torch.Tensor:
    """PEFT's ``prompt_embeddings``: (P, H) for ``task``, (P, L * 2 * W) for ``prefix``.

    Raises:
        UserError: the weights do not fit the generator on this backbone.
    """
    generator = build_generator(generator_name, dict(options), info)
    state = {k[len("generator.") :]: v for k, v in weights.items() if k.startswith("generator.")}
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"the weights do not fit generator {generator_name!r} on this backbone: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from None
    generator.eval()
    with torch.no_grad():
        if isinstance(generator, TaskPrompt):
            return generator.prompt.detach().float().clone()  # (P, H)
        if not isinstance(generator, PrefixTuning):
            raise UserError(f"generator {generator_name!r} has no PEFT form; use --format ipt")
        prefix = generator.static_prefix().detach().float()
        # (L, 2, P, W) -> (P, L * 2 * W), ordered (layer, key/value, head, head width)
        return prefix.permute(2, 0, 1, 3).reshape(prefix.shape[2], -1).contiguous()


def write_peft_adapter(source: Path, out_dir: Path, *, trust_remote_code: bool = False) -> Path:
    """Write a PEFT adapter for a ``task`` or ``prefix`` winner (layout in the module doc).

    Args:
        source: a bundle folder or a trial checkpoint (its best weights are taken).
        out_dir: a new or empty folder; written atomically.
        trust_remote_code: allow reading a backbone config that needs remote code (only
            honoured when the source records ``trust_remote_code``).

    Returns:
        ``out_dir``.

    Raises:
        UserError: the generator is instance-wise (no PEFT form); the backbone's config cannot
            be read; prefix tuning on a backbone that takes no ``past_key_values``; the
            source is not a bundle or checkpoint; ``out_dir`` is not new or empty.
    """
    source, out_dir = Path(source), Path(out_dir)
    config, weights = _read_source(source)
    name = config["generator"]["name"]
    if name not in PEFT_TYPES:
        if name in generator_names():
            raise UserError(
                f"generator {name!r} is instance-wise and has no PEFT form; use --format ipt"
            )
        raise UserError(
            f"generator {name!r} is unknown to ipt-ray {__version__}; allowed for "
            f"PEFT: {', '.join(PEFT_TYPES)}"
        )
    prompt_layer = config["training"]["train_config"].get("prompt_layer", 0)
    if prompt_layer:
        raise UserError(
            f"this prompt joins the input of layer {prompt_layer} (a late prompt), which PEFT "
            "has no form for; use --format ipt"
        )
    peft_type = PEFT_TYPES[name]
    backbone = config["backbone"]
    hf_config = _backbone_config(backbone, trust_remote_code)
    if peft_type == "PREFIX_TUNING" and _takes_past_key_values(hf_config) is False:
        raise UserError(
            f"PEFT passes a prefix as past_key_values, which {hf_config.model_type} "
            "models do not take; use --format ipt"
        )
    info = _info(hf_config)
    embeddings = prompt_embeddings(name, config["generator"]["options"], weights, info)
    P = int(embeddings.shape[0])
    base_id = HUB_IDS.get(backbone["model"], backbone["model"])
    adapter: dict[str, Any] = {
        "auto_mapping": None,
        "base_model_name_or_path": base_id,
        "inference_mode": True,
        "modules_to_save": None,
        "num_layers": info.num_layers,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": P,
        "peft_type": peft_type,
        "revision": backbone["revision"],
        "task_type": "FEATURE_EXTRACTION",
    }
    if peft_type == "PROMPT_TUNING":
        adapter.update(
            {
                "num_attention_heads": info.num_heads,
                "prompt_tuning_init": "RANDOM",
                "prompt_tuning_init_text": None,
                "token_dim": int(embeddings.shape[1]),
                "tokenizer_kwargs": None,
                "tokenizer_name_or_path": None,
            }
        )
    else:
        width = info.num_kv_heads * info.head_dim
        adapter.update(
            {
                "encoder_hidden_size": width,
                "init_weights": None,
                "num_attention_heads": info.num_kv_heads,
                "prefix_projection": False,
                "token_dim": width,
            }
        )
    head_meta = {
        "format": "ipt-ray-peft-head",
        "format_version": 1,
        "ipt_ray_version": __version__,
        "peft_type": peft_type,
        "generator": name,
        "backbone": backbone["model"],
        "revision": backbone["revision"],
        "base_model_name_or_path": base_id,
        "num_virtual_tokens": P,
        "prompt_positions": P if peft_type == "PROMPT_TUNING" else 0,
        "pooling": config["pooling"],
        "label_names": config["label_names"],
        "max_length": config["max_length"],
        "is_pair": config["is_pair"],
        "padding_side": "right",
        "task": config["task"],
        "metric": config["metric"],
        "provenance": config.get("provenance", {}),
    }
    with staged_dir(out_dir, "PEFT adapter") as tmp:
        save_file(
            {"prompt_embeddings": embeddings}, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"}
        )
        write_json(tmp / ADAPTER_CONFIG, adapter)
        save_file(
            {
                "weight": weights["head.weight"].float().contiguous(),
                "bias": weights["head.bias"].float().contiguous(),
            },
            str(tmp / HEAD_WEIGHTS),
            metadata={"format": "pt"},
        )
        write_json(tmp / HEAD_CONFIG, head_meta)
        (tmp / README_NAME).write_text(adapter_readme(head_meta), encoding="utf-8")
    return out_dir


__all__ = ["prompt_embeddings", "write_peft_adapter"]
