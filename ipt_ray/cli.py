"""The ``ipt-ray`` command.

Every command turns a :class:`~ipt_ray.errors.UserError` into one line on stderr and exit
status 2, with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ipt_ray.errors import ConfigError, UserError
from ipt_ray.tuning.options import DEFAULT_PLACEMENT_TIMEOUT_S, DEFAULT_STALL_TIMEOUT_S

app = typer.Typer(
    name="ipt-ray",
    help="Instance-wise prompt tuning on frozen language models, searched with Ray Tune + "
    "Optuna and tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _root() -> None:
    """Instance-wise prompt tuning on frozen language models (see `ipt-ray COMMAND --help`)."""


def fail(message: str) -> None:
    """Print ``ipt-ray: error: <message>`` (one line) and exit with status 2."""
    line = " ".join(str(message).split())
    print(f"ipt-ray: error: {line}", file=sys.stderr)
    raise SystemExit(2)


def user_errors(func: F) -> F:
    """Decorator: UserError (and KeyboardInterrupt) end the command cleanly."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("ipt-ray: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]


def quiet_libraries() -> None:
    """Silence progress bars and info logs of transformers/datasets (our output is the report)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; values parsed as YAML scalars (1, 0.5, true, cnn)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def split_settings(
    generator: str, assignments: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``--set`` keys to generator knobs or TrainConfig fields.

    Raises:
        ConfigError: a key that is neither, with a suggestion.
    """
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.errors import did_you_mean
    from ipt_ray.generators import get_config_class

    knobs = set(get_config_class(generator).knobs()) - {"prompt_length"}
    fields = set(TrainConfig.field_names()) - {"generator_options"}
    options: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for key, value in assignments.items():
        if key in knobs:
            options[key] = value
        elif key in fields:
            settings[key] = value
        else:
            allowed = sorted(knobs | fields)
            raise ConfigError(
                f"--set {key}: not a knob of generator {generator!r} nor a training setting"
                f"{did_you_mean(key, allowed)}; knobs: {', '.join(sorted(knobs))}"
            )
    return options, settings


def prepare_out_dir(out: Path) -> Path:
    """Check ``--out`` before training: absent or empty, and its parent writable."""
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty folder; pick a new path")
    # Nothing is created here: a command refused later leaves no folder behind. The nearest
    # existing folder must let us create the rest.
    existing = next(p for p in out.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"--out {out}: the folder {existing} is not writable")
    return out


def format_epoch(epoch: int, epochs: int, metrics: dict[str, float], metric: str) -> str:
    from ipt_ray import constants as C

    parts = [f"epoch {epoch}/{epochs}", f"train_loss {metrics[C.TRAIN_LOSS]:.4f}"]
    for key in ("val_accuracy", "val_f1_macro", f"val_{metric}"):
        if key in metrics and key not in " ".join(parts):
            parts.append(f"{key} {metrics[key]:.4f}")
    parts.append(f"{metrics[C.EPOCH_SECONDS]:.1f}s")
    parts.append(f"{metrics[C.SAMPLES_PER_SECOND]:.0f} samples/s")
    return "  ".join(parts)


