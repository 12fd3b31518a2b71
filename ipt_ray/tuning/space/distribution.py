"""One searched value (:class:`Distribution`) and its parser: ``{type: float|int, low, high,
log?, step?}``, ``{type: categorical, choices}`` or a list of choices."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ipt_ray.errors import did_you_mean
from ipt_ray.tuning.space.checks import (
    Ctx,
    as_bool,
    as_int,
    describe_value,
    is_number,
    join_path,
    same_choice,
    yaml_scalar,
)
from ipt_ray.tuning.space.knobs import (
    Slot,
)

if TYPE_CHECKING:
    import optuna


_DIST_TYPES = ("float", "int", "categorical")
_DIST_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
_PROBE_ALL_INTS = 256  # integer ranges with at most this many values are checked value by value


@dataclass(frozen=True)
class Distribution:
    """One searched value.

    ``type`` is ``float`` or ``int`` (``low``..``high`` inclusive, optionally ``log``-uniform or
    on a ``step`` grid) or ``categorical`` (``choices``).
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for a value of this distribution under parameter name ``name``."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None  # set by the parser
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this distribution can produce."""
        if self.type == "categorical":
            return any(same_choice(value, c) for c in self.choices)
        assert self.low is not None and self.high is not None
        if not is_number(value):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is not None:
            units = (value - self.low) / self.step
            return abs(units - round(units)) < 1e-6
        return True

    @property
    def maximum(self) -> Any:
        """The largest value (for numeric categoricals too); None if there is no order."""
        if self.type != "categorical":
            return self.high
        numbers = [c for c in self.choices if is_number(c)]
        return max(numbers) if numbers else None

    def describe(self) -> str:
        """A short human-readable form, e.g. ``float [0.0001, 0.03] log``."""
        if self.type == "categorical":
            return " | ".join(yaml_scalar(c) for c in self.choices)
        text = f"{self.type} [{self.low:g}, {self.high:g}]"
        if self.log:
            text += " log"
        if self.step is not None:
            text += f" step {self.step:g}"
        return text

    def probe_values(self) -> list[tuple[str, Any]]:
        """(label, value) pairs checked at parse time: ends, small int ranges, all choices."""
        if self.type == "categorical":
            return [(f"choice {yaml_scalar(c)}", c) for c in self.choices]
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            low, high = int(self.low), int(self.high)
            if (high - low) // step + 1 <= _PROBE_ALL_INTS:
                return [(f"value {v}", v) for v in range(low, high + 1, step)]
            return [(f"low {low}", low), (f"high {high}", high)]
        return [(f"low {self.low:g}", self.low), (f"high {self.high:g}", self.high)]


def parse_distribution(
    ctx: Ctx, path: str, spec: dict[str, Any] | list[Any], slot: Slot, key: str
) -> Distribution:
    shorthand = isinstance(spec, list)
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if "type" not in spec:
        raise ctx.error(
            path,
            "missing 'type'; use {type: float|int, low: .., high: ..}, "
            "{type: categorical, choices: [..]} or a list of choices",
        )
    typ = spec["type"]
    if typ not in _DIST_TYPES:
        raise ctx.error(
            join_path(path, "type"),
            f"unknown type {describe_value(typ)}{did_you_mean(str(typ), _DIST_TYPES)}"
            f"; allowed: {', '.join(_DIST_TYPES)}",
        )
    allowed = _DIST_KEYS[typ]
    for k in spec:
        if k not in allowed:
            owner = next((t for t, keys in _DIST_KEYS.items() if k in keys), None)
            hint = (
                f"'{k}' belongs to type: {owner}"
                if owner
                else f"unknown key{did_you_mean(str(k), allowed)}"
            )
            raise ctx.error(join_path(path, k), f"{hint}; type {typ} takes: {', '.join(allowed)}")
    if typ == "categorical":
        cpath = path if shorthand else join_path(path, "choices")
        return _parse_categorical(ctx, cpath, spec.get("choices"), slot, key)
    if slot.kind in ("bool", "enum", "str"):
        raise ctx.error(
            path, f"{key!r} takes {slot.wants}; use type: categorical (or a list of choices)"
        )
    if typ == "int" and slot.kind == "float":
        raise ctx.error(path, f"{key!r} takes any number; use type: float (or categorical)")
    if typ == "float" and slot.kind == "int":
        raise ctx.error(path, f"{key!r} takes whole numbers; use type: int (or categorical)")
    return _parse_range(ctx, path, spec, typ)


def _parse_range(ctx: Ctx, path: str, spec: Mapping[str, Any], typ: str) -> Distribution:
    bounds: dict[str, float] = {}
    for end in ("low", "high"):
        if end not in spec:
            raise ctx.error(path, f"missing '{end}' (type {typ} needs low and high)")
        value = spec[end]
        if typ == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ctx.error(
                join_path(path, end),
                f"bounds of type: int must be whole numbers, got {describe_value(value)}",
            )
        if not is_number(value) or not math.isfinite(value):
            raise ctx.error(
                join_path(path, end), f"expected a finite number, got {describe_value(value)}"
            )
        bounds[end] = value
    low, high = bounds["low"], bounds["high"]
    if low >= high:
        raise ctx.error(
            path,
            f"low {yaml_scalar(low)} must be below high {yaml_scalar(high)} (to hold a "
            "value constant, put it under fixed)",
        )
    log = as_bool(ctx, join_path(path, "log"), spec.get("log", False))
    step = spec.get("step")
    if log and typ == "int" and low < 1:
        raise ctx.error(path, f"log: true needs low of at least 1 for type int, got {low}")
    if log and low <= 0:
        raise ctx.error(path, f"log: true needs low > 0, got {yaml_scalar(low)}")
    if step is not None:
        spath = join_path(path, "step")
        if log:
            raise ctx.error(spath, "step cannot be combined with log: true")
        if typ == "int":
            step = as_int(ctx, spath, step, 1)
        elif not is_number(step) or not math.isfinite(step) or step <= 0:
            raise ctx.error(spath, f"expected a positive number, got {describe_value(step)}")
        if step > high - low:
            raise ctx.error(
                spath,
                f"step {yaml_scalar(step)} is larger than the range "
                f"{yaml_scalar(low)}..{yaml_scalar(high)}",
            )
        units = (high - low) / step
        if abs(units - round(units)) > 1e-9 * max(1.0, units):
            raise ctx.error(
                spath,
                f"high - low ({yaml_scalar(high - low)}) must be a multiple of step "
                f"{yaml_scalar(step)}",
            )
    kind: Literal["int", "float"] = "int" if typ == "int" else "float"
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Distribution(kind, low=low, high=high, log=log, step=step)


def _parse_categorical(ctx: Ctx, cpath: str, choices: Any, slot: Slot, key: str) -> Distribution:
    if not isinstance(choices, list):
        raise ctx.error(cpath, f"expected a list of values, got {describe_value(choices)}")
    if not choices:
        raise ctx.error(cpath, "empty; give at least one value")
    seen: list[Any] = []
    for value in choices:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ctx.error(cpath, f"choices must be plain values, got {describe_value(value)}")
        if not slot.accepts(value):
            close = did_you_mean(str(value), slot.values) if slot.kind == "enum" else ""
            raise ctx.error(
                cpath,
                f"{describe_value(value)} is not allowed for {key!r}{close}; expected {slot.wants}",
            )
        if any(same_choice(value, s) for s in seen):
            raise ctx.error(cpath, f"{describe_value(value)} is listed twice")
        seen.append(value)
    return Distribution("categorical", choices=tuple(choices))
