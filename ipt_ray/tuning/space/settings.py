"""The ``search`` section: objectives (metric and mode), trials, scheduler (ASHA) and
searcher (TPE) settings (:class:`SearchSettings`)."""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ipt_ray import constants
from ipt_ray.core.config import TrainConfig
from ipt_ray.errors import did_you_mean
from ipt_ray.tuning.options import RUNNERS
from ipt_ray.tuning.space.checks import (
    Ctx,
    as_bool,
    as_int,
    as_mapping,
    check_keys,
    describe_value,
    is_number,
    join_path,
)
from ipt_ray.tuning.space.distribution import Distribution
from ipt_ray.tuning.space.params import GeneratorSpace

if TYPE_CHECKING:
    import optuna


SEARCH_KEYS = (
    "metric",
    "mode",
    "num_samples",
    "seed",
    "max_concurrent",
    "scheduler",
    "searcher",
    "objectives",
    "runner",
    "pack_size",
)
_SCHEDULER_KEYS = ("type", "grace_period", "reduction_factor", "max_t")
_SCHEDULER_TYPES = ("asha", "none")
SEARCHER_KEYS = ("n_startup_trials", "constant_liar", "multivariate", "group")
_OBJECTIVE_KEYS = ("metric", "mode")


_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
    #: How trials train unless the search's options say (``--runner``); None: auto.
    runner: str | None = None
    #: Trials per pack of the packed runner unless ``--pack-size`` says; None: the default.
    pack_size: int | None = None

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


