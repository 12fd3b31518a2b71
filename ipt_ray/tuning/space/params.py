"""The ``fixed`` and ``params`` sections: settings held constant, searched settings, and each
generator choice's sub-space (:class:`GeneratorSpace`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipt_ray.core.config import TrainConfig
from ipt_ray.errors import ConfigError, did_you_mean
from ipt_ray.generators import generator_names
from ipt_ray.tuning.space.checks import (
    Ctx,
    as_mapping,
    check_keys,
    describe_value,
    join_path,
)
from ipt_ray.tuning.space.distribution import Distribution, parse_distribution
from ipt_ray.tuning.space.knobs import (
    GENERATOR,
    KNOB_SEPARATOR,
    NOT_SETTINGS,
    check_knobs,
    check_setting,
    knob_owners,
    knob_slot_map,
    misplaced_knob,
    setting_slot_map,
    unknown_setting,
)


@dataclass(frozen=True)
class GeneratorSpace:
    """The sub-space of one generator choice.

    ``searched`` and ``constants`` are keyed by knob name or, for per-generator settings, by
    TrainConfig field name; in trial configs both appear as ``<generator>.<key>``.
    """

    name: str
    searched: dict[str, Distribution] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)

    def param_name(self, key: str) -> str:
        """The flat trial-config name of ``key``: ``<generator>.<key>``."""
        return f"{self.name}{KNOB_SEPARATOR}{key}"


def parse_fixed(ctx: Ctx, raw: Any) -> dict[str, Any]:
    fixed = dict(as_mapping(ctx, "fixed", raw, "settings to values"))
    slots = setting_slot_map()
    for key, value in fixed.items():
        path = join_path("fixed", key)
        if key in NOT_SETTINGS:
            raise ctx.error(
                path,
                "the generator and its knobs are set in params.generator.choices "
                "(one choice fixes the generator), e.g. params: {generator: {choices: "
                "{idpg: {bottleneck: 32}}}}",
            )
        if key not in slots:
            if isinstance(key, str) and knob_owners(key):
                raise misplaced_knob(ctx, path, key, "fix it")
            raise unknown_setting(ctx, path, str(key))
        slot = slots[key]
        if not slot.accepts(value):
            raise ctx.error(path, f"expected {slot.wants}, got {describe_value(value)}")
        check_setting(ctx, path, {}, key, value, "")
    try:
        TrainConfig(**fixed).validate()
    except ConfigError as exc:
        raise ctx.error("fixed", str(exc)) from None
    return fixed


def parse_params(
    ctx: Ctx, raw: Any, fixed: Mapping[str, Any]
) -> tuple[dict[str, Distribution], dict[str, GeneratorSpace]]:
    if raw is None or raw == {}:
        raise ctx.error("params", "empty; a search space needs at least params.generator")
    raw = as_mapping(ctx, "params", raw, "settings to distributions")
    slots = setting_slot_map()
    params: dict[str, Distribution] = {}
    for key, spec in raw.items():
        path = join_path("params", key)
        if key == GENERATOR:
            continue
        if key == "generator_options":
            raise ctx.error(path, "knobs go under params.generator.choices.<generator>")
        if key not in slots:
            if isinstance(key, str) and knob_owners(key):
                raise misplaced_knob(ctx, path, key, "put it")
            raise unknown_setting(ctx, path, str(key))
        if key in fixed:
            raise ctx.error(
                path, f"{key!r} is also fixed (fixed.{key}); a setting is either fixed or searched"
            )
        if not isinstance(spec, (dict, list)):
            raise ctx.error(
                path,
                f"a plain value ({describe_value(spec)}) is not searched; put it under fixed, or "
                "give {type: float|int|categorical, ...} or a list of choices",
            )
        dist = parse_distribution(ctx, path, spec, slots[key], key)
        for label, value in dist.probe_values():
            check_setting(ctx, path, fixed, key, value, label)
        params[key] = dist
    if GENERATOR not in raw:
        raise ctx.error(
            "params.generator",
            "missing; list the generators to try, e.g. generator: "
            "{choices: {task: {}, idpg: {bottleneck: {type: int, low: 16, high: 128}}}} "
            "(one choice fixes the generator)",
        )
    generators = _parse_generators(ctx, raw[GENERATOR], fixed, params)
    return params, generators


def _parse_generators(
    ctx: Ctx, spec: Any, fixed: Mapping[str, Any], params: Mapping[str, Distribution]
) -> dict[str, GeneratorSpace]:
    path = "params.generator"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ctx.error(
            path,
            f"expected {{choices: {{<generator>: <knobs>, ...}}}} or a list of generator "
            f"names, got {describe_value(spec)}; one choice fixes the generator",
        )
    check_keys(ctx, path, spec, ("type", "choices"))
    if spec.get("type", "categorical") != "categorical":
        raise ctx.error(
            join_path(path, "type"), f"must be categorical, got {describe_value(spec['type'])}"
        )
    choices = spec.get("choices")
    cpath = join_path(path, "choices")
    if isinstance(choices, list):
        for item in choices:
            if not isinstance(item, str):
                raise ctx.error(cpath, f"expected generator names, got {describe_value(item)}")
        if len(set(choices)) != len(choices):
            raise ctx.error(cpath, "a generator is listed twice")
        choices = {item: {} for item in choices}
    if choices is None or choices == {}:
        raise ctx.error(cpath, f"no generators given; allowed: {', '.join(generator_names())}")
    if not isinstance(choices, dict):
        raise ctx.error(
            cpath, f"expected a mapping of generator names to knobs, got {describe_value(choices)}"
        )
    return {
        str(name): _parse_generator(ctx, join_path(cpath, name), name, sub, fixed, params)
        for name, sub in choices.items()
    }


def _parse_generator(
    ctx: Ctx,
    path: str,
    name: Any,
    raw: Any,
    fixed: Mapping[str, Any],
    params: Mapping[str, Distribution],
) -> GeneratorSpace:
    names = generator_names()
    if name not in names:
        raise ctx.error(
            path, f"unknown generator{did_you_mean(str(name), names)}; allowed: {', '.join(names)}"
        )
    raw = as_mapping(ctx, path, raw, "knobs to values or distributions")
    knob_slots = knob_slot_map(name)
    setting_slots = setting_slot_map()
    searched: dict[str, Distribution] = {}
    consts: dict[str, Any] = {}
    for key, spec in raw.items():
        kpath = join_path(path, key)
        if key in knob_slots:
            slot = knob_slots[key]
        elif key in setting_slots:
            slot = setting_slots[key]
            where = "fixed" if key in fixed else "params" if key in params else None
            if where:
                raise ctx.error(
                    kpath,
                    f"{key!r} is also set at {where}.{key}; set it either for all "
                    "generators or per generator",
                )
        else:
            knobs = list(knob_slots)
            raise ctx.error(
                kpath,
                f"unknown knob of {name}{did_you_mean(str(key), knobs)}; knobs: "
                f"{', '.join(knobs)} (and TrainConfig settings such as lr)",
            )
        if isinstance(spec, (dict, list)):
            searched[key] = parse_distribution(ctx, kpath, spec, slot, key)
        else:
            if not slot.accepts(spec):
                raise ctx.error(kpath, f"expected {slot.wants}, got {describe_value(spec)}")
            consts[key] = spec
    knob_consts = {k: v for k, v in consts.items() if k in knob_slots}
    setting_consts = {k: v for k, v in consts.items() if k not in knob_slots}
    for key, value in knob_consts.items():
        check_knobs(ctx, join_path(path, key), name, {key: value}, "")
    check_knobs(ctx, path, name, knob_consts, "")
    base = {**fixed, **setting_consts, GENERATOR: name, "generator_options": knob_consts}
    for key, value in setting_consts.items():
        check_setting(ctx, join_path(path, key), {**fixed, GENERATOR: name}, key, value, "")
    for key, dist in searched.items():
        kpath = join_path(path, key)
        for label, value in dist.probe_values():
            if key in knob_slots:
                check_knobs(ctx, kpath, name, {**knob_consts, key: value}, label)
            else:
                check_setting(ctx, kpath, base, key, value, label)
    return GeneratorSpace(str(name), searched, consts)
