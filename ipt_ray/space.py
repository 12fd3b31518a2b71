"""Search spaces: a YAML file compiled into an Optuna define-by-run function.

A search space says which :class:`~ipt_ray.core.config.TrainConfig` settings stay fixed, which are
searched and how, and how the search runs. Everything is validated by :func:`parse_space`
before any Ray or MLflow work starts; every mistake raises :class:`~ipt_ray.errors.ConfigError`
with one line naming the file, the key path, the bad value and what is allowed.

The format::

    # demo.yaml: needs ... / searches ...     (shipped spaces open with such a comment block)
    name: demo                  # optional: default search name (MLflow experiment)
    fixed:                      # TrainConfig settings held constant in every trial
      task: mr
      model: minilm
      epochs: 2
    search:                     # optional; defaults shown
      metric: val_accuracy      # val_<m>, test_<m> (needs eval_test_every_epoch), train_loss ...
      mode: max                 # max | min; may be left out for known metrics
      num_samples: 10           # trials
      seed: 0                   # seed of the sampler (fixed.seed is the training seed)
      max_concurrent: null      # null: as many trials as the cluster's resources allow
      scheduler:                # `scheduler: none` (or null) runs every trial to the end
        type: asha              # asha | none
        grace_period: 1         # epochs before ASHA may stop a trial
        reduction_factor: 2
        max_t: null             # null: the most epochs a trial can run
      searcher:                 # Optuna's TPE
        n_startup_trials: null  # random trials first; null: min(10, max(1, num_samples // 3))
        constant_liar: true     # suits parallel trials
        multivariate: true
        group: true             # models each generator's knobs as their own group
      objectives: null          # or [{metric: val_accuracy, mode: max},
                                #      {metric: trainable_params, mode: min}]
    params:                     # searched
      lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
      prompt_length: {type: int, low: 4, high: 32, step: 4}
      batch_size: [16, 32]      # a list is short for {type: categorical, choices: [...]}
      generator:                # required; `type: categorical` may be written or left out
        choices:                # generator name -> its sub-space (a list of names: no knobs)
          task: {}
          prefix:
            reparam: [false, true]
          idpg:
            bottleneck: {type: int, low: 16, high: 128, log: true}
            weights: dnn        # a plain value in a sub-space is fixed for that generator
            lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}   # per-generator setting

Rules:

* A parameter is ``{type: float|int, low, high, log?, step?}``, ``{type: categorical,
  choices: [...]}`` or a list of choices. ``low < high``; ``log`` needs ``low > 0`` and no
  ``step``; ``high - low`` must be a multiple of ``step``; bounds of ``type: int`` are whole
  numbers. Values are checked against the setting (``TrainConfig.validate``) or the knob
  (:func:`~ipt_ray.generators.make_config`) at both ends of a range, at every value of a small
  integer range, and at every choice.
* The generator and its knobs live only in ``params.generator.choices``: ``fixed`` holds no
  ``generator`` or ``generator_options``. One choice fixes the generator. A sub-space holds the
  generator's knobs and, optionally, TrainConfig settings (such as ``lr`` or
  ``prompt_length``) that apply only when that generator is chosen. A key is either fixed, or
  searched at the top level, or set per generator: never two of these.
* In a trial's flat config (what Optuna samples and Tune passes to the trainable) a knob or
  per-generator setting is named ``<generator>.<key>`` (``idpg.bottleneck``), so that each
  generator's parameters have their own name and TPE never sees one name with two
  distributions. Fixed settings come back from :meth:`SearchSpace.define_by_run` as constants.
* ASHA counts time in the epochs that trials report (``epoch``), not in Tune iterations.
* ``objectives`` lists metrics to optimise together; the first is the primary one (``metric``
  and ``mode``). With two or more the scheduler must be ``none``: ASHA would stop trials on one
  metric alone.
* ``search.metric`` must be a metric the trials report: ``val_<m>`` or ``test_<m>`` (``m`` one
  of accuracy, f1_macro, f1, mcc, or a task's own metric), ``train_loss``, ``epoch_seconds``,
  ``samples_per_second``, ``trainable_params``... ``test_`` metrics need
  ``fixed.eval_test_every_epoch: true``. ``mode`` may be left out for known metrics and must
  match their direction.
* :func:`load_space` takes overrides (from the CLI or tests) such as ``{"num_samples": 4,
  "fixed.model": "path/to/tiny"}``.
* YAML 1.2 numbers are read as numbers: ``1e-4`` is a float (PyYAML alone reads it as text).
  A duplicated key is an error rather than silently overwriting the first.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import itertools
import math
import re
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from ipt_ray import constants
from ipt_ray.core.config import SELECTABLE_METRICS, TrainConfig
from ipt_ray.errors import ConfigError, did_you_mean
from ipt_ray.generators import generator_names, get_config_class, make_config

if TYPE_CHECKING:
    import optuna

GENERATOR = "generator"
KNOB_SEPARATOR = "."  # not "/": Ray's OptunaSearch unflattens keys on "/"

_TOP_KEYS = ("name", "fixed", "search", "params")
_SEARCH_KEYS = (
    "metric",
    "mode",
    "num_samples",
    "seed",
    "max_concurrent",
    "scheduler",
    "searcher",
    "objectives",
)
_SCHEDULER_KEYS = ("type", "grace_period", "reduction_factor", "max_t")
_SCHEDULER_TYPES = ("asha", "none")
_SEARCHER_KEYS = ("n_startup_trials", "constant_liar", "multivariate", "group")
_DIST_TYPES = ("float", "int", "categorical")
_DIST_KEYS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
_OBJECTIVE_KEYS = ("metric", "mode")
_MODES = ("max", "min")
_PROBE_ALL_INTS = 256  # integer ranges with at most this many values are checked value by value

# Settings a space cannot fix or search directly (the generator is params.generator).
_NOT_SETTINGS = (GENERATOR, "generator_options")
# Metrics the trials report, with the direction that makes them better.
_SPLIT_METRICS = {
    constants.ACCURACY: "max",
    constants.F1_MACRO: "max",
    constants.F1: "max",
    constants.MCC: "max",
}
_OTHER_METRICS = {
    constants.TRAIN_LOSS: "min",
    constants.EPOCH_SECONDS: "min",
    constants.SECONDS_PER_EPOCH: "min",
    constants.SAMPLES_PER_SECOND: "max",
    constants.TRAINABLE_PARAMS: "min",
    constants.TRAINABLE_SHARE: "min",
}
_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# --------------------------------------------------------------------------------------------
# Public data classes


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
            return any(_same_choice(value, c) for c in self.choices)
        assert self.low is not None and self.high is not None
        if not _is_number(value):
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
        numbers = [c for c in self.choices if _is_number(c)]
        return max(numbers) if numbers else None

    def describe(self) -> str:
        """A short human-readable form, e.g. ``float [0.0001, 0.03] log``."""
        if self.type == "categorical":
            return " | ".join(_yaml_scalar(c) for c in self.choices)
        text = f"{self.type} [{self.low:g}, {self.high:g}]"
        if self.log:
            text += " log"
        if self.step is not None:
            text += f" step {self.step:g}"
        return text

    def _probes(self) -> list[tuple[str, Any]]:
        """(label, value) pairs checked at parse time: ends, small int ranges, all choices."""
        if self.type == "categorical":
            return [(f"choice {_yaml_scalar(c)}", c) for c in self.choices]
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            low, high = int(self.low), int(self.high)
            if (high - low) // step + 1 <= _PROBE_ALL_INTS:
                return [(f"value {v}", v) for v in range(low, high + 1, step)]
            return [(f"low {low}", low), (f"high {high}", high)]
        return [(f"low {self.low:g}", self.low), (f"high {self.high:g}", self.high)]


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


@dataclass(frozen=True)
class SchedulerSpec:
    """Trial scheduler: ``asha`` (asynchronous successive halving) or ``none`` (FIFO).

    ``grace_period`` and ``max_t`` are in epochs (the ``epoch`` the trials report);
    ``max_t`` defaults to the most epochs a trial of the space can run.
    """

    type: Literal["asha", "none"]
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int = 1


@dataclass(frozen=True)
class SearchSettings:
    """How the search runs (the ``search:`` section, after overrides).

    ``metric``/``mode`` are the primary objective (the first of ``objectives`` when those are
    given); ``seed`` seeds the sampler, not training.
    """

    metric: str
    mode: Literal["max", "min"]
    num_samples: int
    seed: int
    max_concurrent: int | None
    scheduler: SchedulerSpec
    n_startup_trials: int
    constant_liar: bool
    objectives: tuple[tuple[str, str], ...] | None = None
    multivariate: bool = True
    group: bool = True

    @property
    def metrics(self) -> list[str]:
        """Every objective's metric (one for single-objective searches)."""
        return [m for m, _ in self.objectives] if self.objectives else [self.metric]

    @property
    def modes(self) -> list[str]:
        """Every objective's mode, aligned with :attr:`metrics`."""
        return [m for _, m in self.objectives] if self.objectives else [self.mode]

    def tpe_sampler(self) -> optuna.samplers.TPESampler:
        """Optuna's TPE sampler with these settings (seeded, constant liar, grouped)."""
        import optuna

        with warnings.catch_warnings():
            # `group` is marked experimental; we chose it knowingly for conditional spaces.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=self.seed,
                n_startup_trials=self.n_startup_trials,
                constant_liar=self.constant_liar,
                multivariate=self.multivariate,
                group=self.group,
            )


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; build it with :func:`load_space` or :func:`parse_space`.

    Attributes:
        name: default search name (MLflow experiment), or None.
        source: the YAML text as written (before overrides), to log as an artifact.
        path: the file it came from, or None.
        fixed: TrainConfig settings held constant in every trial (overrides applied).
        settings: how the search runs.
        params: top-level searched settings by TrainConfig field name.
        generators: each generator choice's sub-space, in file order.
        overrides: the overrides applied on top of ``source``.
    """

    name: str | None
    source: str
    path: Path | None
    fixed: dict[str, Any]
    settings: SearchSettings
    params: dict[str, Distribution] = field(default_factory=dict)
    generators: dict[str, GeneratorSpace] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any] | None:
        """Optuna define-by-run function, for ``OptunaSearch(space=space.define_by_run)``.

        Suggests the top-level params, then ``generator``, then only the chosen generator's
        searched keys (as ``<generator>.<key>``). Returns the constants of the trial: the
        fixed settings and the chosen generator's fixed keys (OptunaSearch merges them into
        the trial config).
        """
        for key, dist in self.params.items():
            dist.suggest(trial, key)
        name = trial.suggest_categorical(GENERATOR, list(self.generators))
        sub = self.generators[str(name)]
        for key, dist in sub.searched.items():
            dist.suggest(trial, sub.param_name(key))
        out = dict(self.fixed)
        out.update({sub.param_name(k): v for k, v in sub.constants.items()})
        return out

    def to_train_config(self, trial_config: Mapping[str, Any]) -> TrainConfig:
        """Turn a flat trial config into a validated :class:`TrainConfig`.

        ``trial_config`` maps TrainConfig fields, ``generator`` and ``<generator>.<key>`` to
        values; fixed settings and the chosen generator's fixed keys missing from it are taken
        from the space.

        Raises:
            ConfigError: no or an unknown generator, a key of another generator than the
                chosen one, an unknown key, or an invalid value.
        """
        name = trial_config.get(GENERATOR)
        if name is None:
            raise ConfigError("trial config has no 'generator'")
        if name not in self.generators:
            raise ConfigError(
                f"trial config: generator {name!r} is not a choice of this search space"
                f"{did_you_mean(str(name), self.generators)}; allowed: {', '.join(self.generators)}"
            )
        sub = self.generators[name]
        values = {
            **self.fixed,
            **{sub.param_name(k): v for k, v in sub.constants.items()},
            **trial_config,
        }
        del values[GENERATOR]
        knob_names = _knob_names(name)
        settings = {k: v for k, v in values.items() if KNOB_SEPARATOR not in k}
        knobs: dict[str, Any] = {}
        for key, value in values.items():
            owner, sep, rest = key.partition(KNOB_SEPARATOR)
            if not sep:
                continue
            if owner != name:
                if owner in generator_names():
                    raise ConfigError(
                        f"trial config: {key!r} belongs to generator {owner!r}, but this "
                        f"trial's generator is {name!r}"
                    )
                raise ConfigError(f"trial config: unknown key {key!r}")
            if rest in knob_names:
                knobs[rest] = value
            elif rest in _setting_names():
                if rest in settings:
                    raise ConfigError(f"trial config sets both {rest!r} and {key!r}")
                settings[rest] = value
            else:
                raise ConfigError(
                    f"trial config: unknown knob {key!r}{did_you_mean(rest, knob_names)}"
                )
        if self.settings.metric in SELECTABLE_METRICS and "select_metric" not in settings:
            # The trial's best epoch (its checkpoint and test_* numbers) is the best by the
            # metric the search ranks trials on.
            settings["select_metric"] = self.settings.metric
        config = TrainConfig.from_dict({**settings, GENERATOR: name, "generator_options": knobs})
        return config.validate()

    def fixed_backbone(self) -> tuple[str, str | None, bool] | None:
        """``(model, revision, trust_remote_code)`` when every trial uses the same backbone
        (none of the three is searched or set per generator), else None."""
        keys = ("model", "revision", "trust_remote_code")
        varied = set(self.params)
        for sub in self.generators.values():
            varied |= set(sub.searched) | set(sub.constants)
        if varied & set(keys):
            return None
        defaults = TrainConfig()
        model, revision, trust = (self.fixed.get(k, getattr(defaults, k)) for k in keys)
        return str(model), None if revision is None else str(revision), bool(trust)

    def sample_configs(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """``n`` flat trial configs drawn at random with :meth:`define_by_run` (dry runs, tests)."""
        import optuna

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
            out = []
            for _ in range(n):
                trial = study.ask()
                constants_ = self.define_by_run(trial) or {}
                out.append({**trial.params, **constants_})
                study.tell(trial, 0.0)
            return out
        finally:
            optuna.logging.set_verbosity(verbosity)

    def grid(self) -> list[dict[str, Any]] | None:
        """Every flat trial config when all searched values are categorical, else None."""
        dists = [*self.params.values()]
        for sub in self.generators.values():
            dists.extend(sub.searched.values())
        if any(d.type != "categorical" for d in dists):
            return None
        out = []
        for top in itertools.product(*(d.choices for d in self.params.values())):
            for name, sub in self.generators.items():
                for knobs in itertools.product(*(d.choices for d in sub.searched.values())):
                    config = dict(zip(self.params, top, strict=True))
                    config[GENERATOR] = name
                    chosen = zip(sub.searched, knobs, strict=True)
                    config.update({sub.param_name(k): v for k, v in chosen})
                    config.update({sub.param_name(k): v for k, v in sub.constants.items()})
                    config.update(self.fixed)
                    out.append(config)
        return out

    def summary(self) -> str:
        """A few lines describing the space (for ``--dry-run`` output and logs)."""
        s = self.settings
        sched = (
            f"ASHA (grace {s.scheduler.grace_period}, factor {s.scheduler.reduction_factor:g}, "
            f"max_t {s.scheduler.max_t})"
            if s.scheduler.type == "asha"
            else "no early stopping"
        )
        goal = ", ".join(f"{m} ({mode})" for m, mode in zip(s.metrics, s.modes, strict=True))
        lines = [
            f"{self.name or '(unnamed)'}: {s.num_samples} trials, {goal}, {sched}, "
            f"TPE after {s.n_startup_trials} random trials",
            "fixed: " + (", ".join(f"{k}={v}" for k, v in self.fixed.items()) or "-"),
        ]
        lines += [f"{k}: {d.describe()}" for k, d in self.params.items()]
        lines.append(f"{GENERATOR}: {' | '.join(self.generators)}")
        for sub in self.generators.values():
            lines += [f"  {sub.param_name(k)}: {d.describe()}" for k, d in sub.searched.items()]
            lines += [f"  {sub.param_name(k)} = {v}" for k, v in sub.constants.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry points


def shipped_spaces_dir() -> Path:
    """The folder of the shipped search spaces: the package data ``ipt_ray/search/spaces/``.

    Found through :mod:`importlib.resources`, so it is the installed package's folder whether
    ipt-ray was installed from a wheel (site-packages) or in editable mode (the checkout), and
    whatever the current directory. The one place that knows where shipped spaces live.
    """
    folder = resources.files("ipt_ray.search").joinpath("spaces")
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
    ctx = _Ctx(str(path) if path is not None else "<search space>")
    raw = _load_yaml(text, ctx)
    applied = _apply_overrides(raw, overrides or {}, ctx)
    _check_keys(ctx, "", raw, _TOP_KEYS)
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ctx.error("name", f"expected a non-empty text, got {name!r}")
    fixed = _parse_fixed(ctx, raw.get("fixed"))
    if "params" not in raw:
        raise ctx.error("params", "missing; a search space needs at least params.generator")
    params, generators = _parse_params(ctx, raw["params"], fixed)
    settings = _parse_search(ctx, raw.get("search"), fixed, params, generators)
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


# --------------------------------------------------------------------------------------------
# YAML


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


def _load_yaml(text: str, ctx: _Ctx) -> dict[str, Any]:
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
            "", f"the top level must be a mapping with params (and fixed, search), got {_kind(raw)}"
        )
    return raw


# --------------------------------------------------------------------------------------------
# Errors and small checks


class _Ctx:
    """Where errors point: the file's label and which paths came from overrides."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.overridden: set[str] = set()

    def error(self, path: str, message: str) -> ConfigError:
        where = f"{self.label}: {path}" if path else self.label
        if path in self.overridden:
            where += " (set by an override)"
        return ConfigError(" ".join(f"{where}: {message}".split()))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {_yaml_scalar(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_choice(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _check_keys(ctx: _Ctx, path: str, mapping: Mapping[Any, Any], allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if not isinstance(key, str) or key not in allowed:
            where = _join(path, key)
            raise ctx.error(
                where,
                f"unknown key{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}",
            )


def _mapping(ctx: _Ctx, path: str, value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a mapping of {what}, got {_kind(value)}")
    return value


def _int(ctx: _Ctx, path: str, value: Any, low: int, high: int | None = None) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ctx.error(path, f"expected a whole number {bound}, got {_kind(value)}")
    return value


def _bool(ctx: _Ctx, path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(path, f"expected true or false, got {_kind(value)}")
    return value


# --------------------------------------------------------------------------------------------
# Settings and knobs: what a key accepts


@dataclass(frozen=True)
class _Slot:
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
            return _is_number(value)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "enum":
            return value in self.values
        return True


def _slot_of(hint: Any) -> _Slot:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        hint = rest[0] if len(rest) == 1 else Any
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _Slot("enum", optional, tuple(str(m.value) for m in hint))
    for kind, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if hint is typ:
            return _Slot(kind, optional)  # type: ignore[arg-type]
    return _Slot("any", optional)


@functools.cache
def _setting_slots() -> dict[str, _Slot]:
    hints = typing.get_type_hints(TrainConfig)
    return {
        f.name: _slot_of(hints[f.name])
        for f in dataclasses.fields(TrainConfig)
        if f.name not in _NOT_SETTINGS
    }


def _setting_names() -> list[str]:
    return list(_setting_slots())


@functools.cache
def _knob_slots(generator: str) -> dict[str, _Slot]:
    """A generator's knobs; prompt_length is a setting, not a knob, in search spaces."""
    cls = get_config_class(generator)
    hints = typing.get_type_hints(cls)
    return {name: _slot_of(hints[name]) for name in cls.knobs() if name != "prompt_length"}


def _knob_names(generator: str) -> list[str]:
    return list(_knob_slots(generator))


def _knob_owners(key: str) -> list[str]:
    return [g for g in generator_names() if key in _knob_slots(g)]


def _misplaced_knob(ctx: _Ctx, path: str, key: str, hint: str) -> ConfigError:
    owners = _knob_owners(key)
    where = owners[0] if len(owners) == 1 else "<generator>"
    what = "every generator" if len(owners) == len(generator_names()) else ", ".join(owners)
    return ctx.error(
        path, f"{key!r} is a knob of {what}; {hint} under params.generator.choices.{where}"
    )


def _unknown_setting(ctx: _Ctx, path: str, key: str) -> ConfigError:
    settings = _setting_names()
    knobs = sorted({k for g in generator_names() for k in _knob_slots(g)})
    close = did_you_mean(key, [*settings, GENERATOR, *knobs])
    return ctx.error(
        path,
        f"unknown setting{close}; settings: {', '.join(settings)}; generator knobs go "
        "under params.generator.choices.<generator>",
    )


# --------------------------------------------------------------------------------------------
# fixed


def _parse_fixed(ctx: _Ctx, raw: Any) -> dict[str, Any]:
    fixed = dict(_mapping(ctx, "fixed", raw, "settings to values"))
    slots = _setting_slots()
    for key, value in fixed.items():
        path = _join("fixed", key)
        if key in _NOT_SETTINGS:
            raise ctx.error(
                path,
                "the generator and its knobs are set in params.generator.choices "
                "(one choice fixes the generator), e.g. params: {generator: {choices: "
                "{idpg: {bottleneck: 32}}}}",
            )
        if key not in slots:
            if isinstance(key, str) and _knob_owners(key):
                raise _misplaced_knob(ctx, path, key, "fix it")
            raise _unknown_setting(ctx, path, str(key))
        slot = slots[key]
        if not slot.accepts(value):
            raise ctx.error(path, f"expected {slot.wants}, got {_kind(value)}")
        _check_setting(ctx, path, {}, key, value, "")
    try:
        TrainConfig(**fixed).validate()
    except ConfigError as exc:
        raise ctx.error("fixed", str(exc)) from None
    return fixed


def _check_setting(
    ctx: _Ctx, path: str, base: Mapping[str, Any], key: str, value: Any, label: str
) -> None:
    """Raise unless TrainConfig accepts ``value`` for ``key`` on top of ``base``."""
    try:
        TrainConfig(**{**base, key: value}).validate()
    except ConfigError as exc:
        lead = f"{label} is not allowed: " if label else ""
        raise ctx.error(path, f"{lead}{exc}") from None


def _check_knobs(
    ctx: _Ctx, path: str, generator: str, knobs: Mapping[str, Any], label: str
) -> None:
    try:
        make_config(generator, knobs)
    except ConfigError as exc:
        lead = f"{label} is not allowed: " if label else ""
        raise ctx.error(path, f"{lead}{exc}") from None


# --------------------------------------------------------------------------------------------
# params


def _parse_params(
    ctx: _Ctx, raw: Any, fixed: Mapping[str, Any]
) -> tuple[dict[str, Distribution], dict[str, GeneratorSpace]]:
    if raw is None or raw == {}:
        raise ctx.error("params", "empty; a search space needs at least params.generator")
    raw = _mapping(ctx, "params", raw, "settings to distributions")
    slots = _setting_slots()
    params: dict[str, Distribution] = {}
    for key, spec in raw.items():
        path = _join("params", key)
        if key == GENERATOR:
            continue
        if key == "generator_options":
            raise ctx.error(path, "knobs go under params.generator.choices.<generator>")
        if key not in slots:
            if isinstance(key, str) and _knob_owners(key):
                raise _misplaced_knob(ctx, path, key, "put it")
            raise _unknown_setting(ctx, path, str(key))
        if key in fixed:
            raise ctx.error(
                path, f"{key!r} is also fixed (fixed.{key}); a setting is either fixed or searched"
            )
        if not isinstance(spec, (dict, list)):
            raise ctx.error(
                path,
                f"a plain value ({_kind(spec)}) is not searched; put it under fixed, or "
                "give {type: float|int|categorical, ...} or a list of choices",
            )
        dist = _parse_distribution(ctx, path, spec, slots[key], key)
        for label, value in dist._probes():
            _check_setting(ctx, path, fixed, key, value, label)
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
    ctx: _Ctx, spec: Any, fixed: Mapping[str, Any], params: Mapping[str, Distribution]
) -> dict[str, GeneratorSpace]:
    path = "params.generator"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ctx.error(
            path,
            f"expected {{choices: {{<generator>: <knobs>, ...}}}} or a list of generator "
            f"names, got {_kind(spec)}; one choice fixes the generator",
        )
    _check_keys(ctx, path, spec, ("type", "choices"))
    if spec.get("type", "categorical") != "categorical":
        raise ctx.error(_join(path, "type"), f"must be categorical, got {_kind(spec['type'])}")
    choices = spec.get("choices")
    cpath = _join(path, "choices")
    if isinstance(choices, list):
        for item in choices:
            if not isinstance(item, str):
                raise ctx.error(cpath, f"expected generator names, got {_kind(item)}")
        if len(set(choices)) != len(choices):
            raise ctx.error(cpath, "a generator is listed twice")
        choices = {item: {} for item in choices}
    if choices is None or choices == {}:
        raise ctx.error(cpath, f"no generators given; allowed: {', '.join(generator_names())}")
    if not isinstance(choices, dict):
        raise ctx.error(
            cpath, f"expected a mapping of generator names to knobs, got {_kind(choices)}"
        )
    return {
        str(name): _parse_generator(ctx, _join(cpath, name), name, sub, fixed, params)
        for name, sub in choices.items()
    }


def _parse_generator(
    ctx: _Ctx,
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
    raw = _mapping(ctx, path, raw, "knobs to values or distributions")
    knob_slots = _knob_slots(name)
    setting_slots = _setting_slots()
    searched: dict[str, Distribution] = {}
    consts: dict[str, Any] = {}
    for key, spec in raw.items():
        kpath = _join(path, key)
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
            searched[key] = _parse_distribution(ctx, kpath, spec, slot, key)
        else:
            if not slot.accepts(spec):
                raise ctx.error(kpath, f"expected {slot.wants}, got {_kind(spec)}")
            consts[key] = spec
    knob_consts = {k: v for k, v in consts.items() if k in knob_slots}
    setting_consts = {k: v for k, v in consts.items() if k not in knob_slots}
    for key, value in knob_consts.items():
        _check_knobs(ctx, _join(path, key), name, {key: value}, "")
    _check_knobs(ctx, path, name, knob_consts, "")
    base = {**fixed, **setting_consts, GENERATOR: name, "generator_options": knob_consts}
    for key, value in setting_consts.items():
        _check_setting(ctx, _join(path, key), {**fixed, GENERATOR: name}, key, value, "")
    for key, dist in searched.items():
        kpath = _join(path, key)
        for label, value in dist._probes():
            if key in knob_slots:
                _check_knobs(ctx, kpath, name, {**knob_consts, key: value}, label)
            else:
                _check_setting(ctx, kpath, base, key, value, label)
    return GeneratorSpace(str(name), searched, consts)


def _parse_distribution(
    ctx: _Ctx, path: str, spec: dict[str, Any] | list[Any], slot: _Slot, key: str
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
            _join(path, "type"),
            f"unknown type {_kind(typ)}{did_you_mean(str(typ), _DIST_TYPES)}"
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
            raise ctx.error(_join(path, k), f"{hint}; type {typ} takes: {', '.join(allowed)}")
    if typ == "categorical":
        cpath = path if shorthand else _join(path, "choices")
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


def _parse_range(ctx: _Ctx, path: str, spec: Mapping[str, Any], typ: str) -> Distribution:
    bounds: dict[str, float] = {}
    for end in ("low", "high"):
        if end not in spec:
            raise ctx.error(path, f"missing '{end}' (type {typ} needs low and high)")
        value = spec[end]
        if typ == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ctx.error(
                _join(path, end), f"bounds of type: int must be whole numbers, got {_kind(value)}"
            )
        if not _is_number(value) or not math.isfinite(value):
            raise ctx.error(_join(path, end), f"expected a finite number, got {_kind(value)}")
        bounds[end] = value
    low, high = bounds["low"], bounds["high"]
    if low >= high:
        raise ctx.error(
            path,
            f"low {_yaml_scalar(low)} must be below high {_yaml_scalar(high)} (to hold a "
            "value constant, put it under fixed)",
        )
    log = _bool(ctx, _join(path, "log"), spec.get("log", False))
    step = spec.get("step")
    if log and typ == "int" and low < 1:
        raise ctx.error(path, f"log: true needs low of at least 1 for type int, got {low}")
    if log and low <= 0:
        raise ctx.error(path, f"log: true needs low > 0, got {_yaml_scalar(low)}")
    if step is not None:
        spath = _join(path, "step")
        if log:
            raise ctx.error(spath, "step cannot be combined with log: true")
        if typ == "int":
            step = _int(ctx, spath, step, 1)
        elif not _is_number(step) or not math.isfinite(step) or step <= 0:
            raise ctx.error(spath, f"expected a positive number, got {_kind(step)}")
        if step > high - low:
            raise ctx.error(
                spath,
                f"step {_yaml_scalar(step)} is larger than the range "
                f"{_yaml_scalar(low)}..{_yaml_scalar(high)}",
            )
        units = (high - low) / step
        if abs(units - round(units)) > 1e-9 * max(1.0, units):
            raise ctx.error(
                spath,
                f"high - low ({_yaml_scalar(high - low)}) must be a multiple of step "
                f"{_yaml_scalar(step)}",
            )
    kind: Literal["int", "float"] = "int" if typ == "int" else "float"
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Distribution(kind, low=low, high=high, log=log, step=step)


def _parse_categorical(ctx: _Ctx, cpath: str, choices: Any, slot: _Slot, key: str) -> Distribution:
    if not isinstance(choices, list):
        raise ctx.error(cpath, f"expected a list of values, got {_kind(choices)}")
    if not choices:
        raise ctx.error(cpath, "empty; give at least one value")
    seen: list[Any] = []
    for value in choices:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ctx.error(cpath, f"choices must be plain values, got {_kind(value)}")
        if not slot.accepts(value):
            close = did_you_mean(str(value), slot.values) if slot.kind == "enum" else ""
            raise ctx.error(
                cpath, f"{_kind(value)} is not allowed for {key!r}{close}; expected {slot.wants}"
            )
        if any(_same_choice(value, s) for s in seen):
            raise ctx.error(cpath, f"{_kind(value)} is listed twice")
        seen.append(value)
    return Distribution("categorical", choices=tuple(choices))


# --------------------------------------------------------------------------------------------
# search


def _max_epochs(
    fixed: Mapping[str, Any],
    params: Mapping[str, Distribution],
    generators: Mapping[str, GeneratorSpace],
) -> int:
    """The most epochs any trial of the space runs."""
    if "epochs" in fixed:
        return int(fixed["epochs"])
    if "epochs" in params:
        return int(params["epochs"].maximum)
    default = TrainConfig().epochs
    most = 0
    for sub in generators.values():
        if "epochs" in sub.searched:
            most = max(most, int(sub.searched["epochs"].maximum))
        else:
            most = max(most, int(sub.constants.get("epochs", default)))
    return most or default


def _parse_search(
    ctx: _Ctx,
    raw: Any,
    fixed: Mapping[str, Any],
    params: Mapping[str, Distribution],
    generators: Mapping[str, GeneratorSpace],
) -> SearchSettings:
    raw = _mapping(ctx, "search", raw, "search settings")
    _check_keys(ctx, "search", raw, _SEARCH_KEYS)
    test_ok = fixed.get("eval_test_every_epoch", False) is True
    objectives = _parse_objectives(ctx, raw.get("objectives"), test_ok)
    if objectives is not None:
        metric, mode = objectives[0]
        for key, value in (("metric", metric), ("mode", mode)):
            if key in raw and raw[key] != value:
                raise ctx.error(
                    _join("search", key),
                    f"{raw[key]!r} differs from the first objective's "
                    f"{value!r}; with objectives, leave out metric and mode",
                )
    else:
        metric = _check_metric(ctx, "search.metric", raw.get("metric", "val_accuracy"), test_ok)
        mode = _check_mode(ctx, "search.mode", metric, raw.get("mode"))
    num_samples = _int(ctx, "search.num_samples", raw.get("num_samples", 10), 1)
    seed = _int(ctx, "search.seed", raw.get("seed", 0), 0, 2**32 - 1)
    max_concurrent = raw.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = _int(ctx, "search.max_concurrent", max_concurrent, 1)
    scheduler = _parse_scheduler(
        ctx, raw.get("scheduler", {"type": "asha"}), _max_epochs(fixed, params, generators)
    )
    if objectives is not None and len(objectives) > 1 and scheduler.type != "none":
        raise ctx.error(
            "search.scheduler",
            "ASHA stops trials on one metric alone; with several objectives use scheduler: none",
        )
    searcher = _mapping(ctx, "search.searcher", raw.get("searcher"), "TPE settings")
    _check_keys(ctx, "search.searcher", searcher, _SEARCHER_KEYS)
    startup = searcher.get("n_startup_trials")
    if startup is None:
        startup = min(10, max(1, num_samples // 3))
    startup = _int(ctx, "search.searcher.n_startup_trials", startup, 0)
    liar = _bool(ctx, "search.searcher.constant_liar", searcher.get("constant_liar", True))
    multivariate = _bool(ctx, "search.searcher.multivariate", searcher.get("multivariate", True))
    group = _bool(ctx, "search.searcher.group", searcher.get("group", multivariate))
    if group and not multivariate:
        raise ctx.error("search.searcher.group", "group: true needs multivariate: true")
    return SearchSettings(
        metric=metric,
        mode=mode,  # type: ignore[arg-type]
        num_samples=num_samples,
        seed=seed,
        max_concurrent=max_concurrent,
        scheduler=scheduler,
        n_startup_trials=startup,
        constant_liar=liar,
        objectives=objectives,
        multivariate=multivariate,
        group=group,
    )


def _known_metrics() -> dict[str, str]:
    out = dict(_OTHER_METRICS)
    for prefix in (constants.VAL_PREFIX, constants.TEST_PREFIX):
        out.update({prefix + m: mode for m, mode in _SPLIT_METRICS.items()})
    return out


def _check_metric(ctx: _Ctx, path: str, metric: Any, test_ok: bool) -> str:
    known = _known_metrics()
    if not isinstance(metric, str) or not _METRIC_NAME.match(metric):
        raise ctx.error(path, f"expected a metric name such as val_accuracy, got {_kind(metric)}")
    if metric not in known:
        prefix = next(
            (p for p in (constants.VAL_PREFIX, constants.TEST_PREFIX) if metric.startswith(p)), None
        )
        if prefix is None:
            if constants.VAL_PREFIX + metric in known:
                raise ctx.error(
                    path,
                    f"{metric!r} is not reported as such (did you mean "
                    f"'{constants.VAL_PREFIX}{metric}'?); validation metrics carry the prefix "
                    f"{constants.VAL_PREFIX}",
                )
            raise ctx.error(
                path,
                f"{metric!r} is not a metric the trials report{did_you_mean(metric, known)}"
                "; use val_<metric>, test_<metric> or one of: " + ", ".join(sorted(_OTHER_METRICS)),
            )
        # Unknown split metrics may come from a task; refuse only near-misses of known ones.
        close = [m for m in known if m.startswith(prefix)]
        near = difflib.get_close_matches(metric, close, n=1, cutoff=0.8)
        if near:
            raise ctx.error(
                path, f"{metric!r} is not a metric the trials report (did you mean {near[0]!r}?)"
            )
    if metric.startswith(constants.TEST_PREFIX) and not test_ok:
        raise ctx.error(
            path,
            f"{metric!r} is reported only with fixed.eval_test_every_epoch: true (and "
            f"choosing trials on the test split leaks it; prefer {constants.VAL_PREFIX}"
            f"{metric[len(constants.TEST_PREFIX) :]})",
        )
    return metric


def _check_mode(ctx: _Ctx, path: str, metric: str, mode: Any) -> str:
    natural = _known_metrics().get(metric)
    if mode is None:
        if natural is None:
            raise ctx.error(
                path, f"missing; say whether {metric!r} is better high (max) or low (min)"
            )
        return natural
    if mode not in _MODES:
        raise ctx.error(path, f"expected max or min, got {_kind(mode)}")
    if natural is not None and mode != natural:
        raise ctx.error(
            path,
            f"{mode} would pick the trial with the {'highest' if mode == 'max' else 'lowest'}"
            f" {metric}; use mode: {natural}",
        )
    return str(mode)


def _parse_objectives(ctx: _Ctx, raw: Any, test_ok: bool) -> tuple[tuple[str, str], ...] | None:
    path = "search.objectives"
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ctx.error(path, f"expected a non-empty list of {{metric, mode}}, got {_kind(raw)}")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise ctx.error(ipath, f"expected {{metric: .., mode: max|min}}, got {_kind(item)}")
        _check_keys(ctx, ipath, item, _OBJECTIVE_KEYS)
        if "metric" not in item:
            raise ctx.error(ipath, "missing 'metric'")
        metric = _check_metric(ctx, _join(ipath, "metric"), item["metric"], test_ok)
        mode = _check_mode(ctx, _join(ipath, "mode"), metric, item.get("mode"))
        if any(metric == m for m, _ in out):
            raise ctx.error(ipath, f"{metric!r} is listed twice")
        out.append((metric, mode))
    return tuple(out)


def _parse_scheduler(ctx: _Ctx, raw: Any, max_epochs: int) -> SchedulerSpec:
    path = "search.scheduler"
    if raw is None or raw == "none":
        return SchedulerSpec("none", max_t=max_epochs)
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected none or {{type: asha, ...}}, got {_kind(raw)}")
    _check_keys(ctx, path, raw, _SCHEDULER_KEYS)
    typ = raw.get("type", "asha")
    if typ is None:
        typ = "none"
    if typ not in _SCHEDULER_TYPES:
        raise ctx.error(
            _join(path, "type"),
            f"unknown scheduler {_kind(typ)}"
            f"{did_you_mean(str(typ), _SCHEDULER_TYPES)}; allowed: {', '.join(_SCHEDULER_TYPES)}",
        )
    grace = _int(ctx, _join(path, "grace_period"), raw.get("grace_period", 1), 1)
    factor = raw.get("reduction_factor", 2)
    if not _is_number(factor) or not math.isfinite(factor) or factor <= 1:
        raise ctx.error(
            _join(path, "reduction_factor"), f"expected a number above 1, got {_kind(factor)}"
        )
    max_t = raw.get("max_t")
    if max_t is None:
        max_t = max_epochs
    max_t = _int(ctx, _join(path, "max_t"), max_t, 1)
    if max_t > max_epochs:
        raise ctx.error(
            _join(path, "max_t"),
            f"{max_t} is more than the {max_epochs} epochs a trial runs at most",
        )
    if typ == "asha" and grace > max_t:
        raise ctx.error(
            _join(path, "grace_period"),
            f"{grace} epochs is more than a trial runs (max_t "
            f"{max_t}, from epochs); ASHA could never stop a trial early",
        )
    return SchedulerSpec(typ, grace_period=grace, reduction_factor=float(factor), max_t=max_t)


# --------------------------------------------------------------------------------------------
# overrides


def _override_paths() -> dict[str, tuple[str, ...]]:
    """Plain override keys and the path each one sets."""
    out: dict[str, tuple[str, ...]] = {"name": ("name",)}
    out.update({k: ("search", k) for k in _SEARCH_KEYS if k != "searcher"})
    out.update({k: ("search", "searcher", k) for k in _SEARCHER_KEYS})
    return out


def _apply_overrides(
    raw: dict[str, Any], overrides: Mapping[str, Any], ctx: _Ctx
) -> dict[str, Any]:
    plain = _override_paths()
    for key, value in overrides.items():
        if key in plain:
            parts = plain[key]
        elif isinstance(key, str) and key.split(".")[0] in ("fixed", "search") and "." in key:
            parts = tuple(key.split("."))
        else:
            hint = (
                f" (settings are overridden as 'fixed.{key}')"
                if key in _setting_names()
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


__all__ = [
    "GENERATOR",
    "KNOB_SEPARATOR",
    "Distribution",
    "GeneratorSpace",
    "SchedulerSpec",
    "SearchSettings",
    "SearchSpace",
    "load_space",
    "parse_space",
    "resolve_space_path",
    "shipped_spaces",
    "shipped_spaces_dir",
]
