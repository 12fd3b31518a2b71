"""A search's own settings, in one list (:class:`SearchOptions`), checked before anything
starts: where it runs and is tracked, the runner a trial trains with, resources per trial,
failures, and how long a search waits for a trial.

:class:`SearchOptions` is the one place a search option is written: ``ipt_ray.search(**options)``
takes its fields as keyword arguments, ``ipt-ray search`` builds one flag per field (help text
from the field's metadata), :func:`~ipt_ray.tuning.run.run_search` reads it, and a search
submitted as a Ray Job gets its command line from :meth:`SearchOptions.command_line`, so a new
option reaches all four.

Runners: ``actor`` trains in Tune's trial process, reused by the next trial; ``packed`` trains
the trials of a node (a GPU) in one process over one copy of the backbone, their passes fused
(:mod:`ipt_ray.tuning.pack_server`); ``train`` is a Ray Train TorchTrainer with DDP workers
(see :mod:`ipt_ray.tuning.trial`). Errors name the
settings as keyword arguments (:class:`SettingError`); the CLI words them as flags. No Ray
import here (the CLI checks the settings before it starts anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ipt_ray.errors import SettingError, unknown_choice

#: How a trial trains (see the module docstring); ``auto`` picks one.
RUNNERS = ("auto", "actor", "packed", "train")
#: Trials per pack of the ``packed`` runner unless set (see README "Packed trials").
DEFAULT_PACK_SIZE = 4
#: Seconds a ``train`` trial waits for its workers to be placed before it fails.
DEFAULT_PLACEMENT_TIMEOUT_S = 180.0
#: Seconds with RUNNING trials of which none started or reported, after which the search's
#: watchdog fails the longest-waiting one (longer than any epoch measured here).
DEFAULT_STALL_TIMEOUT_S = 1800.0


def _option(default: Any, help: str, **extra: Any) -> Any:
    """A :class:`SearchOptions` field: its default and the help the CLI shows."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SearchOptions:
    """Every option of a search (the keyword arguments of :func:`ipt_ray.search`, the flags of
    ``ipt-ray search``). ``None`` means the default that the help names."""

    name: str | None = _option(None, "search name = MLflow experiment (default: the space's)")
    address: str | None = _option(
        None,
        "Ray: none = a local Ray; auto, HOST:PORT or ray://... = run the driver here against "
        "that cluster; http://HEAD:8265 = submit as a Ray Job",
    )
    tracking_uri: str | None = _option(
        None, "MLflow: http://HOST:PORT or sqlite:///PATH (default: ./ipt-ray-runs/mlflow.db)"
    )
    storage: str | None = _option(
        None,
        "Ray results and checkpoints: a path shared by all nodes or an s3:// / gs:// URI "
        "(default: ray/ beside a sqlite store, else ./ipt-ray-runs/ray)",
    )
    resume: str | None = _option(
        None, "continue the interrupted search NAME (running the same command again does too)"
    )
    fresh: bool = _option(False, "start a new search even if one of this name was interrupted")
    num_samples: int | None = _option(None, "trials (default: the space's)")
    max_concurrent: int | None = _option(
        None, "trials at once (default: the space's, else what the cluster fits)"
    )
    workers_per_trial: int = _option(1, "DDP workers per trial")
    cpus_per_worker: float = _option(1.0, "CPUs per worker")
    gpus_per_worker: float = _option(0.0, "GPUs per worker (0.5 = 2 per GPU)")
    max_failures: int = _option(
        0, "re-run a failed trial this often, from its last checkpoint (-1: always)"
    )
    worker_failures: int = _option(
        0,
        "restart a trial's workers this often when one dies (a killed process, a lost node), "
        "from the trial's last checkpoint (-1: always)",
    )
    placement_timeout: float = _option(
        DEFAULT_PLACEMENT_TIMEOUT_S,
        "seconds a trial waits for its Ray Train workers to be placed before it fails (and "
        "max_failures retries it); raise it where an autoscaler adds nodes",
    )
    stall_timeout: float = _option(
        DEFAULT_STALL_TIMEOUT_S,
        "seconds with trials running but none started or reported, after which the "
        "longest-waiting trial is failed; 0 = never",
    )
    runner: str = _option(
        "auto",
        "how a trial trains: actor (in Tune's trial process, reused by the next trial: fast "
        "to start, one process per trial), packed (pack_size trials share cpus_per_worker "
        "CPUs and gpus_per_worker GPUs in one process per node and GPU, over one copy of the "
        "backbone, their passes fused), train (a Ray Train TorchTrainer with "
        "workers_per_trial DDP workers), or auto (the space's runner, else actor for 1 "
        "worker, else train)",
    )
    pack_recompute: bool = _option(
        False,
        "packed runner: keep only each layer's input for the backward pass and recompute the "
        "rest there (less memory per trial, about a third more compute)",
    )
    pack_size: int | None = _option(
        None,
        "packed runner: trials that share cpus_per_worker CPUs (gpus_per_worker GPUs) in a "
        "pack (default: the space's, else 4)",
    )
    set: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={"help": "override a fixed setting of the space, KEY=VALUE (repeat)"},
    )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, in the order of the help."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> SearchOptions:
        """Options from keyword arguments (``ipt_ray.search(space, **options)``).

        Raises:
            ConfigError: a keyword that is no option (with the closest name).
        """
        for key in options:
            if key not in cls.names():
                raise unknown_choice("search option", key, cls.names())
        return cls(**{**options, "set": dict(options.get("set") or {})})

    @property
    def search_name(self) -> str | None:
        """The name the search runs under: ``resume`` names the search it continues."""
        return self.resume or self.name

    @property
    def resume_mode(self) -> bool | None:
        """True: continue ``resume`` (an error if there is nothing to continue); False: start
        a new search (``fresh``); None: continue an interrupted search of the name if any."""
        return True if self.resume else (False if self.fresh else None)

    def check(self, space_runner: str | None = None, space_pack_size: int | None = None) -> str:
        """Check the options together; the one place that does.

        ``space_runner``/``space_pack_size``: the space's ``search.runner``/``pack_size``,
        used where the options leave them at ``auto``/None.

        ``num_samples``/``max_concurrent`` None mean the space's own; ``max_failures`` and
        ``worker_failures`` -1 mean no limit.

        Returns:
            The runner the search uses (``actor``, ``packed`` or ``train``, see
            :func:`resolve_runner`; ``auto`` before the space's own runner is known).

        Raises:
            SettingError: ``resume`` with ``fresh`` or another ``name``, a count below 1,
                failures below -1, negative CPUs or GPUs per worker, a placement timeout of
                0 s or less, or ``actor`` with settings only ``train`` has.
            ConfigError: an unknown runner.
        """
        if self.resume is not None and self.fresh:
            raise SettingError("{resume} and {fresh} contradict each other")
        if self.resume is not None and self.name is not None and self.resume != self.name:
            raise SettingError(
                f"{{resume}} {self.resume} and {{name}} {self.name} name different searches"
            )
        for key in ("num_samples", "max_concurrent", "workers_per_trial", "pack_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise SettingError(f"{{{key}}} must be at least 1, got {value}")
        for key in ("max_failures", "worker_failures"):
            if getattr(self, key) < -1:
                raise SettingError(
                    f"{{{key}}} must be -1 (no limit) or more, got {getattr(self, key)}"
                )
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise SettingError(
                "{cpus_per_worker} and {gpus_per_worker} cannot be negative, got "
                f"{self.cpus_per_worker:g} and {self.gpus_per_worker:g}"
            )
        asked = space_runner if self.runner == "auto" and space_runner else self.runner
        runner = resolve_runner(asked, self.workers_per_trial, self.worker_failures)
        if (self.pack_size or space_pack_size) is not None and runner != "packed":
            raise SettingError(
                f"{{pack_size}} sets the trials of a pack, but {{runner}} is {runner}; "
                "use {runner} packed"
            )
        if self.pack_recompute and runner != "packed":
            raise SettingError(
                f"{{pack_recompute}} is a setting of packs, but {{runner}} is {runner}; "
                "use {runner} packed"
            )
        if not self.placement_timeout > 0:
            raise SettingError(
                f"{{placement_timeout}} must be more than 0 seconds, got {self.placement_timeout:g}"
            )
        return runner

    def resolved_pack_size(self, space_pack_size: int | None = None) -> int:
        """Trials per pack: the option's, else the space's, else :data:`DEFAULT_PACK_SIZE`."""
        return self.pack_size or space_pack_size or DEFAULT_PACK_SIZE

    def command_line(self) -> list[str]:
        """The options as ``ipt-ray search`` arguments: ``--flag=value`` for each option that
        is set (None and False are left out), ``--set=KEY=VALUE`` per override (values as YAML,
        which the command parses back to the same value)."""
        args: list[str] = []
        for key in self.names():
            value = getattr(self, key)
            flag = "--" + key.replace("_", "-")
            if key == "set":
                args += [f"{flag}={k}={_yaml_scalar(v)}" for k, v in value.items()]
            elif isinstance(value, bool):
                args += [flag] if value else []
            elif value is not None:
                args.append(f"{flag}={value}")
        return args


def _yaml_scalar(value: Any) -> str:
    """``value`` as YAML on one line (``yaml.safe_load`` gives it back)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def resolve_runner(runner: str, workers: int, worker_failures: int) -> str:
    """``actor``, ``packed`` or ``train`` for a search's settings.

    ``auto`` is ``actor`` for one worker per trial and ``train`` when a trial has several
    workers or ``worker_failures`` asks Ray Train to restart them.

    Raises:
        ConfigError: an unknown runner.
        SettingError: ``actor`` with settings only ``train`` has.
    """
    if runner not in RUNNERS:
        raise unknown_choice("runner", runner, RUNNERS)
    if runner == "auto":
        return "actor" if workers == 1 and worker_failures == 0 else "train"
    if runner in ("actor", "packed") and workers > 1:
        raise SettingError(
            f"{{runner}} {runner} trains each trial in one process, but {{workers_per_trial}} "
            f"is {workers}; use {{runner}} train (Ray Train DDP) or auto"
        )
    if runner in ("actor", "packed") and worker_failures != 0:
        raise SettingError(
            f"{{worker_failures}} restarts Ray Train workers, which {{runner}} {runner} has "
            "none of; use {max_failures} (Tune restarts the trial from its last checkpoint) "
            "or {runner} train"
        )
    return runner


__all__ = [
    "DEFAULT_PACK_SIZE",
    "DEFAULT_PLACEMENT_TIMEOUT_S",
    "DEFAULT_STALL_TIMEOUT_S",
    "RUNNERS",
    "SearchOptions",
    "resolve_runner",
]
