"""What a key of a search space accepts: the TrainConfig settings and each generator's knobs
(:class:`Slot`), and the checks of a value against the setting or knob."""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ipt_ray.core.config import TrainConfig
from ipt_ray.errors import ConfigError, did_you_mean
from ipt_ray.generators import generator_names, get_config_class, make_config
from ipt_ray.tuning.space.checks import (
    Ctx,
    is_number,
)

GENERATOR = "generator"
KNOB_SEPARATOR = "."  # not "/": Ray's OptunaSearch unflattens keys on "/"


# Settings a space cannot fix or search directly (the generator is params.generator).
NOT_SETTINGS = (GENERATOR, "generator_options")


@dataclass(frozen=True)
class Slot:
    """The values a setting or knob takes: its kind, whether null is allowed, enum values."""

    kind: Literal["bool", "int", "float", "str", "enum", "any"]
    optional: bool = False
    values: tuple[str, ...] = ()

    @property
    def wants(self) -> str:
        return {
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "str": "text",
            "enum": "one of " + ", ".join(self.values),
            "any": "a value",
        }[self.kind] + (" or null" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "float":
            return is_number(value)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "enum":
            return value in self.values
        return True


def _slot_of(hint: Any) -> Slot:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        hint = rest[0] if len(rest) == 1 else Any
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return Slot("enum", optional, tuple(str(m.value) for m in hint))
    for kind, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if hint is typ:
            return Slot(kind, optional)  # type: ignore[arg-type]
    return Slot("any", optional)


@functools.cache
def setting_slot_map() -> dict[str, Slot]:
    hints = typing.get_type_hints(TrainConfig)
    return {
        f.name: _slot_of(hints[f.name])
        for f in dataclasses.fields(TrainConfig)
        if f.name not in NOT_SETTINGS
    }


def setting_names() -> list[str]:
    return list(setting_slot_map())


@functools.cache
def knob_slot_map(generator: str) -> dict[str, Slot]:
    """A generator's knobs; prompt_length is a setting, not a knob, in search spaces."""
    cls = get_config_class(generator)
    hints = typing.get_type_hints(cls)
    return {name: _slot_of(hints[name]) for name in cls.knobs() if name != "prompt_length"}


def knob_names_of(generator: str) -> list[str]:
    return list(knob_slot_map(generator))


def knob_owners(key: str) -> list[str]:
    return [g for g in generator_names() if key in knob_slot_map(g)]


def misplaced_knob(ctx: Ctx, path: str, key: str, hint: str) -> ConfigError:
    owners = knob_owners(key)
    where = owners[0] if len(owners) == 1 else "<generator>"
    what = "every generator" if len(owners) == len(generator_names()) else ", ".join(owners)
    return ctx.error(
        path, f"{key!r} is a knob of {what}; {hint} under params.generator.choices.{where}"
    )


def unknown_setting(ctx: Ctx, path: str, key: str) -> ConfigError:
    settings = setting_names()
    knobs = sorted({k for g in generator_names() for k in knob_slot_map(g)})
    close = did_you_mean(key, [*settings, GENERATOR, *knobs])
    return ctx.error(
        path,
        f"unknown setting{close}; settings: {', '.join(settings)}; generator knobs go "
        "under params.generator.choices.<generator>",
    )


def check_setting(
    ctx: Ctx, path: str, base: Mapping[str, Any], key: str, value: Any, label: str
) -> None:
    """Raise unless TrainConfig accepts ``value`` for ``key`` on top of ``base``."""
    try:
        TrainConfig(**{**base, key: value}).validate()
    except ConfigError as exc:
        lead = f"{label} is not allowed: " if label else ""
        raise ctx.error(path, f"{lead}{exc}") from None


def check_knobs(ctx: Ctx, path: str, generator: str, knobs: Mapping[str, Any], label: str) -> None:
    try:
        make_config(generator, knobs)
    except ConfigError as exc:
        lead = f"{label} is not allowed: " if label else ""
        raise ctx.error(path, f"{lead}{exc}") from None