def parse_search(
    ctx: Ctx,
    raw: Any,
    fixed: Mapping[str, Any],
    params: Mapping[str, Distribution],
    generators: Mapping[str, GeneratorSpace],
) -> SearchSettings:
    raw = as_mapping(ctx, "search", raw, "search settings")
    check_keys(ctx, "search", raw, SEARCH_KEYS)
    test_ok = fixed.get("eval_test_every_epoch", False) is True
    objectives = _parse_objectives(ctx, raw.get("objectives"), test_ok)
    if objectives is not None:
        metric, mode = objectives[0]
        for key, value in (("metric", metric), ("mode", mode)):
            if key in raw and raw[key] != value:
                raise ctx.error(
                    join_path("search", key),
                    f"{raw[key]!r} differs from the first objective's "
                    f"{value!r}; with objectives, leave out metric and mode",
                )
    else:
        metric = _check_metric(ctx, "search.metric", raw.get("metric", "val_accuracy"), test_ok)
        mode = _check_mode(ctx, "search.mode", metric, raw.get("mode"))
    num_samples = as_int(ctx, "search.num_samples", raw.get("num_samples", 10), 1)
    seed = as_int(ctx, "search.seed", raw.get("seed", 0), 0, 2**32 - 1)
    max_concurrent = raw.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = as_int(ctx, "search.max_concurrent", max_concurrent, 1)
    scheduler = _parse_scheduler(
        ctx, raw.get("scheduler", {"type": "asha"}), _max_epochs(fixed, params, generators)
    )
    if objectives is not None and len(objectives) > 1 and scheduler.type != "none":
        raise ctx.error(
            "search.scheduler",
            "ASHA stops trials on one metric alone; with several objectives use scheduler: none",
        )
    searcher = as_mapping(ctx, "search.searcher", raw.get("searcher"), "TPE settings")
    check_keys(ctx, "search.searcher", searcher, SEARCHER_KEYS)
    startup = searcher.get("n_startup_trials")
    if startup is None:
        startup = min(10, max(1, num_samples // 3))
    startup = as_int(ctx, "search.searcher.n_startup_trials", startup, 0)
    liar = as_bool(ctx, "search.searcher.constant_liar", searcher.get("constant_liar", True))
    multivariate = as_bool(ctx, "search.searcher.multivariate", searcher.get("multivariate", True))
    group = as_bool(ctx, "search.searcher.group", searcher.get("group", multivariate))
    if group and not multivariate:
        raise ctx.error("search.searcher.group", "group: true needs multivariate: true")
    runner = raw.get("runner")
    if runner is not None and runner not in RUNNERS:
        raise ctx.error(
            "search.runner",
            f"unknown runner {describe_value(runner)}{did_you_mean(str(runner), RUNNERS)}; "
            f"allowed: {', '.join(RUNNERS)}",
        )
    pack_size = raw.get("pack_size")
    if pack_size is not None:
        pack_size = as_int(ctx, "search.pack_size", pack_size, 1)
        if runner != "packed":
            raise ctx.error("search.pack_size", "pack_size needs runner: packed")
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
        runner=runner,
        pack_size=pack_size,
    )


def _check_metric(ctx: Ctx, path: str, metric: Any, test_ok: bool) -> str:
    known = constants.METRIC_DIRECTIONS
    if not isinstance(metric, str) or not _METRIC_NAME.match(metric):
        raise ctx.error(
            path, f"expected a metric name such as val_accuracy, got {describe_value(metric)}"
        )
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
                "; use val_<metric>, test_<metric> or one of: "
                + ", ".join(sorted(constants.OTHER_METRIC_DIRECTIONS)),
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


def _check_mode(ctx: Ctx, path: str, metric: str, mode: Any) -> str:
    natural = constants.known_direction(metric)
    if mode is None:
        if natural is None:
            raise ctx.error(
                path, f"missing; say whether {metric!r} is better high (max) or low (min)"
            )
        return natural
    if mode not in constants.DIRECTIONS:
        raise ctx.error(path, f"expected max or min, got {describe_value(mode)}")
    if natural is not None and mode != natural:
        raise ctx.error(
            path,
            f"{mode} would pick the trial with the {'highest' if mode == 'max' else 'lowest'}"
            f" {metric}; use mode: {natural}",
        )
    return str(mode)


def _parse_objectives(ctx: Ctx, raw: Any, test_ok: bool) -> tuple[tuple[str, str], ...] | None:
    path = "search.objectives"
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ctx.error(
            path, f"expected a non-empty list of {{metric, mode}}, got {describe_value(raw)}"
        )
    out: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise ctx.error(
                ipath, f"expected {{metric: .., mode: max|min}}, got {describe_value(item)}"
            )
        check_keys(ctx, ipath, item, _OBJECTIVE_KEYS)
        if "metric" not in item:
            raise ctx.error(ipath, "missing 'metric'")
        metric = _check_metric(ctx, join_path(ipath, "metric"), item["metric"], test_ok)
        mode = _check_mode(ctx, join_path(ipath, "mode"), metric, item.get("mode"))
        if any(metric == m for m, _ in out):
            raise ctx.error(ipath, f"{metric!r} is listed twice")
        out.append((metric, mode))
    return tuple(out)


def _parse_scheduler(ctx: Ctx, raw: Any, max_epochs: int) -> SchedulerSpec:
    path = "search.scheduler"
    if raw is None or raw == "none":
        return SchedulerSpec("none", max_t=max_epochs)
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise ctx.error(path, f"expected none or {{type: asha, ...}}, got {describe_value(raw)}")
    check_keys(ctx, path, raw, _SCHEDULER_KEYS)
    typ = raw.get("type", "asha")
    if typ is None:
        typ = "none"
    if typ not in _SCHEDULER_TYPES:
        raise ctx.error(
            join_path(path, "type"),
            f"unknown scheduler {describe_value(typ)}"
            f"{did_you_mean(str(typ), _SCHEDULER_TYPES)}; allowed: {', '.join(_SCHEDULER_TYPES)}",
        )
    grace = as_int(ctx, join_path(path, "grace_period"), raw.get("grace_period", 1), 1)
    factor = raw.get("reduction_factor", 2)
    if not is_number(factor) or not math.isfinite(factor) or factor <= 1:
        raise ctx.error(
            join_path(path, "reduction_factor"),
            f"expected a number above 1, got {describe_value(factor)}",
        )
    max_t = raw.get("max_t")
    if max_t is None:
        max_t = max_epochs
    max_t = as_int(ctx, join_path(path, "max_t"), max_t, 1)
    if max_t > max_epochs:
        raise ctx.error(
            join_path(path, "max_t"),
            f"{max_t} is more than the {max_epochs} epochs a trial runs at most",
        )
    if typ == "asha" and grace > max_t:
        raise ctx.error(
            join_path(path, "grace_period"),
            f"{grace} epochs is more than a trial runs (max_t "
            f"{max_t}, from epochs); ASHA could never stop a trial early",
        )
    return SchedulerSpec(typ, grace_period=grace, reduction_factor=float(factor), max_t=max_t)
