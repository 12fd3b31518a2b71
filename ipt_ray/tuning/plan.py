"""The Tuner a search runs: how many trials fit at once, Optuna's TPE searcher, ASHA, the
callbacks (MLflow, progress, watchdog, checkpoint keeper), and the parameters logged on the
parent run."""

from __future__ import annotations

import math
from typing import Any

from ipt_ray import constants as C
from ipt_ray.errors import SettingError
from ipt_ray.tracking import (
    SearchTracker,
    TrackingCallback,
)
from ipt_ray.tuning.checkpoint_keeper import CheckpointKeeper
from ipt_ray.tuning.locations import SearchLocations
from ipt_ray.tuning.progress import ProgressFn
from ipt_ray.tuning.progress_callback import ProgressCallback
from ipt_ray.tuning.space import SearchSpace
from ipt_ray.tuning.trial import (
    CHECKPOINT_PATH_KEY,
    TrialSetup,
    trainable,
)
from ipt_ray.tuning.watchdog import (
    SearchWatchdog,
)
from ipt_ray.tuning.worker import CHECKPOINT_SCORE_KEY


def default_max_concurrent(
    workers_per_trial: int, cpus_per_worker: float, gpus_per_worker: float
) -> int:
    """How many trials fit at once into the connected cluster's CPUs (and GPUs).

    Raises:
        SettingError: not even one trial fits.
    """
    import ray

    resources = ray.cluster_resources()
    fits = math.inf
    need_cpu = workers_per_trial * cpus_per_worker
    if need_cpu > 0:
        fits = min(fits, math.floor(resources.get("CPU", 0.0) / need_cpu + 1e-9))
    need_gpu = workers_per_trial * gpus_per_worker
    if need_gpu > 0:
        fits = min(fits, math.floor(resources.get("GPU", 0.0) / need_gpu + 1e-9))
    if fits < 1:
        raise SettingError(
            f"a trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({workers_per_trial} "
            f"workers x {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU) but the cluster has "
            f"{resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs; "
            "lower {workers_per_trial} or {cpus_per_worker}"
        )
    return int(fits) if fits != math.inf else 1


def trial_dirname(trial: Any) -> str:
    """Tune's directory name of a trial: ``trial-<trial id>``."""
    return f"trial-{trial.trial_id}"


def search_params(
    space: SearchSpace,
    *,
    num_samples: int,
    max_concurrent: int,
    setup: TrialSetup,
    address: str | None,
    experiment_path: str,
) -> dict[str, Any]:
    s = space.settings
    out: dict[str, Any] = {
        "space": space.name,
        "space_path": str(space.path.resolve()) if space.path else None,
        "metric": s.metric,
        "mode": s.mode,
        "objectives": ",".join(f"{m}:{d}" for m, d in zip(s.metrics, s.modes, strict=True)),
        "num_samples": num_samples,
        "max_concurrent": max_concurrent,
        "seed": s.seed,
        "scheduler": s.scheduler.type,
        "n_startup_trials": s.n_startup_trials,
        "constant_liar": s.constant_liar,
        "multivariate": s.multivariate,
        "group": s.group,
        "workers_per_trial": setup.workers,
        "runner": setup.runner,
        **(
            {"pack_size": setup.pack_size, "pack_recompute": setup.pack_recompute}
            if setup.runner == "packed"
            else {}
        ),
        "shared_backbone_bytes": setup.backbone.nbytes if setup.backbone else 0,
        "cpus_per_worker": setup.cpus_per_worker,
        "gpus_per_worker": setup.gpus_per_worker,
        "ray_address": address or "local",
        "ray_storage_path": experiment_path,
    }
    if s.scheduler.type == "asha":
        out.update(
            grace_period=s.scheduler.grace_period,
            reduction_factor=s.scheduler.reduction_factor,
            max_t=s.scheduler.max_t,
        )
    out.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    return out


