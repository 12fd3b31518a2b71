"""The one interface every prompt generator implements: a batch of instances in, prompts out.

A generator never touches the backbone. The model (:mod:`ipt_ray.core.model`) hands it a
:class:`GeneratorInputs` built from the frozen backbone and applies the :class:`Prompts` it
returns, in exactly one place.
"""

from __future__ import annotations

import dataclasses
import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

import torch
from torch import nn

from ipt_ray.errors import ConfigError


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
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_embeddings: torch.Tensor
    sentence_embedding: torch.Tensor | None = None


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


def help_field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose ``metadata['help']`` documents the knob (as in PEFT's configs)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class GeneratorConfig:
    """Knobs shared by every generator. Subclasses add their own fields.

    Every field is a knob reachable from ``--set KEY=VALUE`` and from search spaces.
    ``__post_init__`` validates and raises :class:`ConfigError` naming the field.
    """

    prompt_length: int = help_field(16, "number of prompt vectors P (per layer for deep prompts)")
    dropout: float = help_field(0.0, "dropout on the generated prompt vectors")

    def __post_init__(self) -> None:
        self._coerce_enums()
        if not isinstance(self.prompt_length, int) or self.prompt_length < 1:
            raise ConfigError(
                f"prompt_length must be a positive integer, got {self.prompt_length!r}"
            )
        if self.prompt_length > 4096:
            raise ConfigError(
                f"prompt_length {self.prompt_length} is too large; allowed: 1 to 4096"
            )
        check_range("dropout", self.dropout, 0.0, 1.0, high_open=True)

    def _coerce_enums(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            hint = hints.get(f.name)
            value = getattr(self, f.name)
            if (
                isinstance(hint, type)
                and issubclass(hint, enum.Enum)
                and not isinstance(value, hint)
            ):
                allowed = [m.value for m in hint]
                if value not in allowed:
                    raise ConfigError(
                        f"{f.name} must be one of {', '.join(map(str, allowed))}, got {value!r}"
                    )
                setattr(self, f.name, hint(value))

    @classmethod
    def knobs(cls) -> dict[str, dataclasses.Field[Any]]:
        """The config's fields by name."""
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GeneratorConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` with a suggestion."""
        from ipt_ray.errors import did_you_mean

        known = cls.knobs()
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"unknown knob {key!r} for this generator{did_you_mean(key, known)}; "
                    f"allowed: {', '.join(sorted(known))}"
                )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their values)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out


def check_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high`` (``< high`` if open)."""
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        upper = f"below {high:g}" if high_open else f"at most {high:g}"
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {what} from {low:g} to {upper}, got {value!r}")


class PromptGenerator(nn.Module, ABC):
    """Base class of all generators.

    Subclasses set ``name`` and ``config_class``, implement :meth:`forward` and
    :meth:`expected_num_params` (the README's formula, checked by the tests against
    the real count), and register with :func:`ipt_ray.generators.register`.

    Attributes:
        needs_sentence_embedding: when True, the model computes
            ``GeneratorInputs.sentence_embedding`` with an extra frozen forward pass.
        default_lr: the learning rate used when a run does not set one.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[GeneratorConfig]]
    needs_sentence_embedding: ClassVar[bool] = False
    #: learning rate used when a run sets none (static prompts want larger rates than networks)
    default_lr: ClassVar[float] = 1e-3

    def __init__(self, config: GeneratorConfig, backbone: BackboneInfo) -> None:
        super().__init__()
        self.config = config
        # Keep the sizes, drop the embedding matrix (it is for initialisation only).
        self.backbone = dataclasses.replace(backbone, word_embeddings=None)

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
