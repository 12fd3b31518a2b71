"""Search spaces: shipped files parse, trials follow the conditional structure, mistakes are
refused with one line that names the file, the key path and the fix."""

from __future__ import annotations

import collections
import copy
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from ipt_ray.core.config import TrainConfig
from ipt_ray.errors import ConfigError
from ipt_ray.generators import generator_names
from ipt_ray.tuning.space import (
    SearchSpace,
    load_space,
    parse_space,
    resolve_space_path,
    shipped_spaces,
    shipped_spaces_dir,
)

SPACES_DIR = shipped_spaces_dir()
SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))

# A small valid space; error cases below each change one thing in it.
BASE: dict[str, Any] = {
    "name": "case",
    "fixed": {"task": "mr", "model": "minilm", "epochs": 3},
    "search": {
        "metric": "val_accuracy",
        "mode": "max",
        "num_samples": 4,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    },
    "params": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "prompt_length": {"type": "int", "low": 4, "high": 16, "step": 4},
        "generator": {
            "type": "categorical",
            "choices": {
                "task": {},
                "idpg": {
                    "bottleneck": {"type": "int", "low": 16, "high": 64, "log": True},
                    "weights": "dnn",
                },
                "ipt-encoder": {"encoder": ["cnn", "lstm"]},
            },
        },
    },
}


def _space(change: Callable[[dict[str, Any]], None] | None = None, **overrides: Any) -> SearchSpace:
    raw = copy.deepcopy(BASE)
    if change is not None:
        change(raw)
    return parse_space(yaml.safe_dump(raw), path=Path("case.yaml"), overrides=overrides)


def _knob_keys(config: dict[str, Any]) -> set[str]:
    return {k for k in config if "." in k}


# --------------------------------------------------------------------------------------------
# Shipped spaces


def test_the_documented_spaces_are_shipped() -> None:
    assert {
        "demo",
        "smoke",
        "superglue-rte-roberta-large",
        "superglue-boolq-roberta-large",
        "superglue-cb-roberta-large",
        "sst2-roberta-base",
    } <= set(shipped_spaces())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_space_parses_and_yields_valid_train_configs(path: Path) -> None:
    space = load_space(path)
    assert space.name == path.stem
    assert space.source == path.read_text(encoding="utf-8")
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert header.startswith("#") and "needs:" in header and "searches:" in header
    for config in space.sample_configs(30, seed=1):
        train = space.to_train_config(config)
        assert train.generator == config["generator"]
        assert {k: train.to_dict()[k] for k in space.fixed} == space.fixed


def test_shipped_spaces_resolve_by_name() -> None:
    assert resolve_space_path("demo") == SPACES_DIR / "demo.yaml"
    assert resolve_space_path("smoke.yaml") == SPACES_DIR / "smoke.yaml"
    assert load_space("demo").path == SPACES_DIR / "demo.yaml"


def test_unknown_space_name_lists_shipped_spaces() -> None:
    with pytest.raises(ConfigError, match="did you mean 'demo'") as info:
        resolve_space_path("dmeo")
    assert "smoke" in str(info.value) and "sst2-roberta-base" in str(info.value)


def test_demo_fits_a_small_cpu_budget() -> None:
    space = load_space("demo")
    assert space.settings.num_samples <= 10 and space.settings.scheduler.type == "asha"
    # The whole training split (a probe on the same data is what it must beat), which fits
    # the budget because every prompt is late: the frozen layers below it run once, cached.
    assert "max_samples" not in space.fixed
    layers = {space.to_train_config(c).prompt_layer for c in space.sample_configs(40, seed=0)}
    assert layers == {3, 5}


def test_categorical_gpu_space_is_a_grid_of_valid_configs() -> None:
    space = load_space("superglue-rte-roberta-large")
    grid = space.grid()
    assert grid is not None and len(grid) == 432
    assert len({tuple(sorted(c.items(), key=str)) for c in grid}) == len(grid)
    for config in grid[::7]:
        space.to_train_config(config)
    assert load_space("demo").grid() is None  # lr is continuous


# --------------------------------------------------------------------------------------------
# The conditional structure