def load_shared_backbone(space: SearchSpace) -> tuple[Any, str, str | None] | None:
    """(backbone, model, revision) to publish for the search, or None when its trials use
    several backbones or one with remote code (each trial then loads its own).

    Raises:
        UserError: the backbone cannot be loaded.
    """
    from ipt_ray.core.backbone import load_backbone

    backbone = space.fixed_backbone()
    if backbone is None or backbone[2]:
        return None
    model, revision, _ = backbone
    net, _ = load_backbone(model, revision=revision)
    return net, model, revision


def build_search_alg(space: SearchSpace, concurrency: int) -> Any:
    """The space's searcher: OptunaSearch (TPE, define-by-run; several objectives when the
    space names them) behind a ConcurrencyLimiter of ``concurrency`` trials."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    settings = space.settings
    multi = settings.objectives is not None and len(settings.objectives) > 1
    searcher = OptunaSearch(
        space=space.define_by_run,
        metric=settings.metrics if multi else settings.metric,
        mode=settings.modes if multi else settings.mode,
        sampler=settings.tpe_sampler(),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=concurrency)


def build_scheduler(space: SearchSpace) -> Any:
    """ASHA on the reported ``epoch`` as the space configures it, or None (``scheduler:
    none``)."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = space.settings.scheduler
    if scheduler.type != "asha":
        return None
    return ASHAScheduler(
        time_attr=C.EPOCH,
        max_t=scheduler.max_t,
        grace_period=scheduler.grace_period,
        reduction_factor=scheduler.reduction_factor,
    )


def build_tuner(
    space: SearchSpace,
    setup: TrialSetup,
    tracker: SearchTracker,
    emit: ProgressFn,
    where: SearchLocations,
    *,
    key: str,
    num_samples: int,
    concurrency: int,
    max_failures: int,
    stall_timeout: float,
) -> Any:
    """The Tuner: :func:`build_search_alg`, :func:`build_scheduler`, the MLflow, progress,
    watchdog and checkpoint-keeping callbacks."""
    import ray.tune

    settings = space.settings
    callbacks = [  # the tracker first: the progress lines read its records
        TrackingCallback(
            tracker,
            to_train_config=space.to_train_config,
            fixed=space.fixed,
            num_samples=num_samples,
            checkpoint_key=CHECKPOINT_PATH_KEY,
            key=key,
        ),
        ProgressCallback(emit, tracker, settings.scheduler.max_t, key=key),
        SearchWatchdog(key, stall_timeout),
        CheckpointKeeper(CHECKPOINT_SCORE_KEY),
    ]
    return ray.tune.Tuner(
        trainable(setup),
        tune_config=ray.tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=num_samples,
            search_alg=build_search_alg(space, concurrency),
            scheduler=build_scheduler(space),
            trial_name_creator=trial_dirname,
            trial_dirname_creator=trial_dirname,
            # The actor runner trains in the trial's process: reusing it is what makes the
            # next trial cheap. Not with the train runner: Tune keeps the actor of an
            # ASHA-stopped trial for reuse while its TorchTrainer still holds the workers'
            # resources, and later trials wait forever.
            reuse_actors=setup.runner in ("actor", "packed"),
        ),
        run_config=ray.tune.RunConfig(
            name=where.experiment_dir,
            storage_path=where.storage_path,
            callbacks=callbacks,
            failure_config=ray.tune.FailureConfig(max_failures=max_failures),
            # The actor runner's checkpoints are Tune's. It keeps the latest (to resume) and
            # the best epoch's, as Ray Train does for the train runner, through
            # CheckpointKeeper: with num_to_keep set, Tune would snapshot the whole
            # experiment after every checkpoint.
            checkpoint_config=ray.tune.CheckpointConfig(
                num_to_keep=None,
                checkpoint_score_attribute=CHECKPOINT_SCORE_KEY,
                checkpoint_score_order="max",
            ),
            verbose=0,
        ),
    )
