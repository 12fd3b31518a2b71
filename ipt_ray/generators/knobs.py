"""How a generator's knobs are declared and checked: the :class:`GeneratorConfig` base
(the knobs every generator has, and turning a mapping of knob values into a validated config),
:func:`help_field` and :func:`check_range`. No torch here: a search space is validated
against the configs (:mod:`~ipt_ray.generators.configs`) without it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from ipt_ray.errors import ConfigError, check_known_keys


def help_field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose ``metadata['help']`` documents the knob (as in PEFT's configs)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help}, **kwargs)


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


@dataclass
class GeneratorConfig:
    """Knobs shared by every generator. Subclasses add their own fields.

    Every field is a knob reachable from ``--set KEY=VALUE`` and from search spaces.
    ``__post_init__`` validates and raises :class:`ConfigError` naming the field.

    Class attributes (not knobs), set by each registered subclass:
        name: the generator's public name (search spaces, the CLI, checkpoints).
        generator_class: ``module:Class`` of its torch module, imported on first build.
        default_lr: the learning rate a run uses when it sets none.
    """

    name: ClassVar[str]
    generator_class: ClassVar[str]
    #: static prompts want larger rates than networks
    default_lr: ClassVar[float] = 1e-3

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
        check_known_keys("knob", values, cls.knobs())
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their values)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out


# -- task ----------------------------------------------------------------------------------


__all__ = ["GeneratorConfig", "check_range", "help_field"]