def test_each_sample_holds_exactly_its_generators_knobs_within_range() -> None:
    space = load_space("demo")
    configs = space.sample_configs(60, seed=0)
    assert {c["generator"] for c in configs} == set(space.generators)
    assert set(space.generators) <= set(generator_names())
    for config in configs:
        sub = space.generators[config["generator"]]
        expected = {sub.param_name(k) for k in [*sub.searched, *sub.constants]}
        assert _knob_keys(config) == expected
        for key, dist in sub.searched.items():
            assert dist.contains(config[sub.param_name(key)]), (key, config)
        for key, dist in space.params.items():
            assert dist.contains(config[key]), (key, config)
        assert {k: config[k] for k in space.fixed} == space.fixed
    # idpg's weights are written as a plain value: fixed for idpg, absent elsewhere.
    assert all(c["idpg.weights"] == "dnn" for c in configs if c["generator"] == "idpg")


def test_log_uniform_params_span_orders_of_magnitude() -> None:
    space = load_space("demo")  # lr: 1e-4 .. 3e-2, log
    lrs = [c["lr"] for c in space.sample_configs(60, seed=0)]
    assert max(lrs) / min(lrs) > 30
    # Log-uniform puts ~40% below 1e-3; uniform would put ~3% there.
    assert sum(lr < 1e-3 for lr in lrs) >= 12
    hidden = [
        c["ipt-encoder.hidden"]
        for c in space.sample_configs(200, seed=0)
        if c["generator"] == "ipt-encoder"
    ]
    assert min(hidden) < 50 and max(hidden) > 90 and all(isinstance(h, int) for h in hidden)


def test_samples_differ_and_are_reproducible() -> None:
    space = load_space("demo")
    configs = space.sample_configs(20, seed=3)
    assert len({tuple(sorted(c.items(), key=str)) for c in configs}) == 20
    assert space.sample_configs(20, seed=3) == configs
    assert space.sample_configs(20, seed=4) != configs


def test_to_train_config_moves_knobs_into_generator_options() -> None:
    space = load_space("demo")
    train = space.to_train_config(
        {"lr": 0.003, "prompt_length": 16, "generator": "idpg", "idpg.bottleneck": 32}
    )
    assert isinstance(train, TrainConfig)
    assert train.generator == "idpg" and train.lr == 0.003 and train.prompt_length == 16
    assert train.generator_options == {"bottleneck": 32, "weights": "dnn"}
    assert train.task == "mr" and train.max_length == 64  # fixed settings filled in


def test_lpt_and_ipt_prefix_knobs_are_searchable() -> None:
    """Their knobs sample within the space, become generator options, and validate; a value
    outside a knob's set is refused when the space loads, naming the knob."""

    def add(raw: dict[str, Any]) -> None:
        raw["params"]["generator"]["choices"] = {
            "lpt": {
                "bottleneck": {"type": "int", "low": 8, "high": 128, "log": True},
                "pooling": ["auto", "mean", "max"],
                "activation": "relu",
            },
            "ipt-prefix": {
                "source": ["lookup", "cnn", "lstm", "mlp"],
                "scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                "layers": ["first", "all"],
            },
        }

    space = _space(add)
    configs = space.sample_configs(40, seed=0)
    assert {c["generator"] for c in configs} == {"lpt", "ipt-prefix"}
    for config in configs:
        train = space.to_train_config(config).validate()
        if train.generator == "lpt":
            assert 8 <= train.generator_options["bottleneck"] <= 128
            assert train.generator_options["pooling"] in {"auto", "mean", "max"}
        else:
            assert set(train.generator_options) == {"source", "scale", "layers"}
    with pytest.raises(ConfigError, match=r"lpt\.pooling.*'cls'.*auto, first, last, mean, max"):
        _space(lambda raw: (add(raw), _set(f"{CHOICES}/lpt/pooling", ["first", "cls"])(raw)))


def test_to_train_config_refuses_another_generators_knob() -> None:
    space = load_space("demo")
    with pytest.raises(ConfigError, match=r"'idpg\.bottleneck' belongs to generator 'idpg'"):
        space.to_train_config({"lr": 0.01, "generator": "task", "idpg.bottleneck": 32})
    with pytest.raises(ConfigError, match="not a choice of this search space"):
        space.to_train_config({"lr": 0.01, "generator": "idgp"})


def test_per_generator_settings_apply_only_to_their_generator() -> None:
    space = load_space("sst2-roberta-base")  # each generator has its own lr range
    for config in space.sample_configs(40, seed=0):
        name = config["generator"]
        assert "lr" not in config
        train = space.to_train_config(config)
        assert space.generators[name].searched["lr"].contains(train.lr)
        assert train.lr == config[f"{name}.lr"]
        assert "lr" not in train.generator_options