@app.command()
@user_errors
def train(
    task: Annotated[
        str, typer.Option(help="task name (mr, bbc-news, glue/sst2, ...) or data file")
    ] = "mr",
    model: Annotated[
        str, typer.Option(help="backbone: hub id, local folder or alias 'minilm'")
    ] = "minilm",
    generator: Annotated[
        str, typer.Option(help="task, prefix, ipt-lookup, ipt-encoder or idpg")
    ] = "task",
    prompt_length: Annotated[int, typer.Option(help="prompt vectors P")] = 16,
    prompt_layer: Annotated[
        int,
        typer.Option(
            help="layer whose input the prompt joins: 0 = the embeddings, k > 0 = a late "
            "prompt after k frozen layers (their output is cached)"
        ),
    ] = 0,
    lr: Annotated[
        float | None, typer.Option(help="generator learning rate (default: the generator's)")
    ] = None,
    head_lr: Annotated[float | None, typer.Option(help="head learning rate (default 1e-2)")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 3,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 32,
    max_length: Annotated[int, typer.Option(help="max tokens per instance")] = 64,
    seed: Annotated[int, typer.Option(help="seed of init, shuffling and splits")] = 0,
    max_samples: Annotated[int | None, typer.Option(help="cap every split (quick runs)")] = None,
    pooling: Annotated[str | None, typer.Option(help="first, mean or last")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    text_column: Annotated[str, typer.Option(help="data files: text column")] = "text",
    text_pair_column: Annotated[
        str, typer.Option(help="data files: 2nd text column")
    ] = "text_pair",
    label_column: Annotated[str, typer.Option(help="data files: label column")] = "label",
    labels: Annotated[
        str | None, typer.Option(help="data files: comma-separated label set, in id order")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE for a generator knob or training setting (repeat)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the best checkpoint to this folder")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON summary as the last line")
    ] = False,
) -> None:
    """Train one generator on one task with a frozen backbone (one process, no Ray)."""
    quiet_libraries()
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.training.loop import EpochResult, TrainingRun

    options, settings = split_settings(generator, parse_assignments(set_ or []))
    config = TrainConfig(
        task=task,
        model=model,
        generator=generator,
        prompt_length=prompt_length,
        prompt_layer=prompt_layer,
        lr=lr,
        head_lr=head_lr,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        max_samples=max_samples,
        pooling=pooling,
        device=device,
        generator_options=options,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_names=[x.strip() for x in labels.split(",")] if labels else None,
    )
    config = TrainConfig.from_dict({**config.to_dict(), **settings}).validate()
    out_dir = prepare_out_dir(out) if out is not None else None

    run = TrainingRun(config)
    counts = run.param_counts()
    print(
        f"task {run.task.name} ({len(run.task.train)}/{len(run.task.validation)}/"
        f"{len(run.task.test)} examples, {run.task.num_labels} labels)  model {config.model}  "
        f"generator {config.generator}  trainable {int(counts['trainable_params']):,} "
        f"({100 * counts['trainable_share']:.2f}% of {int(counts['backbone_params']):,})",
        flush=True,
    )

    def report(result: EpochResult, _: TrainingRun) -> None:
        print(
            format_epoch(result.epoch, config.epochs, result.metrics, run.metric_name), flush=True
        )

    result = run.fit(on_epoch_end=report)
    metrics = result.metrics
    print(
        f"best epoch {int(metrics['best_epoch'])}: val_{run.metric_name} "
        f"{metrics['val_' + run.metric_name]:.4f}  test_accuracy {metrics['test_accuracy']:.4f}  "
        f"test_f1_macro {metrics['test_f1_macro']:.4f}"
    )
    if out_dir is not None:
        write_checkpoint(run, out_dir)
        print(f"checkpoint written to {out_dir}")
    if as_json:
        summary = {
            "task": run.task.name,
            "model": config.model,
            "generator": config.generator,
            "config": config.to_dict(),
            **{
                k: (int(v) if k.endswith("_params") or k == "best_epoch" else v)
                for k, v in metrics.items()
            },
            "history": [r.metrics for r in result.history],
            "checkpoint": str(out_dir) if out_dir else None,
        }
        print(json.dumps(summary))


def write_checkpoint(run: Any, out_dir: Path) -> None:
    """Write the best weights + config to ``out_dir`` atomically (temp folder, then rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ipt-ray-", dir=out_dir.parent))
    try:
        if run.best_state is not None:
            run.model.load_trainable_state_dict(run.best_state)
        run.save_checkpoint(tmp, with_train_state=False)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def format_summary_table(summary: Any, limit: int = 10) -> list[str]:
    """The search's top trials as aligned text, in the columns of ``ipt-ray best``."""
    from ipt_ray.tracking.query import TrialRow

    rows = [
        TrialRow.from_params(
            trial.settings or trial.params,
            rank=rank,
            run_id=trial.run_id or trial.trial_id,
            trial_id=trial.trial_id,
            status=trial.status,
            value=trial.value,
            metrics=trial.metrics,
        )
        for rank, trial in enumerate(summary.top[:limit], start=1)
    ]
    return format_rows(rows, summary.metric)


@app.command()
@user_errors
def search(
    space: Annotated[str, typer.Argument(help="a space file, or a shipped space name (demo)")],
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray: none = a local Ray; auto, HOST:PORT or ray://... = run the "
            "driver here against that cluster; http://HEAD:8265 = submit as a Ray Job"
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow: http://HOST:PORT or sqlite:///PATH (default: ./ipt-ray-runs/mlflow.db)"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Ray results and checkpoints: a path shared by all nodes or an s3:// / gs:// "
            "URI (default: ray/ beside a sqlite store, else ./ipt-ray-runs/ray)"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="search name = MLflow experiment")] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="continue the interrupted search NAME (running the same command again does too)"
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="start a new search even if one of this name was interrupted")
    ] = False,
    num_samples: Annotated[int | None, typer.Option(help="trials (default: the space's)")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="trials at once (default: what the cluster fits)")
    ] = None,
    workers_per_trial: Annotated[int, typer.Option(help="DDP workers per trial")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs per worker")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker (0.5 = 2 per GPU)")] = 0.0,
    max_failures: Annotated[
        int, typer.Option(help="re-run a failed trial this often, from its last checkpoint")
    ] = 0,
    worker_failures: Annotated[
        int,
        typer.Option(
            help="restart a trial's workers this often when one dies (a killed process, a lost "
            "node), from the trial's last checkpoint"
        ),
    ] = 0,
    placement_timeout: Annotated[
        float,
        typer.Option(
            help="seconds a trial waits for its Ray Train workers to be placed before it fails "
            "(and --max-failures retries it); raise it where an autoscaler adds nodes"
        ),
    ] = DEFAULT_PLACEMENT_TIMEOUT_S,
    stall_timeout: Annotated[
        float,
        typer.Option(
            help="seconds with trials running but none started or reported, after which the "
            "longest-waiting trial is failed; 0 = never"
        ),
    ] = DEFAULT_STALL_TIMEOUT_S,
    runner: Annotated[
        str,
        typer.Option(
            help="how a trial trains: actor (in Tune's trial process, reused by the next "
            "trial: fast to start, one process per trial), train (a Ray Train TorchTrainer "
            "with --workers-per-trial DDP workers), or auto (actor for 1 worker, else train)"
        ),
    ] = "auto",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a fixed setting of the space, KEY=VALUE (repeat)"),
    ] = None,
    code: Annotated[
        str,
        typer.Option(
            help="with an http:// address: ship this ipt-ray to the cluster "
            "(ship) or use the nodes' own (installed)"
        ),
    ] = "ship",
    wait: Annotated[
        bool, typer.Option(help="with an http:// address: follow the job until it ends")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON summary as the last line")
    ] = False,
) -> None:
    """Search a space with Ray Tune + Optuna TPE (+ ASHA); every trial trained in a reused
    Tune trial process or as a Ray Train job; everything tracked in MLflow."""
    quiet_libraries()
    from ipt_ray.tracking.store import absolute_tracking_uri
    from ipt_ray.tuning import preflight
    from ipt_ray.tuning.api import prepare_search
    from ipt_ray.tuning.api import search as run_search
    from ipt_ray.tuning.options import SettingError
    from ipt_ray.tuning.progress import LineProgress

    options: dict[str, Any] = dict(
        name=name,
        address=address,
        tracking_uri=tracking_uri,
        storage=storage,
        resume=resume,
        fresh=fresh,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        workers_per_trial=workers_per_trial,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_failures=max_failures,
        worker_failures=worker_failures,
        placement_timeout=placement_timeout,
        runner=runner,
        set=parse_assignments(set_ or []),
    )
    try:
        if preflight.is_dashboard_address(address):
            loaded = prepare_search(space, **options)
        else:
            summary = run_search(
                space,
                **options,
                stall_timeout=stall_timeout,
                progress=LineProgress(sys.stderr if as_json else sys.stdout),
            )
    except SettingError as exc:  # the library names settings; here they are flags
        raise UserError(exc.render(lambda key: "--" + key.replace("_", "-"))) from None
    if preflight.is_dashboard_address(address):
        from ipt_ray.cluster.submit import submit_search

        # The job runs in a folder of its own on the cluster: a relative sqlite path would
        # name another store there (and put the Ray results beside that one).
        tracking_uri = absolute_tracking_uri(tracking_uri) if tracking_uri else None
        job_args = [
            f"--{k.replace('_', '-')}={v}"
            for k, v in (
                ("tracking_uri", tracking_uri),
                ("storage", storage),
                ("name", name),
                ("resume", resume),
                ("num_samples", num_samples),
                ("max_concurrent", max_concurrent),
                ("workers_per_trial", workers_per_trial),
                ("cpus_per_worker", cpus_per_worker),
                ("gpus_per_worker", gpus_per_worker),
                ("max_failures", max_failures),
                ("worker_failures", worker_failures),
                ("placement_timeout", placement_timeout),
                ("stall_timeout", stall_timeout),
                ("runner", runner),
            )
            if v is not None
        ]
        job_args += [f"--set={item}" for item in set_ or []] + (["--json"] if as_json else [])
        job_args += ["--fresh"] if fresh else []
        raise SystemExit(
            submit_search(
                loaded,
                address=str(address),
                search_args=job_args,
                tracking_uri=tracking_uri,
                storage=storage,
                as_json=as_json,
                code=code,
                wait=wait,
            )
        )

    print()
    for line in format_summary_table(summary):
        print(line)
    if summary.best is not None:
        best = summary.best
        print(
            f"best: {summary.metric} {best.value:.4f}, test_accuracy "
            f"{best.metrics.get('test_accuracy', float('nan')):.4f} (trial run {best.run_id})"
        )
    print(f"browse: {summary.ui_command}")
    if as_json:
        print(json.dumps(summary.to_dict()))
    if summary.interrupted:
        again = " ".join(shlex.quote(a) for a in ["ipt-ray", *sys.argv[1:]])
        print(
            f"search interrupted; running trials were marked KILLED in MLflow. Resume it "
            f"with the same command ({again}) or --resume {summary.name}",
            file=sys.stderr,
        )
        raise SystemExit(130)


