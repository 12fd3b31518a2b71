"""Browse a search in MLflow: its trials ranked, the Pareto front of several objectives.

Works against the embedded store and a tracking server alike (plain ``MlflowClient`` calls),
without Ray. A search is its parent run (tag ``ipt_ray.kind=search``); its trials are the
child runs (tag ``mlflow.parentRunId``). A trial's value is its best value of the metric over
its epochs: the ``best_<metric>`` it reported at the end when it finished, otherwise read from
the metric's history (a pruned or failed trial).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ipt_ray import constants as C
from ipt_ray.errors import SettingError, UserError, did_you_mean
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.store import default_tracking_uri, sqlite_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run
    from mlflow.store.entities.paged_list import PagedList

    from ipt_ray.tracking.sqlite_runs import StoredRun

    #: A trial's run as :func:`child_runs` returns it: MLflow's, or read with sqlite3.
    AnyRun = Run | StoredRun

logger = logging.getLogger(__name__)

#: Runs or experiments asked for per MLflow call. Every read of a search pages through all
#: of them: a cap would silently drop trials from ``best``, the plots and ``export``.
PAGE_SIZE = 1000
T = TypeVar("T")

#: Child-run metrics that make up a row beside the ranked value.
ROW_METRICS = (
    "test_accuracy",
    "test_f1_macro",
    C.TRAINABLE_PARAMS,
    C.TRAINABLE_SHARE,
    C.SECONDS_PER_EPOCH,
    S.BEST_PREFIX + C.EPOCH,
)


def _every(fetch: Callable[[str | None], PagedList[T]]) -> list[T]:
    """Every item of a paged MLflow listing: ``fetch(page_token)`` until no token is left."""
    items: list[T] = []
    token: str | None = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def every_run(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
) -> list[Run]:
    """Every run matching ``filter_string`` in ``experiment_ids`` (all pages, MLflow's order)."""
    if not experiment_ids:
        return []
    return _every(
        lambda token: client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=PAGE_SIZE,
            page_token=token,
        )
    )


def every_experiment(client: MlflowClient) -> list[Experiment]:
    """Every active experiment of the store (all pages)."""
    return _every(lambda token: client.search_experiments(max_results=PAGE_SIZE, page_token=token))


@dataclass
class TrialRow:
    """One trial of a search as ``ipt-ray best`` shows it (and the plots draw it).

    ``value`` is the ranked metric's best value over the trial's epochs; ``values`` the
    same per objective of the search. ``started`` (the run's start, Unix ms) and ``params``
    (every param of its run, as MLflow's strings) are known when the row was read from MLflow
    (:func:`trial_rows`); they are not part of :meth:`to_dict`.
    """

    rank: int
    run_id: str
    trial_id: str
    status: str  # finished, pruned, failed, killed, running
    generator: str
    prompt_length: int | None
    lr: float | None
    knobs: dict[str, Any]
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)  # per objective
    started: float | None = None
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The row as ``ipt-ray best --json`` prints it."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _NOT_JSON}

    @property
    def completed(self) -> bool:
        """Finished or pruned, with a finite value: a measurement the search made."""
        return (
            self.status in S.COMPLETED_STATUSES
            and self.value is not None
            and math.isfinite(self.value)
        )

    @classmethod
    def from_params(cls, settings: Mapping[str, Any], /, **fields: Any) -> TrialRow:
        """A row whose generator, prompt length, lr and knobs are read from a trial's settings.

        ``settings`` are the trial's sampled and fixed settings, as MLflow holds them
        (strings) or as Tune gave them (values); a generator's own knobs are
        ``<generator>.<knob>`` and may hold its ``lr`` and ``prompt_length`` when the space
        makes those conditional. ``fields`` are the other :class:`TrialRow` fields.
        """
        generator = str(settings.get("generator", ""))
        knobs = {
            k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith(generator + ".")
        }
        return cls(
            generator=generator,
            prompt_length=_int(settings.get("prompt_length", knobs.pop("prompt_length", None))),
            lr=_float(settings.get("lr", knobs.pop("lr", None))),
            knobs=knobs,
            **fields,
        )