def test_tpe_with_constant_liar_runs_parallel_trials_and_finds_the_better_generator() -> None:
    space = load_space("demo")
    sampler = space.settings.tpe_sampler()
    assert sampler._constant_liar  # the setting reaches Optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(12):
        running = [study.ask() for _ in range(3)]  # three trials in flight at once
        for trial in running:
            config = {**space.define_by_run(trial), **trial.params}
            space.to_train_config(config)
            good = config["generator"] == "ipt-encoder"
            study.tell(trial, good - abs(math.log10(config["lr"]) + 2))
    late = collections.Counter(t.params["generator"] for t in study.trials[18:])
    assert study.best_params["generator"] == "ipt-encoder"
    assert late["ipt-encoder"] > len(study.trials[18:]) / 3


def test_ray_optuna_search_merges_constants_and_keeps_dotted_names() -> None:
    search_mod = pytest.importorskip("ray.tune.search.optuna")
    space = load_space("demo")
    searcher = search_mod.OptunaSearch(
        space=space.define_by_run,
        metric=space.settings.metric,
        mode=space.settings.mode,
        sampler=space.settings.tpe_sampler(),
    )
    for i in range(5):
        config = searcher.suggest(f"trial_{i}")
        assert config["task"] == "mr" and "generator" in config
        space.to_train_config(config)


def test_a_space_survives_pickling() -> None:
    # Tune checkpoints OptunaSearch, define-by-run function included.
    space = load_space("demo")
    again = pickle.loads(pickle.dumps(space.define_by_run)).__self__
    assert again == space


# --------------------------------------------------------------------------------------------
# Settings and overrides


def test_defaults_and_natural_mode() -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["search"] = {"metric": "train_loss"}

    settings = _space(change).settings
    assert settings.mode == "min"  # inferred from the metric
    assert settings.scheduler.type == "asha" and settings.scheduler.max_t == 3
    assert settings.constant_liar and settings.num_samples == 10 and settings.max_concurrent is None


def test_yaml_1_2_floats_are_numbers() -> None:
    text = yaml.safe_dump(BASE).replace("low: 0.0001", "low: 1e-4")
    assert "1e-4" in text
    assert parse_space(text).params["lr"].low == pytest.approx(1e-4)


def test_overrides_apply_to_search_settings_and_fixed() -> None:
    space = load_space(
        "smoke",
        {
            "num_samples": 2,
            "max_concurrent": 2,
            "n_startup_trials": 1,
            "scheduler": "none",
            "fixed.model": "/tmp/tiny-bert",
            "search.seed": 7,
        },
    )
    s = space.settings
    assert (s.num_samples, s.max_concurrent, s.n_startup_trials, s.seed) == (2, 2, 1, 7)
    assert s.scheduler.type == "none"
    assert space.fixed["model"] == "/tmp/tiny-bert"
    assert "tiny-bert" not in space.source and space.overrides["num_samples"] == 2
    assert space.to_train_config(space.sample_configs(1)[0]).model == "/tmp/tiny-bert"


BAD_OVERRIDES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "typo": ({"num_sample": 2}, ["'num_sample'", "did you mean 'num_samples'"]),
    "setting-without-prefix": ({"model": "x"}, ["'model'", "fixed.model"]),
    "bad-value": ({"num_samples": 0}, ["search.num_samples (set by an override)", "at least 1"]),
    "grace-beyond-epochs": (
        {"fixed.epochs": 1, "search.scheduler.grace_period": 2},
        ["search.scheduler.grace_period (set by an override)", "ASHA could never"],
    ),
}


