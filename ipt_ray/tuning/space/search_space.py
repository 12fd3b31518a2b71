"""A validated search space (:class:`SearchSpace`): Optuna's define-by-run function, a trial's
TrainConfig, dry-run samples and a summary."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.core.config import SELECTABLE_METRICS, TrainConfig
from ipt_ray.errors import ConfigError, did_you_mean
from ipt_ray.generators import generator_names
from ipt_ray.tuning.space.distribution import Distribution
from ipt_ray.tuning.space.knobs import (
    GENERATOR,
    KNOB_SEPARATOR,
    knob_names_of,
    setting_names,
)
from ipt_ray.tuning.space.params import GeneratorSpace
from ipt_ray.tuning.space.settings import (
    SearchSettings,
)

if TYPE_CHECKING:
    import optuna


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
        knob_names = knob_names_of(name)
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
            elif rest in setting_names():
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
