"""One training run as a Python call: :func:`train` runs what ``ipt-ray train`` runs.

Its settings are :class:`~ipt_ray.core.config.TrainConfig` fields and the generator's knobs,
in one mapping or as keyword arguments (``ipt_ray.train(task="mr", generator="ipt-encoder",
encoder="cnn")``); :func:`config_from_settings` routes each to its place. The result's
``to_dict()`` is the ``ipt-ray train --json`` object. No Ray, no MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray.core.config import TrainConfig
from ipt_ray.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from ipt_ray.training.loop import EpochCallback, TrainingRun, TrainResult


def config_from_settings(settings: Mapping[str, Any]) -> TrainConfig:
    """A validated config from TrainConfig fields and generator knobs in one mapping.

    A key that is a knob of ``settings["generator"]`` (default: TrainConfig's) goes into
    ``generator_options``; ``prompt_length`` stays a field (every generator has it).

    Raises:
        ConfigError: a key that is neither (with the closest name), or an invalid value.
    """
    from ipt_ray.generators import get_config_class

    defaults = TrainConfig()
    generator = str(settings.get("generator", defaults.generator))
    knobs = set(get_config_class(generator).knobs()) - {"prompt_length"}
    names = set(TrainConfig.field_names())
    fields: dict[str, Any] = {}
    options: dict[str, Any] = dict(settings.get("generator_options") or {})
    for key, value in settings.items():
        if key == "generator_options":
            continue
        if key in knobs:
            options[key] = value
        elif key in names:
            fields[key] = value
        else:
            allowed = sorted(knobs | names)
            raise ConfigError(
                f"{key}: not a knob of generator {generator!r} nor a training setting"
                f"{did_you_mean(key, allowed)}; knobs: {', '.join(sorted(knobs))}"
            )
    return TrainConfig.from_dict({**fields, "generator_options": options}).validate()


@dataclass
class TrainSummary:
    """What :func:`train` returns: the config, the fitted run and its result."""

    config: TrainConfig
    run: TrainingRun = field(repr=False)
    result: TrainResult = field(repr=False)
    #: The checkpoint folder written (``out``), else None.
    checkpoint: Path | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """Best epoch's ``val_*``, the best weights' ``test_*``, counts and timings."""
        return self.result.metrics

    def to_dict(self) -> dict[str, Any]:
        """The ``ipt-ray train --json`` object (JSON-serialisable)."""
        whole = ("best_epoch",)
        return {
            "task": self.run.task.name,
            "model": self.config.model,
            "generator": self.config.generator,
            "config": self.config.to_dict(),
            **{
                k: (int(v) if k.endswith("_params") or k in whole else v)
                for k, v in self.metrics.items()
            },
            "history": [r.metrics for r in self.result.history],
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }


def train(
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    on_start: Callable[[TrainingRun], None] | None = None,
    on_epoch_end: EpochCallback | None = None,
    **settings: Any,
) -> TrainSummary:
    """Train one generator on one task with a frozen backbone, in this process.

    Args:
        config: a :class:`TrainConfig`, or a mapping of its fields and generator knobs (see
            :func:`config_from_settings`); None: the defaults.
        out: write the best checkpoint to this new folder (checked before training).
        on_start: called with the built run (data loaded, model built) before the first epoch.
        on_epoch_end: called after each epoch with its result and the run.
        **settings: fields and knobs on top of ``config``, e.g. ``epochs=1, encoder="cnn"``.

    Returns:
        The summary; ``to_dict()`` is the ``ipt-ray train --json`` object.

    Raises:
        ConfigError: an unknown setting or knob, an invalid value.
        SettingError: ``out`` exists and is not empty, or cannot be created.
        UserError: an unknown task or model, bad data, a diverged loss.
    """
    from ipt_ray.training.checkpointing import check_new_folder, write_checkpoint
    from ipt_ray.training.loop import TrainingRun

    given = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    resolved = config_from_settings({**given, **settings})
    out_dir = check_new_folder(out, "out") if out is not None else None
    run = TrainingRun(resolved)
    if on_start is not None:
        on_start(run)
    result = run.fit(on_epoch_end=on_epoch_end)
    if out_dir is not None:
        write_checkpoint(run, out_dir)
    return TrainSummary(resolved, run, result, out_dir)


__all__ = ["TrainSummary", "config_from_settings", "train"]
