"""The transformer layer list of a backbone, and the pieces that feed a late prompt through it.

A late prompt (``prompt_layer`` k > 0, :mod:`ipt_ray.core.model`) needs the text's states at
the input of layer k, and a forward pass whose layers k..L-1 take [prompt; states]: hooks on
the layer list do both on the backbone's own forward (no copy of its layer loop).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ipt_ray.errors import ConfigError

#: Architectures whose layer loop late prompts (``prompt_layer`` > 0) are tested on.
LATE_PROMPT_MODEL_TYPES = ("bert", "distilbert", "electra", "gpt2", "llama", "roberta")
#: Where the layer list lives, by attribute path, in the architectures above.
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "h", "layers")


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted states are in hand."""


def layer_list(backbone: PreTrainedModel) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList of its L transformer layers).

    Raises:
        ConfigError: the backbone is not one of :data:`LATE_PROMPT_MODEL_TYPES`.
    """
    model_type = str(backbone.config.model_type)
    num_layers = int(backbone.config.num_hidden_layers)
    if model_type in LATE_PROMPT_MODEL_TYPES:
        for path in _LAYER_PATHS:
            parent_path, _, attr = path.rpartition(".")
            try:
                parent = backbone.get_submodule(parent_path) if parent_path else backbone
            except AttributeError:
                continue
            layers = getattr(parent, attr, None)
            if isinstance(layers, nn.ModuleList) and len(layers) == num_layers:
                return parent, attr, layers
    raise ConfigError(
        f"prompt_layer > 0 (a late prompt) is not supported on {model_type!r} backbones; "
        f"allowed: {', '.join(LATE_PROMPT_MODEL_TYPES)}, or prompt_layer 0"
    )


def hidden_states_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states (B, T, H) a layer's forward is called with (first positional, or
    the ``hidden_states`` keyword, as architectures differ)."""
    return args[0] if args else kwargs["hidden_states"]


def with_hidden_states(
    args: tuple[Any, ...], kwargs: dict[str, Any], hidden: torch.Tensor
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A layer's call arguments with ``hidden`` in place of its hidden states."""
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}