jobs_app = typer.Typer(
    help="Ray Jobs on a cluster: list, status, logs, stop.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
JobAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="the cluster's dashboard, http://HEAD:8265 "
        "(default: $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265)",
    ),
]


def _client(address: str | None) -> tuple[Any, str]:
    from ipt_ray.cluster.submit import default_address, job_client

    where = address or default_address()
    return job_client(where), where


def _job_call(address: str | None, method: str, *args: Any) -> Any:
    """Call ``JobSubmissionClient.<method>(*args)``; its errors become one line (UserError)."""
    from ipt_ray.cluster.submit import explain_job_error

    client, where = _client(address)
    try:
        return getattr(client, method)(*args)
    except Exception as exc:
        raise UserError(explain_job_error(where, exc)) from None


@jobs_app.command("list")
@user_errors
def jobs_list(address: JobAddressOpt = None) -> None:
    """Jobs on the cluster, newest last: id, status, entrypoint."""
    jobs = _job_call(address, "list_jobs")
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        status = str(job.status).rsplit(".", 1)[-1]
        print(f"{job.submission_id or job.job_id}  {status:9s}  {job.entrypoint[:100]}")


@jobs_app.command("status")
@user_errors
def jobs_status(job_id: str, address: JobAddressOpt = None) -> None:
    """A job's status (exit status 0 if it succeeded or runs, 1 if it failed or stopped)."""
    info = _job_call(address, "get_job_info", job_id)
    status = str(info.status).rsplit(".", 1)[-1]
    print(f"{job_id}: {status}" + (f" ({info.message})" if info.message else ""))
    raise SystemExit(0 if status in ("SUCCEEDED", "RUNNING", "PENDING") else 1)


