"""The configuration of one training run (one trial of a search).

A :class:`TrainConfig` holds everything needed to repeat a run: the task, the backbone by id
(and revision), the generator by name with its knobs, and the optimisation settings. It is
validated at the edge (``validate()``), stored beside every checkpoint and logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipt_ray.constants import SPLIT_METRIC_DIRECTIONS, VAL_PREFIX
from ipt_ray.errors import ConfigError, check_known_keys, unknown_choice
from ipt_ray.generators import get_config_class, make_config

POOLINGS = ("first", "mean", "last")
#: Validation metrics that can pick a run's best epoch (each split metric, higher is better).
SELECTABLE_METRICS = tuple(VAL_PREFIX + name for name in SPLIT_METRIC_DIRECTIONS)
DEFAULT_HEAD_LR = 1e-2
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _help(default: Any, help: str) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """One run: task x backbone x generator x optimisation. Every field is a search-space key."""

    task: str = _help("mr", "catalog task name or path to a CSV/JSONL/Parquet file")
    text_column: str = _help("text", "local files: the text column")
    text_pair_column: str = _help("text_pair", "local files: the optional second-text column")
    label_column: str = _help("label", "local files: the label column")
    label_names: list[str] | None = _help(
        None, "local files: the label set in id order (default: the sorted distinct labels)"
    )
    model: str = _help("minilm", "backbone: a hub id, a local directory, or the alias 'minilm'")
    revision: str | None = _help(None, "hub revision (branch, tag or commit) of the backbone")
    trust_remote_code: bool = _help(False, "allow the backbone's own code from the hub")
    generator: str = _help(
        "task", "generator name: task, prefix, ipt-lookup, ipt-encoder, ipt-prefix, idpg, lpt"
    )
    prompt_length: int = _help(16, "number of prompt vectors P")
    generator_options: dict[str, Any] = _help({}, "the generator's own knobs")
    prompt_layer: int = _help(
        0,
        "the layer whose input the input prompt joins: 0 = the word embeddings; k > 0 = "
        "after the frozen layers 0..k-1, which then see the text alone and are computed "
        "once per instance (a late prompt); lpt takes 0 as unset: the middle layer L // 2",
    )
    pooling: str | None = _help(
        None, "first, mean or last; default: mean for encoders, last for decoders"
    )
    lr: float | None = _help(
        None,
        "learning rate of the generator (default: the generator's "
        "own, e.g. 3e-2 for task, 1e-3 for idpg)",
    )
    head_lr: float | None = _help(None, "learning rate of the classification head (default: 1e-2)")
    weight_decay: float = _help(0.0, "AdamW weight decay")
    warmup_ratio: float = _help(0.06, "share of steps with linear warmup, then linear decay")
    max_grad_norm: float = _help(1.0, "gradient clipping norm (0 disables)")
    epochs: int = _help(3, "passes over the training split")
    batch_size: int = _help(32, "examples per step (per worker under DDP)")
    max_length: int = _help(64, "maximum tokens per instance, prompt excluded")
    seed: int = _help(0, "seed of initialisation, shuffling and data splits")
    head_dropout: float = _help(0.1, "dropout before the classification head")
    max_samples: int | None = _help(None, "cap every split at this many examples (smoke runs)")
    device: str = _help("auto", "auto, cpu or cuda")
    precision: str = _help(
        "auto", "auto (bf16 autocast on CUDA if supported, else fp32), fp32, bf16 or fp16"
    )
    select_metric: str | None = _help(
        None,
        "validation metric that picks the best epoch: "
        + ", ".join(SELECTABLE_METRICS)
        + "; default: "
        "the task's standard metric",
    )
    cache_features: bool = _help(
        True,
        "compute frozen features once and reuse them across epochs and trials: IDPG's "
        "sentence vector, and a late prompt's text states below prompt_layer",
    )
    eval_test_every_epoch: bool = _help(False, "also evaluate the test split every epoch")

    def validate(self) -> TrainConfig:
        """Check every field; raise :class:`ConfigError` naming the field and what is allowed.

        Fills in ``lr`` from the generator's default when it is None, so that what is logged
        and checkpointed is the rate actually used.

        Checks that need the backbone (a prompt that does not fit its positions) and the
        generator's own knobs are checked when the model is built.
        """
        if self.lr is None:
            self.lr = get_config_class(self.generator).default_lr
        _positive("lr", self.lr)
        if self.head_lr is not None:
            _positive("head_lr", self.head_lr)
        _int_range("prompt_length", self.prompt_length, 1, 4096)
        _int_range("prompt_layer", self.prompt_layer, 0, 4096)
        _int_range("epochs", self.epochs, 1, 100_000)
        _int_range("batch_size", self.batch_size, 1, 1 << 20)
        _int_range("max_length", self.max_length, 2, 1 << 20)
        _int_range("seed", self.seed, 0, 2**32 - 1)
        if self.max_samples is not None:
            _int_range("max_samples", self.max_samples, 1, 1 << 40)
        _float_range("weight_decay", self.weight_decay, 0.0, 10.0)
        _float_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        _float_range("max_grad_norm", self.max_grad_norm, 0.0, 1e6)
        _float_range("head_dropout", self.head_dropout, 0.0, 0.99)
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise unknown_choice("pooling", self.pooling, POOLINGS)
        if self.select_metric is not None and self.select_metric not in SELECTABLE_METRICS:
            raise unknown_choice("select_metric", self.select_metric, SELECTABLE_METRICS)
        if self.device not in DEVICES:
            raise unknown_choice("device", self.device, DEVICES)
        if self.precision not in PRECISIONS:
            raise unknown_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.generator_options, dict):
            raise ConfigError("generator_options must be a mapping of knob names to values")
        if "prompt_length" in self.generator_options:
            raise ConfigError(
                "prompt_length is a setting of the run (prompt_length), not a generator knob"
            )
        make_config(self.generator, self.generator_kwargs())
        return self

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`ipt_ray.data.load_task` for this run."""
        kwargs: dict[str, Any] = {"seed": self.seed, "max_samples": self.max_samples}
        defaults = {"text_column": "text", "text_pair_column": "text_pair", "label_column": "label"}
        for key, default in defaults.items():
            if getattr(self, key) != default:
                kwargs[key] = getattr(self, key)
        if self.label_names is not None:
            kwargs["label_names"] = list(self.label_names)
        return kwargs

    def generator_kwargs(self) -> dict[str, Any]:
        """Knobs passed to the generator's config class (prompt length included)."""
        return {"prompt_length": self.prompt_length, **self.generator_options}

    @property
    def generator_lr(self) -> float:
        """The generator's rate (after :meth:`validate` filled in the default)."""
        if self.lr is None:
            return get_config_class(self.generator).default_lr
        return self.lr

    @property
    def effective_head_lr(self) -> float:
        """The head's rate: ``head_lr``, else ``DEFAULT_HEAD_LR``."""
        return DEFAULT_HEAD_LR if self.head_lr is None else self.head_lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key raises :class:`ConfigError` with a suggestion."""
        check_known_keys("setting", values, cls.field_names())
        return cls(**dict(values))

    def flat_params(self) -> dict[str, Any]:
        """A flat mapping for MLflow params: knobs appear as ``<generator>.<knob>``."""
        out = {k: v for k, v in self.to_dict().items() if k != "generator_options"}
        for key, value in self.generator_options.items():
            out[f"{self.generator}.{key}"] = value
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _int_range(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _float_range(name: str, value: Any, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
