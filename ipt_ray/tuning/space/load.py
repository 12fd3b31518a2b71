"""Reading a search space: a file or a shipped name (package data), its YAML, and overrides
from the CLI or tests, into a :class:`~ipt_ray.tuning.space.SearchSpace`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ipt_ray.errors import ConfigError, did_you_mean
from ipt_ray.tuning.space.checks import (
    Ctx,
    check_keys,
    describe_value,
)
from ipt_ray.tuning.space.knobs import (
    setting_names,
)
from ipt_ray.tuning.space.params import parse_fixed, parse_params
from ipt_ray.tuning.space.search_space import SearchSpace
from ipt_ray.tuning.space.settings import (
    SEARCH_KEYS,
    SEARCHER_KEYS,
    parse_search,
)

_TOP_KEYS = ("name", "fixed", "search", "params")


def shipped_spaces_dir() -> Path:
    """The folder of the shipped search spaces: the package data ``ipt_ray/tuning/spaces/``.

    Found through :mod:`importlib.resources`, so it is the installed package's folder whether
    ipt-ray was installed from a wheel (site-packages) or in editable mode (the checkout), and
    whatever the current directory. The one place that knows where shipped spaces live.
    """
    folder = resources.files("ipt_ray.tuning").joinpath("spaces")
    if not isinstance(folder, Path):
        # Only an import from a zip archive gets here; pip always installs wheels unpacked.
        raise RuntimeError(f"ipt_ray is not installed as files on disk ({folder})")
    return folder


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A search space file: an existing path, or a shipped space by name (``demo``,
    ``smoke.yaml``) from :func:`shipped_spaces_dir`.

    Raises:
        ConfigError: nothing found; the message lists the shipped spaces.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    text = str(name_or_path)
    if path.is_dir():
        raise ConfigError(f"search space {text!r} is a directory, not a YAML file")
    if "/" not in text and "\\" not in text:
        folder = shipped_spaces_dir()
        for candidate in (text, f"{text}.yaml", f"{text}.yml"):
            if (folder / candidate).is_file():
                return folder / candidate
    shipped = shipped_spaces()
    raise ConfigError(
        f"search space {text!r} not found{did_you_mean(Path(text).stem, shipped)}; give a path "
        f"to a YAML file or one of the shipped spaces: {', '.join(shipped) or '(none)'}"
    )


def shipped_spaces() -> list[str]:
    """Names of the search spaces shipped in :func:`shipped_spaces_dir`, sorted."""
    folder = shipped_spaces_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_space(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """Read and validate a search space file (a path or a shipped name, see
    :func:`resolve_space_path`).

    ``overrides`` replace values of the file, e.g. ``{"num_samples": 4, "max_concurrent": 2,
    "fixed.model": "/tmp/tiny"}``: plain keys are ``name`` and the ``search`` settings
    (``n_startup_trials``/``constant_liar``/... of ``searcher`` included); dotted keys give a
    full path under ``fixed`` or ``search`` (``search.scheduler.grace_period``). Overridden
    values are validated like the file's, and errors about them say so.

    Raises:
        ConfigError: the file is missing or not UTF-8, or anything :func:`parse_space` raises.
    """
    resolved = resolve_space_path(path)
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{resolved}: cannot read the search space ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{resolved}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    return parse_space(text, path=resolved, overrides=overrides)


def parse_space(
    text: str, *, path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> SearchSpace:
    """Parse and validate a search space from YAML text (see the module docstring).

    Raises:
        ConfigError: malformed YAML (with line and column), a wrong structure, an unknown key
            (with a suggestion), a wrong type, an impossible range, a value that the setting
            or knob does not allow, a key both fixed and searched, an implausible metric, or a
            bad scheduler or searcher setting. The message names the file and the key path.
    """
    ctx = Ctx(str(path) if path is not None else "<search space>")
    raw = _load_yaml(text, ctx)
    applied = _apply_overrides(raw, overrides or {}, ctx)
    check_keys(ctx, "", raw, _TOP_KEYS)
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ctx.error("name", f"expected a non-empty text, got {name!r}")
    fixed = parse_fixed(ctx, raw.get("fixed"))
    if "params" not in raw:
        raise ctx.error("params", "missing; a search space needs at least params.generator")
    params, generators = parse_params(ctx, raw["params"], fixed)
    settings = parse_search(ctx, raw.get("search"), fixed, params, generators)
    return SearchSpace(
        name=name.strip() if isinstance(name, str) else None,
        source=text,
        path=path,
        fixed=fixed,
        settings=settings,
        params=params,
        generators=generators,
        overrides=applied,
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats (``1e-4``) and refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str, ctx: Ctx) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        raise ctx.error("", f"malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ctx.error("", f"malformed YAML: {exc}") from None
    if raw is None:
        raise ctx.error("", "the file is empty; expected a mapping with params (and fixed, search)")
    if not isinstance(raw, dict):
        raise ctx.error(
            "",
            "the top level must be a mapping with params (and fixed, search), got "
            + describe_value(raw),
        )
    return raw


def _override_paths() -> dict[str, tuple[str, ...]]:
    """Plain override keys and the path each one sets."""
    out: dict[str, tuple[str, ...]] = {"name": ("name",)}
    out.update({k: ("search", k) for k in SEARCH_KEYS if k != "searcher"})
    out.update({k: ("search", "searcher", k) for k in SEARCHER_KEYS})
    return out


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    plain = _override_paths()
    for key, value in overrides.items():
        if key in plain:
            parts = plain[key]
        elif isinstance(key, str) and key.split(".")[0] in ("fixed", "search") and "." in key:
            parts = tuple(key.split("."))
        else:
            hint = (
                f" (settings are overridden as 'fixed.{key}')"
                if key in setting_names()
                else did_you_mean(str(key), plain)
            )
            raise ConfigError(
                f"{ctx.label}: unknown override {key!r}{hint}; allowed: {', '.join(plain)}, "
                "fixed.<setting>, search.<key>"
            )
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{ctx.label}: override {key!r}: "
                    f"{'.'.join(parts[: depth + 1])} is not a mapping"
                )
            node = child
        node[parts[-1]] = value
        ctx.overridden.add(".".join(parts))
    return dict(overrides)
