"""Prompt generators, registered by name.

``get_config_class(name)`` / ``make_config(name, options)`` (knobs, no torch) and
``build_generator(name, options, backbone)`` (torch) are what the CLI, search spaces and
checkpoints use; names are the public identifiers (``task``, ``prefix``, ``ipt-lookup``,
``ipt-encoder``, ``ipt-prefix``, ``idpg``, ``lpt``). Modules, one job each:

* :mod:`~ipt_ray.generators.registry`: name -> config class -> torch class (a leaf).
* :mod:`~ipt_ray.generators.configs`: every generator's knobs, without torch; each config
  class registers its generator.
* :mod:`~ipt_ray.generators.base`: the interface (:class:`PromptGenerator`, its inputs and
  outputs); :mod:`~ipt_ray.generators.blocks`: pieces several generators share.
* one torch module per generator: :mod:`~ipt_ray.generators.task`, ``prefix``, ``lookup``,
  ``encoder``, ``ipt_prefix``, ``idpg``, ``lpt``.

Importing this package (and validating knobs) imports no torch; the torch names below are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.errors import ConfigError
from ipt_ray.generators.configs import (
    EncoderConfig,
    GeneratorConfig,
    IDPGConfig,
    IPTPrefixConfig,
    LookupConfig,
    LPTConfig,
    PrefixConfig,
    TaskPromptConfig,
)
from ipt_ray.generators.registry import (
    build_generator,
    generator_names,
    get_config_class,
    get_generator_class,
    make_config,
    register,
)
from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.generators.base import BackboneInfo as BackboneInfo
    from ipt_ray.generators.base import GeneratorInputs as GeneratorInputs
    from ipt_ray.generators.base import PromptGenerator as PromptGenerator
    from ipt_ray.generators.base import Prompts as Prompts

#: Names whose module imports torch, imported on first use.
_LAZY = {
    "BackboneInfo": "ipt_ray.generators.base",
    "GeneratorInputs": "ipt_ray.generators.base",
    "PromptGenerator": "ipt_ray.generators.base",
    "Prompts": "ipt_ray.generators.base",
}

__all__ = [
    "BackboneInfo",
    "ConfigError",
    "EncoderConfig",
    "GeneratorConfig",
    "GeneratorInputs",
    "IDPGConfig",
    "IPTPrefixConfig",
    "LPTConfig",
    "LookupConfig",
    "PrefixConfig",
    "PromptGenerator",
    "Prompts",
    "TaskPromptConfig",
    "build_generator",
    "generator_names",
    "get_config_class",
    "get_generator_class",
    "make_config",
    "register",
]

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
