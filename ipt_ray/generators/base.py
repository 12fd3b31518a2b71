"""The one interface every prompt generator implements: a batch of instances in, prompts out.

A generator never touches the backbone. The model (:mod:`ipt_ray.core.model`) hands it a
:class:`GeneratorInputs` built from the frozen backbone and applies the :class:`Prompts` it
returns, in exactly one place.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ipt_ray.generators.knobs import GeneratorConfig


@dataclass(frozen=True)
class BackboneInfo:
    """What a generator may know about the frozen backbone.

    ``word_embeddings`` is a detached copy of the input embedding matrix (V, H), given only
    so that a generator can *initialise* from it (it must not keep a reference for training).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int
    is_decoder: bool
    supports_deep_prompts: bool
    word_embeddings: torch.Tensor | None = field(default=None, repr=False, compare=False)


@dataclass
class GeneratorInputs:
    """One batch as a generator sees it.

    Attributes:
        input_ids: (B, T) token ids of the instance (right-padded).
        attention_mask: (B, T) 1 for real tokens, 0 for padding.
        token_embeddings: (B, T, H) the frozen backbone's input word embeddings of
            ``input_ids`` (no position or type embeddings), without gradient.
        sentence_embedding: (B, H) the frozen backbone's pooled representation of the
            instance without any prompt, or None unless the generator asks for it
            (``needs_sentence_embedding``).
        layer_states: (B, T, H) the text's frozen states at the input of the layer a late
            prompt joins (the output of the layers below it, without prompt or gradient), or
            None unless the generator asks for them (``needs_layer_states``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_embeddings: torch.Tensor
    sentence_embedding: torch.Tensor | None = None
    layer_states: torch.Tensor | None = None


@dataclass
class Prompts:
    """What a generator returns; at least one field is set.

    Attributes:
        input: (B, P, H) soft prompt vectors prepended to the input embeddings.
        layer_kv: (L, 2, B, KV, P', D) a key/value prefix for every attention layer
            (L layers, keys then values, KV key/value heads of width D).
    """

    input: torch.Tensor | None = None
    layer_kv: torch.Tensor | None = None

    @property
    def input_length(self) -> int:
        return 0 if self.input is None else int(self.input.shape[1])

    @property
    def prefix_length(self) -> int:
        return 0 if self.layer_kv is None else int(self.layer_kv.shape[4])


class PromptGenerator(nn.Module, ABC):
    """Base class of all generators.

    Subclasses implement :meth:`forward` and :meth:`expected_num_params` (the README's
    formula, checked by the tests against the real count). A generator is registered through
    its config class (:mod:`ipt_ray.generators.configs`), whose ``generator_class`` names the
    subclass; the config also carries the public name and the default learning rate.

    Attributes:
        needs_sentence_embedding: when True, the model computes
            ``GeneratorInputs.sentence_embedding`` with an extra frozen forward pass.
        needs_layer_states: when True, the generator conditions on the text's states at the
            layer its (late) input prompt joins: the model gives it
            ``GeneratorInputs.layer_states``, the same states the layers above take (cached or
            computed once, without gradient), and puts ``prompt_layer`` 0 at the middle layer.
    """

    needs_sentence_embedding: ClassVar[bool] = False
    needs_layer_states: ClassVar[bool] = False

    def __init__(self, config: GeneratorConfig, backbone: BackboneInfo) -> None:
        super().__init__()
        self.config = config
        # Keep the sizes, drop the embedding matrix (it is for initialisation only).
        self.backbone = dataclasses.replace(backbone, word_embeddings=None)

    @property
    def name(self) -> str:
        """The generator's public name (its config's)."""
        return self.config.name

    @property
    def deep(self) -> bool:
        """Whether this generator (with its current config) emits a per-layer KV prefix."""
        return False

    @property
    def input_prompt_length(self) -> int:
        """Number of positions the input prompt occupies (0 for prefix-only generators)."""
        return 0 if self.deep else self.config.prompt_length

    @abstractmethod
    def forward(self, inputs: GeneratorInputs) -> Prompts:
        """Generate prompts for a batch; see :class:`GeneratorInputs` and :class:`Prompts`."""

    @abstractmethod
    def expected_num_params(self) -> int:
        """Trainable parameter count by formula (documented in README)."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; override to give parts their own learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