@jobs_app.command("logs")
@user_errors
def jobs_logs(
    job_id: str,
    address: JobAddressOpt = None,
    follow: Annotated[bool, typer.Option(help="keep printing until the job ends")] = False,
) -> None:
    """A job's output."""
    if not follow:
        print(_job_call(address, "get_job_logs", job_id), end="")
        return
    from ipt_ray.cluster.submit import explain_job_error, follow_logs

    client, where = _client(address)
    try:
        follow_logs(client, job_id)
    except Exception as exc:
        raise UserError(explain_job_error(where, exc)) from None


@jobs_app.command("stop")
@user_errors
def jobs_stop(job_id: str, address: JobAddressOpt = None) -> None:
    """Stop a running job (its search marks running trials KILLED in MLflow)."""
    stopped = _job_call(address, "stop_job", job_id)
    print(f"{job_id}: {'stop requested' if stopped else 'not running'}")


TrackingOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow store: http://HOST:PORT or sqlite:///PATH (default: ./ipt-ray-runs/mlflow.db)"
    ),
]
ExperimentOpt = Annotated[str | None, typer.Option(help="search name = MLflow experiment")]


def format_rows(rows: list[Any], metric: str) -> list[str]:
    """Trial rows of ``ipt-ray best`` as aligned text."""
    table = [
        [
            "#",
            "trial run",
            "status",
            "generator",
            "P",
            "lr",
            "knobs",
            metric,
            "test_acc",
            "trainable",
            "share",
        ]
    ]
    for row in rows:
        test = row.metrics.get("test_accuracy")
        count = row.metrics.get("trainable_params")
        share = row.metrics.get("trainable_share")
        table.append(
            [
                str(row.rank),
                row.run_id[:12],
                row.status,
                row.generator,
                "" if row.prompt_length is None else str(row.prompt_length),
                "" if row.lr is None else f"{row.lr:.2g}",
                ", ".join(f"{k}={v}" for k, v in sorted(row.knobs.items())),
                "" if row.value is None else f"{row.value:.4f}",
                "" if test is None else f"{test:.4f}",
                "" if count is None else f"{int(count):,}",
                "" if share is None else f"{100 * share:.2f}%",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


@app.command()
@user_errors
def best(
    experiment: ExperimentOpt = None,
    search: Annotated[str | None, typer.Option(help="the search's parent run id")] = None,
    top: Annotated[int, typer.Option(help="how many trials")] = 10,
    metric: Annotated[
        str | None, typer.Option(help="rank by this metric (default: the search's)")
    ] = None,
    tracking_uri: TrackingOpt = None,
    plot: Annotated[Path | None, typer.Option(help="also write the search's plots here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The top trials of a search from MLflow (the newest search unless named); with two
    objectives, the Pareto front."""
    from ipt_ray.tracking import client_for, find_search, pareto_front, trial_rows

    quiet_libraries()
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if experiment is not None and search is not None:
        raise UserError("give --experiment or --search, not both")
    client, _ = client_for(tracking_uri)
    found = find_search(client, experiment=experiment, search=search)
    rows = trial_rows(client, found, metric=metric)
    front = pareto_front(rows, found.objectives) if len(found.objectives) > 1 else None
    if plot is not None:
        from ipt_ray.tracking.plots import write_search_plots

        written = write_search_plots(rows, found, plot, metric=metric)
    if as_json:
        print(
            json.dumps(
                {
                    "experiment": found.experiment_name,
                    "parent_run_id": found.run_id,
                    "metric": metric or found.metric,
                    "objectives": found.objectives,
                    "trials": [r.to_dict() for r in rows[:top]],
                    "pareto_front": None if front is None else [r.run_id for r in front],
                }
            )
        )
        return
    print(
        f"search {found.experiment_name!r} (parent run {found.run_id}), {len(rows)} trials, "
        f"ranked by {metric or found.metric}:"
    )
    for line in format_rows(rows[:top], metric or found.metric):
        print(line)
    if front is not None:
        names = " and ".join(f"{m} ({d})" for m, d in found.objectives)
        print(f"\nPareto front on {names}:")
        for line in format_rows(front, metric or found.metric):
            print(line)
    if plot is not None:
        print(f"\nplots: {', '.join(str(p) for p in written)}")


@app.command()
@user_errors
def export(
    run_id: Annotated[
        str | None,
        typer.Argument(
            help="a trial run id, a search's parent run id (its best trial), or a checkpoint folder"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="the bundle folder to write (new)")] = None,
    experiment: ExperimentOpt = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format", help="ipt (a bundle) or peft (an adapter for task and prefix winners)"
        ),
    ] = "ipt",
    register: Annotated[
        str | None, typer.Option(help="also register the bundle as a version of this MLflow model")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Export a search's best trial (or the named one) as a portable bundle or PEFT adapter."""
    quiet_libraries()
    if out is None:
        raise UserError("--out DIR is required: the folder to write the bundle to")
    if run_id is not None and experiment is not None:
        raise UserError("give a RUN_ID or --experiment, not both")
    if format_ not in ("ipt", "peft"):
        raise UserError(f"--format must be ipt or peft, got {format_!r}")
    target = prepare_out_dir(out)
    if run_id is not None and Path(run_id).is_dir():
        if register is not None:
            raise UserError("--register needs a run in MLflow, not a checkpoint folder")
        if format_ == "peft":
            from ipt_ray.artifacts.peft import write_peft_adapter

            written = write_peft_adapter(Path(run_id), target)
        else:
            from ipt_ray.artifacts.bundle import write_bundle

            written = write_bundle(Path(run_id), target)
        print(f"exported {run_id} to {written}")
        return
    from ipt_ray.artifacts.export import export as export_run
    from ipt_ray.tracking.query import client_for

    client, uri = client_for(tracking_uri)
    written, winner, version = export_run(
        client, uri, target, run_id=run_id, experiment=experiment, fmt=format_, register=register
    )
    value = (
        ""
        if winner.value is None or winner.search is None
        else (f" ({winner.search.metric} {winner.value:.4f})")
    )
    print(f"exported trial run {winner.run.info.run_id}{value} to {written}")
    if version is not None:
        print(f"registered as model {register!r} version {version}")


@app.command()
@user_errors
def ui(
    tracking_uri: TrackingOpt = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
) -> None:
    """Open the MLflow UI on the local store (bound to 127.0.0.1)."""
    from ipt_ray.tracking.store import default_artifact_root, default_tracking_uri, sqlite_path

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"the runs are on a tracking server: open {uri}")
        return
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise UserError(
            f"no MLflow store at {path}: run a search here first, or pass --tracking-uri"
        )
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    artifacts = default_artifact_root(uri)
    if artifacts is not None:
        # MLflow's default is ./mlartifacts of the current folder: artifacts uploaded through
        # the UI belong beside the store, with the searches' own.
        command += ["--artifacts-destination", str(artifacts)]
    print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    os.execvp(command[0], command)


BundleArg = Annotated[Path, typer.Argument(help="an exported bundle folder (ipt-ray export)")]
InputOpt = Annotated[
    Path | None, typer.Option("--input", help="texts: .txt (one per line), .csv or .jsonl")
]
TextOpt = Annotated[list[str] | None, typer.Option("--text", help="a text (repeat)")]
TextColumnOpt = Annotated[str, typer.Option(help="text column of a .csv/.jsonl input")]
PairColumnOpt = Annotated[
    str | None, typer.Option(help="second-text column (default: text_pair if present)")
]
BackboneOpt = Annotated[
    str | None, typer.Option(help="load this backbone instead of the one the bundle names")
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda")]


def _text_source(
    input_: Path | None, text: list[str] | None
) -> tuple[Path | None, list[str] | None]:
    """``--input`` or ``--text``, exactly one of them."""
    if (input_ is None) == (not text):
        raise UserError("give either --input FILE or one or more --text TEXT")
    return input_, (list(text) if text else None)


def _column_flag(exc: Any) -> UserError:
    """A missing-column error worded with the flag the user passes (``--text-column``)."""
    return UserError(exc.naming(f"--{exc.setting.replace('_', '-')}"))


@app.command()
@user_errors
def predict(
    bundle: BundleArg,
    input_: InputOpt = None,
    text: TextOpt = None,
    output: Annotated[
        Path | None, typer.Option(help="write .csv or .jsonl (default: JSON lines on stdout)")
    ] = None,
    text_column: TextColumnOpt = "text",
    text_pair_column: PairColumnOpt = None,
    backbone: BackboneOpt = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Predict labels and probabilities for texts with an exported bundle (no Ray, no MLflow)."""
    quiet_libraries()
    from ipt_ray.artifacts.predict import predict_file
    from ipt_ray.artifacts.texts import ColumnNotFound

    input_path, texts = _text_source(input_, text)
    try:
        records = predict_file(
            bundle,
            input_path,
            output,
            texts=texts,
            text_column=text_column,
            text_pair_column=text_pair_column,
            batch_size=batch_size,
            backbone=backbone,
            device=device,
        )
    except ColumnNotFound as exc:
        raise _column_flag(exc) from None
    if output is None:
        for record in records:
            print(json.dumps(record))
        return
    print(f"{len(records)} predictions written to {output}")


@app.command()
@user_errors
def prompts(
    bundle: BundleArg,
    output: Annotated[Path, typer.Option(help=".npy (input prompts) or .safetensors (all)")],
    input_: InputOpt = None,
    text: TextOpt = None,
    text_column: TextColumnOpt = "text",
    text_pair_column: PairColumnOpt = None,
    backbone: BackboneOpt = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Write the instance-wise prompt vectors of texts (.npy or .safetensors)."""
    quiet_libraries()
    from ipt_ray.artifacts.predict import prompts_file
    from ipt_ray.artifacts.texts import ColumnNotFound

    input_path, texts = _text_source(input_, text)
    try:
        shapes = prompts_file(
            bundle,
            input_path,
            output,
            texts=texts,
            text_column=text_column,
            text_pair_column=text_pair_column,
            batch_size=batch_size,
            backbone=backbone,
            device=device,
        )
    except ColumnNotFound as exc:
        raise _column_flag(exc) from None
    count = next(iter(shapes.values()))[0]
    print(
        f"prompt vectors of {count} texts written to {output}: "
        + ", ".join(f"{k} {shape}" for k, shape in shapes.items())
    )


cluster_app = typer.Typer(
    help="A local multi-node Ray cluster on this machine (loopback, token auth on).",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")
RootOpt = Annotated[Path, typer.Option(help="folder for the cluster's state, token and logs")]


@cluster_app.command("up")
@user_errors
def cluster_up(
    nodes: Annotated[int, typer.Option(help="nodes: a head and NODES-1 workers")] = 2,
    cpus_per_node: Annotated[int, typer.Option(help="CPUs each node offers")] = 1,
    memory_per_node: Annotated[
        str, typer.Option(help="memory each node offers (4GB, 2GiB)")
    ] = "4GB",
    object_store_memory: Annotated[
        str | None, typer.Option(help="object store per node (default: Ray's share)")
    ] = None,
    root: RootOpt = Path("ipt-ray-runs/cluster"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for every node")] = 90.0,
) -> None:
    """Start a head and NODES-1 worker nodes on 127.0.0.2, each with its own temp dir."""
    from ipt_ray.cluster import start_local_cluster

    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, got {nodes}")
    cluster = start_local_cluster(
        nodes,
        root=root.resolve(),
        cpus_per_node=cpus_per_node,
        memory_per_node=memory_per_node,
        object_store_memory=object_store_memory,
        timeout=timeout,
    )
    print(
        f"{cluster.nodes} nodes up; GCS {cluster.head_address}; dashboard {cluster.dashboard_url}"
    )
    print(f"token file: {cluster.token_file} (the dashboard asks for it once)")
    print("to submit to it from this shell:")
    print(cluster.shell_exports())
    print(f"stop it with: ipt-ray cluster down --root {root}")


@cluster_app.command("down")
@user_errors
def cluster_down(root: RootOpt = Path("ipt-ray-runs/cluster")) -> None:
    """Stop every process of the local cluster started with `cluster up`."""
    from ipt_ray.cluster import stop_local_cluster

    stop_local_cluster(root.resolve())
    print("local cluster stopped")


@cluster_app.command("status")
@user_errors
def cluster_status(root: RootOpt = Path("ipt-ray-runs/cluster")) -> None:
    """Whether the local cluster runs, and Ray's own status."""
    from ipt_ray.cluster import local_cluster_status

    status = local_cluster_status(root.resolve())
    if status.cluster is None:
        print(f"no local cluster under {root}")
        raise SystemExit(1)
    state = "running" if status.running else "degraded"
    print(
        f"{state}: {len(status.alive_pids)}/{len(status.cluster.pids)} node processes, "
        f"{status.nodes_alive} nodes registered; dashboard {status.cluster.dashboard_url}"
    )
    if status.ray_status:
        print(status.ray_status)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