@pytest.mark.parametrize(("overrides", "fragments"), BAD_OVERRIDES.values(), ids=BAD_OVERRIDES)
def test_bad_overrides_are_refused(overrides: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_space("smoke", overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# Mistakes


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return change


def _rename(path: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)

    return change


def _both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        for c in changes:
            c(raw)

    return change


CHOICES = "params/generator/choices"
LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}

BAD: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "top-level-typo": (_rename("params", "parmas"), ["case.yaml: parmas", "did you mean 'params'"]),
    "metric-key-typo": (_rename("search/metric", "metirc"), ["search.metirc", "'metric'"]),
    "num-samples-key-typo": (
        _rename("search/num_samples", "num_sample"),
        ["search.num_sample", "'num_samples'"],
    ),
    "num-samples-text": (_set("search/num_samples", "ten"), ["search.num_samples", "'ten'"]),
    "num-samples-zero": (_set("search/num_samples", 0), ["search.num_samples", "at least 1"]),
    "max-concurrent-zero": (_set("search/max_concurrent", 0), ["search.max_concurrent"]),
    "low-above-high": (
        _set("params/lr", {"type": "float", "low": 0.1, "high": 0.01}),
        ["params.lr", "low 0.1 must be below high 0.01"],
    ),
    "log-with-zero-low": (
        _set("params/lr", {**LR, "low": 0.0}),
        ["params.lr", "log: true needs low > 0"],
    ),
    "step-larger-than-range": (
        _set("params/prompt_length/step", 40),
        ["params.prompt_length.step", "larger than the range 4..16"],
    ),
    "step-not-a-multiple": (
        _set("params/prompt_length/step", 5),
        ["params.prompt_length.step", "multiple of step"],
    ),
    "int-bounds-that-are-floats": (
        _set("params/prompt_length/low", 4.0),
        ["params.prompt_length.low", "whole numbers", "4.0"],
    ),
    "missing-type": (
        _set("params/lr", {"low": 1e-4, "high": 1e-2}),
        ["params.lr", "missing 'type'"],
    ),
    "distribution-key-typo": (
        _set("params/lr", {"type": "float", "low": 1e-4, "high": 1e-2, "lg": True}),
        ["params.lr.lg", "did you mean 'log'"],
    ),
    "choices-under-float": (
        _set("params/lr", {**LR, "choices": [0.1]}),
        ["params.lr.choices", "belongs to type: categorical"],
    ),
    "float-for-an-int-setting": (
        _set("params/batch_size", {"type": "float", "low": 8, "high": 32}),
        ["params.batch_size", "use type: int"],
    ),
    "plain-value-in-params": (
        _set("params/batch_size", 32),
        ["params.batch_size", "put it under fixed"],
    ),
    "empty-choices": (
        _set(f"{CHOICES}/ipt-encoder/encoder", []),
        ["params.generator.choices.ipt-encoder.encoder", "empty"],
    ),
    "unknown-generator": (
        _rename(f"{CHOICES}/idpg", "idgp"),
        ["params.generator.choices.idgp", "did you mean 'idpg'", "ipt-encoder"],
    ),
    "unknown-knob": (
        _rename(f"{CHOICES}/idpg/bottleneck", "bottlenek"),
        ["params.generator.choices.idpg.bottlenek", "did you mean 'bottleneck'"],
    ),
    "knob-at-top-level": (
        _set("params/phm_rank", {"type": "int", "low": 2, "high": 8}),
        ["params.phm_rank", "knob of idpg", "under params.generator.choices.idpg"],
    ),
    "shared-knob-at-top-level": (
        _set("params/dropout", [0.0, 0.1]),
        ["params.dropout", "knob of every generator", "choices.<generator>"],
    ),
    "knob-choice-outside-its-set": (
        _set(f"{CHOICES}/ipt-encoder/encoder", ["cnn", "transformer"]),
        ["ipt-encoder.encoder", "'transformer'", "cnn, lstm, mlp"],
    ),
    "knob-range-outside-its-limits": (
        _set(f"{CHOICES}/idpg/bottleneck", {"type": "int", "low": 0, "high": 8}),
        ["idpg.bottleneck", "value 0 is not allowed", "bottleneck must be"],
    ),
    "even-kernel-size-inside-a-range": (
        _set(f"{CHOICES}/ipt-encoder/kernel_size", {"type": "int", "low": 3, "high": 7}),
        ["ipt-encoder.kernel_size", "value 4", "odd"],
    ),
    "fixed-knob-with-a-bad-value": (
        _set(f"{CHOICES}/idpg/weights", "dense"),
        ["idpg.weights", "'dense'", "dnn, phm"],
    ),
    "setting-range-outside-its-limits": (
        _set("params/warmup_ratio", {"type": "float", "low": 0.5, "high": 1.5}),
        ["params.warmup_ratio", "high 1.5 is not allowed", "warmup_ratio must be"],
    ),
    "fixed-key-not-a-setting": (_set("fixed/epoch", 3), ["fixed.epoch", "did you mean 'epochs'"]),
    "fixed-knob": (_set("fixed/bottleneck", 32), ["fixed.bottleneck", "knob of idpg"]),
    "fixed-generator": (
        _set("fixed/generator", "idpg"),
        ["fixed.generator", "params.generator.choices"],
    ),
    "fixed-wrong-type": (_set("fixed/epochs", "3"), ["fixed.epochs", "whole number", "'3'"]),
    "fixed-bad-value": (_set("fixed/max_length", 1), ["fixed.max_length", "max_length must be"]),
    "fixed-and-searched": (_set("fixed/lr", 0.01), ["params.lr", "also fixed (fixed.lr)"]),
    "top-level-and-per-generator": (
        _set(f"{CHOICES}/idpg/prompt_length", [8, 16]),
        ["params.generator.choices.idpg.prompt_length", "also set at params.prompt_length"],
    ),
    "generator-missing": (_drop("params/generator"), ["params.generator", "missing"]),
    "generator-as-plain-name": (_set("params/generator", "idpg"), ["params.generator"]),
    "metric-without-prefix": (
        _set("search/metric", "accuracy"),
        ["search.metric", "did you mean 'val_accuracy'"],
    ),
    "metric-typo": (
        _set("search/metric", "val_acurracy"),
        ["search.metric", "did you mean 'val_accuracy'"],
    ),
    "metric-unknown": (_set("search/metric", "auc"), ["search.metric", "'auc'", "val_<metric>"]),
    "test-metric-without-test-evaluation": (
        _set("search/metric", "test_accuracy"),
        ["search.metric", "eval_test_every_epoch"],
    ),
    "mode-unknown": (_set("search/mode", "maximize"), ["search.mode", "max or min"]),
    "mode-against-the-metric": (
        _both(_set("search/metric", "train_loss"), _set("search/mode", "max")),
        ["search.mode", "use mode: min"],
    ),
    "scheduler-unknown": (
        _set("search/scheduler/type", "ahsa"),
        ["search.scheduler.type", "did you mean 'asha'"],
    ),
    "grace-period-beyond-epochs": (
        _set("search/scheduler/grace_period", 5),
        ["search.scheduler.grace_period", "5 epochs is more than a trial runs (max_t 3"],
    ),
    "reduction-factor-one": (
        _set("search/scheduler/reduction_factor", 1),
        ["search.scheduler.reduction_factor"],
    ),
    "searcher-key-typo": (
        _set("search/searcher", {"n_startup_trial": 3}),
        ["search.searcher.n_startup_trial", "did you mean 'n_startup_trials'"],
    ),
    "objectives-with-asha": (
        _set(
            "search/objectives",
            [
                {"metric": "val_accuracy", "mode": "max"},
                {"metric": "trainable_params", "mode": "min"},
            ],
        ),
        ["search.scheduler", "scheduler: none"],
    ),
    "objectives-repeat-a-metric": (
        _set("search/objectives", [{"metric": "val_accuracy"}, {"metric": "val_accuracy"}]),
        ["search.objectives[1]", "listed twice"],
    ),
}


