"""Where a search-space error points (:class:`Ctx`) and the small checks every part of the
parser shares: keys, mappings, whole numbers, booleans, and how values are shown in messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipt_ray.errors import ConfigError, did_you_mean


class Ctx:
    """Where errors point: the file's label and which paths came from overrides."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.overridden: set[str] = set()

    def error(self, path: str, message: str) -> ConfigError:
        where = f"{self.label}: {path}" if path else self.label
        if path in self.overridden:
            where += " (set by an override)"
        return ConfigError(" ".join(f"{where}: {message}".split()))


def join_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {yaml_scalar(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_choice(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def check_keys(ctx: Ctx, path: str, mapping: Mapping[Any, Any], allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if not isinstance(key, str) or key not in allowed:
            where = join_path(path, key)
            raise ctx.error(
                where,
                f"unknown key{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}",
            )


def as_mapping(ctx: Ctx, path: str, value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a mapping of {what}, got {describe_value(value)}")
    return value


def as_int(ctx: Ctx, path: str, value: Any, low: int, high: int | None = None) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ctx.error(path, f"expected a whole number {bound}, got {describe_value(value)}")
    return value


def as_bool(ctx: Ctx, path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, f"expected true or false, got {describe_value(value)}")
    return value
