"""The generator registry: public name -> config class, and the torch class on first use.

A leaf module: it imports no generator, no torch, and nothing from the package ``__init__``.
Config classes register themselves (:func:`register`, in :mod:`~ipt_ray.generators.configs`);
the torch class named by a config's ``generator_class`` is imported only when a generator is
built, so validating knobs (a search space, the CLI) never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ipt_ray.errors import ConfigError, unknown_choice

if TYPE_CHECKING:
    from ipt_ray.generators.base import BackboneInfo, PromptGenerator
    from ipt_ray.generators.knobs import GeneratorConfig

ConfigT = TypeVar("ConfigT", bound="type[GeneratorConfig]")

_CONFIGS: dict[str, type[GeneratorConfig]] = {}


def register(config_class: ConfigT) -> ConfigT:
    """Class decorator adding a generator, by its config class's ``name``, to the registry.

    Raises:
        ValueError: the name is already registered.
    """
    name = config_class.name
    if name in _CONFIGS:
        raise ValueError(f"generator name {name!r} is already registered")
    _CONFIGS[name] = config_class
    return config_class


def generator_names() -> list[str]:
    """Registered generator names, sorted."""
    return sorted(_CONFIGS)


def get_config_class(name: str) -> type[GeneratorConfig]:
    """The config dataclass of generator ``name`` (its fields are the knobs).

    Raises:
        ConfigError: unknown name, with a suggestion.
    """
    try:
        return _CONFIGS[name]
    except KeyError:
        raise unknown_choice("generator", name, _CONFIGS) from None


def make_config(name: str, options: Mapping[str, Any]) -> GeneratorConfig:
    """Validated config of generator ``name`` from knob values (raises ConfigError)."""
    return get_config_class(name).from_dict(options)


def get_generator_class(name: str) -> type[PromptGenerator]:
    """The torch module class of generator ``name``, imported now if it was not yet.

    Raises:
        ConfigError: unknown name, with a suggestion.
    """
    module, _, attribute = get_config_class(name).generator_class.partition(":")
    cls: type[PromptGenerator] = getattr(importlib.import_module(module), attribute)
    return cls


def build_generator(
    name: str, options: Mapping[str, Any] | GeneratorConfig, backbone: BackboneInfo
) -> PromptGenerator:
    """Instantiate generator ``name`` for ``backbone`` from knob values or a built config.

    Raises:
        ConfigError: unknown name or knob, invalid value, or a deep generator on a backbone
            whose attention does not support deep prompts.
    """
    cls = get_generator_class(name)
    config = make_config(name, options) if isinstance(options, Mapping) else options
    generator = cls(config, backbone)
    if generator.deep and not backbone.supports_deep_prompts:
        raise ConfigError(
            f"generator {name!r} with these knobs puts a prefix in every layer, which this "
            "backbone's attention does not support; use an input-level generator or knob"
        )
    return generator
