"""Prompt generators, registered by name.

``get_generator_class(name)`` / ``build_generator(name, options, backbone)`` are what the CLI,
search spaces and checkpoints use; names are the public identifiers (``task``, ``prefix``,
``ipt-lookup``, ``ipt-encoder``, ``idpg``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipt_ray.errors import ConfigError, unknown_choice
from ipt_ray.generators.base import (
    BackboneInfo,
    GeneratorConfig,
    GeneratorInputs,
    PromptGenerator,
    Prompts,
)

_REGISTRY: dict[str, type[PromptGenerator]] = {}


def register(cls: type[PromptGenerator]) -> type[PromptGenerator]:
    """Class decorator adding a generator to the registry; duplicate names are refused."""
    if cls.name in _REGISTRY:
        raise ValueError(f"generator name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def generator_names() -> list[str]:
    """Registered generator names, sorted."""
    return sorted(_REGISTRY)


def get_generator_class(name: str) -> type[PromptGenerator]:
    """The generator class registered as ``name``; raises ConfigError with a suggestion."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_choice("generator", name, _REGISTRY) from None


def get_config_class(name: str) -> type[GeneratorConfig]:
    """The config dataclass of generator ``name`` (its fields are the knobs)."""
    return get_generator_class(name).config_class


def make_config(name: str, options: Mapping[str, Any]) -> GeneratorConfig:
    """Validated config of generator ``name`` from knob values (raises ConfigError)."""
    return get_config_class(name).from_dict(options)


def build_generator(
    name: str, options: Mapping[str, Any] | GeneratorConfig, backbone: BackboneInfo
) -> PromptGenerator:
    """Instantiate generator ``name`` for ``backbone``.

    Raises:
        ConfigError: unknown name or knob, invalid value, or a deep generator on a backbone
            whose attention does not support deep prompts.
    """
    cls = get_generator_class(name)
    config = options if isinstance(options, GeneratorConfig) else make_config(name, options)
    generator = cls(config, backbone)
    if generator.deep and not backbone.supports_deep_prompts:
        raise ConfigError(
            f"generator {name!r} with these knobs puts a prefix in every layer, which this "
            "backbone's attention does not support; use an input-level generator or knob"
        )
    return generator


# Import the built-in generators so that they register themselves.
from ipt_ray.generators import encoder, idpg, lookup, prefix, task  # noqa: E402, F401

__all__ = [
    "BackboneInfo",
    "ConfigError",
    "GeneratorConfig",
    "GeneratorInputs",
    "PromptGenerator",
    "Prompts",
    "build_generator",
    "generator_names",
    "get_config_class",
    "get_generator_class",
    "make_config",
    "register",
]