@pytest.mark.parametrize(("change", "fragments"), BAD.values(), ids=list(BAD))
def test_mistakes_are_refused_with_one_line_naming_the_key(
    change: Callable[[dict[str, Any]], None], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        _space(change)
    message = str(info.value)
    assert "\n" not in message and message.startswith("case.yaml")
    for fragment in fragments:
        assert fragment in message, message


BAD_TEXT = {
    "malformed-yaml": ("params: {lr: [1, 2}\n", ["malformed YAML at line 1"]),
    "duplicate-key": ("params:\n  lr: [0.1]\n  lr: [0.2]\n", ["duplicate key 'lr'", "line 3"]),
    "top-level-list": ("- lr\n- generator\n", ["top level must be a mapping", "a list"]),
    "empty-file": ("# nothing here\n", ["empty"]),
}


@pytest.mark.parametrize(("text", "fragments"), BAD_TEXT.values(), ids=list(BAD_TEXT))
def test_unreadable_text_is_refused(text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space(text, path=Path("case.yaml"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("case.yaml")
    for fragment in fragments:
        assert fragment in message, message


def test_multi_objective_slot() -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["search"] = {
            "scheduler": "none",
            "objectives": [{"metric": "val_accuracy"}, {"metric": "trainable_params"}],
        }

    settings = _space(change).settings
    assert settings.objectives == (("val_accuracy", "max"), ("trainable_params", "min"))
    assert (settings.metric, settings.mode) == ("val_accuracy", "max")
    assert settings.metrics == ["val_accuracy", "trainable_params"]


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "nope.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_space(latin)