_NOT_JSON = ("started", "params")


@dataclass
class Search:
    """A search's parent run and its settings."""

    experiment_name: str
    experiment_id: str
    run: Run
    metric: str
    mode: str
    objectives: list[tuple[str, str]]

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)


def client_for(tracking_uri: str | None) -> tuple[MlflowClient, str]:
    """An MlflowClient for ``tracking_uri`` (default: ``./ipt-ray-runs/mlflow.db``).

    Raises:
        UserError: a local store that does not exist (nothing was searched here), or a
            server that cannot be reached.
    """
    from ipt_ray.tracking.store import check_sqlite_file, check_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise SettingError(
            f"no MLflow store at {path}: run a search here first, or pass {{tracking_uri}}"
        )
    if path is None:
        check_tracking_uri(uri)
    else:
        check_sqlite_file(path)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def _objectives(run: Run) -> tuple[str, str, list[tuple[str, str]]]:
    params = run.data.params
    metric, mode = params.get("metric", "val_accuracy"), params.get("mode", "max")
    pairs = [tuple(p.split(":", 1)) for p in params.get("objectives", "").split(",") if ":" in p]
    return metric, mode, [(m, d) for m, d in pairs] or [(metric, mode)]


def find_search(
    client: MlflowClient, *, experiment: str | None = None, search: str | None = None
) -> Search:
    """The search named by its parent run id, else the newest search of an experiment, else
    the newest search in the store.

    Raises:
        UserError: unknown experiment or run, a run that is not a search, or no search.
    """
    if search is not None:
        run = get_run(client, search)
        kind = run.data.tags.get(S.TAG_KIND)
        if kind != S.KIND_SEARCH:
            parent = run.data.tags.get(S.TAG_PARENT_RUN)
            hint = f"; it is a trial of search {parent}" if parent else ""
            raise UserError(f"run {search} is not a search (parent) run{hint}")
        exp = client.get_experiment(run.info.experiment_id)
        metric, mode, objectives = _objectives(run)
        return Search(exp.name, exp.experiment_id, run, metric, mode, objectives)
    experiment_ids: list[str]
    if experiment is not None:
        named = client.get_experiment_by_name(experiment)
        if named is None:
            names = [e.name for e in every_experiment(client)]
            raise UserError(
                f"unknown experiment {experiment!r}{did_you_mean(experiment, names)}; "
                f"experiments in this store: {', '.join(sorted(names)) or 'none'}"
            )
        experiment_ids = [named.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in every_experiment(client)]
    runs = (
        client.search_runs(
            experiment_ids,
            filter_string=f"tags.`{S.TAG_KIND}` = '{S.KIND_SEARCH}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiment_ids
        else []
    )
    if not runs:
        where = f"experiment {experiment!r}" if experiment else "this store"
        raise UserError(f"no ipt-ray search in {where}")
    run = runs[0]
    exp = client.get_experiment(run.info.experiment_id)
    metric, mode, objectives = _objectives(run)
    return Search(exp.name, exp.experiment_id, run, metric, mode, objectives)


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run ``run_id``, or the one run whose id starts with it (``ipt-ray best`` prints
    12 characters; at least 6 are needed).

    Raises:
        UserError: no such run, or a prefix that several runs share.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        pass
    prefix = run_id.lower()
    if 6 <= len(prefix) < 32 and all(c in "0123456789abcdef" for c in prefix):
        experiments = [e.experiment_id for e in every_experiment(client)]
        runs = (
            client.search_runs(
                experiments, filter_string=f"attributes.run_id LIKE '{prefix}%'", max_results=2
            )
            if experiments
            else []
        )
        if len(runs) == 1:
            return runs[0]
        if runs:
            raise UserError(f"run id {run_id!r} starts several runs' ids; give more of it")
    raise UserError(f"no run {run_id!r} in this MLflow store")


def trial_status(run: AnyRun) -> str:
    """The trial status (:data:`~ipt_ray.tracking.schema.STATUSES`) of a trial's run."""
    return S.status_of(run.info.status, run.data.tags)


def best_value(client: MlflowClient, run: AnyRun, metric: str, mode: str) -> float | None:
    """The best value of ``metric`` over the run's epochs (None if never logged)."""
    summary = S.logged_number(run.data, S.BEST_PREFIX + metric)
    if summary is not None:
        return summary
    if metric not in run.data.metrics:
        return None
    history = [m.value for m in client.get_metric_history(run.info.run_id, metric)]
    history = [v for v in history if not math.isnan(v)]
    if not history:
        return None
    return max(history) if mode == "max" else min(history)


def metric_mode(search: Search, metric: str) -> str:
    """``max`` or ``min`` for ``metric``: the search's direction for its objectives, else
    :func:`ipt_ray.tracking.schema.metric_direction`."""
    objectives = dict(search.objectives)
    if metric in objectives:
        return objectives[metric]
    if metric == search.metric:
        return search.mode
    return S.metric_direction(metric)


def child_runs(client: MlflowClient, search: Search) -> Sequence[AnyRun]:
    """The trial runs of ``search`` (its child runs), in MLflow's order.

    From a local SQLite store they are read with :mod:`sqlite3`
    (:mod:`ipt_ray.tracking.sqlite_runs`: the same runs, without MLflow's ORM), else, or if
    that store's tables are not as expected, through ``search_runs``.
    """
    uri = getattr(client, "tracking_uri", None)
    path = sqlite_path(uri) if isinstance(uri, str) else None
    if path is not None:
        from ipt_ray.tracking import sqlite_runs

        try:
            return sqlite_runs.child_runs(path, search.experiment_id, search.run_id)
        except sqlite3.Error as exc:
            logger.debug("reading %s with sqlite3 failed (%s): through MLflow", path, exc)
    return every_run(
        client, [search.experiment_id], f"tags.`{S.TAG_PARENT_RUN}` = '{search.run_id}'"
    )


def trial_rows(
    client: MlflowClient, search: Search, *, metric: str | None = None
) -> list[TrialRow]:
    """Every trial of ``search``, best first by ``metric`` (default: the search's).

    Raises:
        UserError: ``metric`` was given and no trial logged it.
    """
    runs = child_runs(client, search)
    if metric is not None and runs:
        logged = {k for run in runs for k in run.data.metrics}
        summaries = {k for run in runs for k in run.data.tags if k.startswith(S.BEST_PREFIX)}
        if metric not in logged and S.BEST_PREFIX + metric not in logged | summaries:
            names = sorted(k for k in logged if not k.startswith(S.BEST_PREFIX))
            raise UserError(
                f"no trial of search {search.run_id} logged the metric {metric!r}"
                f"{did_you_mean(metric, names)}; logged: {', '.join(names)}"
            )
    metric = metric or search.metric
    mode = metric_mode(search, metric)
    rows = []
    for run in runs:
        values = {m: best_value(client, run, m, d) for m, d in search.objectives}
        rows.append(
            TrialRow.from_params(
                run.data.params,
                rank=0,
                run_id=run.info.run_id,
                trial_id=run.data.tags.get(S.TAG_TRIAL_ID, ""),
                status=trial_status(run),
                value=values.get(metric)
                if metric in values
                else best_value(client, run, metric, mode),
                metrics={
                    k: v for k in ROW_METRICS if (v := S.logged_number(run.data, k)) is not None
                },
                values=values,
                started=float(run.info.start_time or 0),
                params=dict(run.data.params),
            )
        )
    sign = -1.0 if mode == "max" else 1.0
    # Trials that failed or were killed rank after those that finished (as in export).
    rows.sort(
        key=lambda r: (
            r.value is None,
            r.status not in S.COMPLETED_STATUSES,
            sign * (r.value or 0.0),
        )
    )
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    return rows


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
