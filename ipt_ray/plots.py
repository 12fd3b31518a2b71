"""Plots of a search from its MLflow records: history, importances, parallel coordinates and
the accuracy / size trade-off.

Needs: the rows of :func:`ipt_ray.best.trial_rows` and the :class:`~ipt_ray.best.Search`
(optionally the ``MlflowClient``, for the trials' start order and their full params);
``matplotlib`` (the ``plots`` extra). Provides: four PNG files, each titled with the search
name, written with matplotlib's Agg canvas (no display, no pyplot state):

- ``optimization_history.png``: every trial in start order against its value (the best value
  of the metric over its epochs), the best-so-far line over the trials ``export`` can pick
  (finished and pruned), pruned/failed/killed trials drawn with their own markers; trials
  that never reported a value sit on the bottom edge.
- ``param_importances.png``: importances of the searched parameters for the metric, from an
  Optuna study rebuilt in memory (see :func:`param_importances`).
- ``parallel_coordinates.png``: one line per completed trial across the searched parameters
  that every completed trial has, and the metric; colored by value, pruned trials dashed.
- ``accuracy_vs_params.png``: ``test_accuracy`` (the metric unless every completed trial has
  it: pruned trials never reach the test split) against the trainable parameters (log
  scale), one marker per generator, the Pareto front (best score, fewest parameters) as a
  step line.

"Completed" trials are the finished and the pruned ones with a value: an ASHA-stopped trial is
a measurement too (it was stopped for scoring low), and ``export`` may pick it. Failed,
killed and running trials only appear in the history.

When a plot has nothing to show (fewer than 2 completed trials for importances, no completed
trial, no trial with a parameter count), its file is still written and says why in the
middle of the figure: the set of files is always the same four.

No Ray here, and MLflow only through the client passed in.
"""

from __future__ import annotations

import math
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray import constants as C
from ipt_ray.best import metric_mode
from ipt_ray.errors import UserError

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from ipt_ray.best import Search, TrialRow

HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"
PARALLEL_PNG = "parallel_coordinates.png"
TRADEOFF_PNG = "accuracy_vs_params.png"
PLOT_FILES = (HISTORY_PNG, IMPORTANCES_PNG, PARALLEL_PNG, TRADEOFF_PNG)
#: Artifact folder of the parent run that :func:`log_search_plots` writes to.
PLOTS_ARTIFACTS = "plots"

COMPLETED = ("finished", "pruned")
#: A numeric parameter is drawn (and sampled, for importances) on a log scale when its
#: positive values span more than this ratio.
LOG_RATIO = 10.0
_FIGSIZE = (8.0, 5.0)
_DPI = 100
_STATUS_STYLE: dict[str, dict[str, Any]] = {
    "finished": {"marker": "o", "color": "tab:blue"},
    "pruned": {"marker": "v", "color": "tab:orange"},
    "failed": {"marker": "x", "color": "tab:red"},
    "killed": {"marker": "x", "color": "tab:gray"},
    "running": {"marker": ".", "color": "tab:gray"},
}
_GENERATOR_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_RAY_TRIAL_INDEX = re.compile(r"_(\d+)$")  # Ray trial ids end in a creation counter: a1b2_00003


@dataclass
class _Trial:
    """What the plots need of one trial (from its row, and its run when a client is given)."""

    row: TrialRow
    order: tuple[float, int]  # start time (ms), then the row's position
    params: dict[str, str] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.row.status in COMPLETED and _finite(self.row.value)


@dataclass(frozen=True)
class ParamAxis:
    """How one searched parameter is read from MLflow's strings and drawn.

    ``kind`` is ``int``, ``float`` or ``categorical``; ``log`` only for positive floats that span
    more than :data:`LOG_RATIO`; ``choices`` the seen values of a categorical, sorted.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[str, ...] = ()

    def value(self, text: str) -> Any:
        """The parameter value of the MLflow string ``text`` (int, float or the string)."""
        if self.kind == "int":
            return int(float(text))
        if self.kind == "float":
            return float(text)
        return text

    def position(self, text: str) -> float:
        """Where ``text`` sits on a [0, 1] axis (log-scaled, or the category's index)."""
        if self.kind == "categorical":
            return self.choices.index(text) / max(1, len(self.choices) - 1)
        low, high, x = self.low, self.high, float(text)
        if self.log:
            low, high, x = math.log10(low), math.log10(high), math.log10(x)
        return 0.5 if high == low else (x - low) / (high - low)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """Optuna's distribution over the seen values."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log)
        return CategoricalDistribution(list(self.choices))

    def ticks(self) -> list[tuple[float, str]]:
        """(position, label) pairs for the axis."""
        if self.kind == "categorical":
            return [(self.position(c), c) for c in self.choices]
        if self.low == self.high:
            return [(0.5, _number_label(self.low))]
        if self.log:
            mid = 10 ** ((math.log10(self.low) + math.log10(self.high)) / 2)
        else:
            mid = (self.low + self.high) / 2
        if self.kind == "int":
            return [
                (self.position(str(v)), str(int(v)))
                for v in sorted({self.low, round(mid), self.high})
            ]
        return [(self.position(repr(v)), _number_label(v)) for v in (self.low, mid, self.high)]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _number_label(value: float) -> str:
    return f"{value:.3g}"


def _is_learning_rate(name: str) -> bool:
    """``lr``, ``head_lr``, ``<generator>.lr``: sampled on a log scale by convention."""
    return name.rsplit(".", 1)[-1] == "lr" or name.endswith("_lr")


def _as_number(text: str) -> float | None:
    if text.strip().lower() in ("true", "false", "nan", "inf", "-inf", "infinity"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def infer_axis(name: str, texts: Sequence[str]) -> ParamAxis:
    """The :class:`ParamAxis` of a parameter seen with the MLflow strings ``texts``.

    Integers -> ``int``; other numbers -> ``float`` (log when positive and spanning more than
    :data:`LOG_RATIO`, and always for learning rates); anything else (booleans, names,
    ``None``, a mix) -> ``categorical``.
    """
    numbers = [_as_number(t) for t in texts]
    if texts and all(n is not None for n in numbers):
        values = [float(n) for n in numbers if n is not None]
        low, high = min(values), max(values)
        if all(re.fullmatch(r"[+-]?\d+", t.strip()) for t in texts):
            return ParamAxis(name, "int", low, high)
        log = low > 0 and (high / low > LOG_RATIO or _is_learning_rate(name))
        return ParamAxis(name, "float", low, high, log=log)
    return ParamAxis(name, "categorical", choices=tuple(sorted(set(texts))))


def _row_params(row: TrialRow) -> dict[str, str]:
    """The searched-looking params of a row, as MLflow strings (when no client is given)."""
    out = {"generator": row.generator}
    if row.prompt_length is not None:
        out["prompt_length"] = str(row.prompt_length)
    if row.lr is not None:
        out["lr"] = repr(row.lr)
    out.update({f"{row.generator}.{k}": str(v) for k, v in row.knobs.items()})
    return out


def _ray_index(trial_id: str) -> int | None:
    match = _RAY_TRIAL_INDEX.search(trial_id)
    return int(match.group(1)) if match else None


def _trials(rows: Sequence[TrialRow], search: Search, client: MlflowClient | None) -> list[_Trial]:
    """The rows in start order, with their params (all of them when a client is given).

    Without a client the order is Ray's trial counter (the ``_00003`` suffix of trial ids),
    else the rows' own order.
    """
    runs: dict[str, Any] = {}
    if client is not None:
        found = client.search_runs(
            [search.experiment_id],
            filter_string=f"tags.`{C.TAG_PARENT_RUN}` = '{search.run_id}'",
            max_results=10_000,
        )
        runs = {run.info.run_id: run for run in found}
    trials = []
    for position, row in enumerate(rows):
        run = runs.get(row.run_id)
        if run is not None:
            start = float(run.info.start_time or 0)
            params = dict(run.data.params)
        else:
            index = _ray_index(row.trial_id)
            start = float(index) if index is not None else 0.0
            params = _row_params(row)
        trials.append(_Trial(row, (start, position), params))
    if client is None and any(_ray_index(t.row.trial_id) is None for t in trials):
        trials = [_Trial(t.row, (0.0, i), t.params) for i, t in enumerate(trials)]
    return sorted(trials, key=lambda t: t.order)


def searched_axes(trials: Sequence[_Trial]) -> list[ParamAxis]:
    """The parameters every completed trial has and that take more than one value among them
    (what the search varied; conditional generator knobs are left out), ``generator`` first."""
    done = [t for t in trials if t.completed]
    if not done:
        return []
    names = set(done[0].params)
    for trial in done[1:]:
        names &= set(trial.params)
    varied = [n for n in names if len({t.params[n] for t in done}) > 1]
    order = {"generator": 0, "lr": 1, "prompt_length": 2}
    varied.sort(key=lambda n: (order.get(n, 3), n))
    return [infer_axis(n, [t.params[n] for t in done]) for n in varied]


# -- figures ----------------------------------------------------------------------------------
def _figure() -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'ipt-ray[plots]'") from None
    return Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _note(ax: Axes, text: str) -> None:
    """A message in the middle of an empty plot."""
    ax.set_axis_off()
    ax.text(
        0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=12
    )


def plot_history(trials: Sequence[_Trial], title: str, metric: str, mode: str, path: Path) -> Path:
    """``optimization_history.png``: see the module docstring."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: optimization history")
    if not trials:
        _note(ax, "no trials")
        return _save(fig, path)
    xs = list(range(1, len(trials) + 1))
    for status, style in _STATUS_STYLE.items():
        with_value = [
            (x, float(t.row.value))
            for x, t in zip(xs, trials, strict=True)
            if t.row.status == status and t.row.value is not None and math.isfinite(t.row.value)
        ]
        without = [
            x
            for x, t in zip(xs, trials, strict=True)
            if t.row.status == status and not _finite(t.row.value)
        ]
        count = len(with_value) + len(without)
        if not count:
            continue
        label = f"{status} ({count})"
        if with_value:
            ax.scatter(
                [x for x, _ in with_value],
                [v for _, v in with_value],
                label=label,
                zorder=3,
                **style,
            )
            label = "_"  # one legend entry per status
        if without:  # no value: on the bottom edge of the axes
            ax.scatter(
                without,
                [0.0] * len(without),
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                alpha=0.6,
                label=label,
                zorder=3,
                **style,
            )
    best: float | None = None
    steps_x, steps_y = [], []
    for x, trial in zip(xs, trials, strict=True):
        value = trial.row.value
        if (
            trial.completed
            and value is not None
            and (best is None or (value > best if mode == "max" else value < best))
        ):
            best = value
        if best is not None:
            steps_x.append(x)
            steps_y.append(best)
    if steps_x:
        ax.step(
            steps_x,
            steps_y,
            where="post",
            color="tab:green",
            label=f"best so far ({mode})",
            zorder=2,
        )
    ax.set_xlabel("trial (in start order)")
    ax.set_ylabel(f"{metric} (best over epochs)")
    ax.set_xlim(0.5, len(trials) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def param_importances(
    trials: Sequence[_Trial], axes: Sequence[ParamAxis], mode: str
) -> tuple[dict[str, float], str]:
    """Importances (summing to 1, largest first) of ``axes`` for the trials' values, and the
    evaluator's name.

    The completed trials become an Optuna study in memory (``create_trial`` with the inferred
    distributions). The evaluator is fANOVA (Optuna's, on a seeded random forest of
    scikit-learn: stable on the few dozen trials of a search, and scikit-learn is installed
    with MLflow); where scikit-learn cannot be imported, PED-ANOVA (numpy only; noisy below a
    few dozen trials, as its top quantile then holds one or two trials).

    Raises:
        ValueError: fewer than 2 completed trials, or no parameter that varies.
        RuntimeError: every trial scored the same (nothing to attribute).
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
    from optuna.trial import create_trial

    done = [t for t in trials if t.completed]
    if len(done) < 2:
        raise ValueError(f"not enough completed trials ({len(done)}; at least 2)")
    if not axes:
        raise ValueError("no searched parameter varies among the completed trials")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    distributions = {a.name: a.distribution() for a in axes}
    for trial in done:
        study.add_trial(
            create_trial(
                params={a.name: a.value(trial.params[a.name]) for a in axes},
                distributions=distributions,
                value=trial.row.value,
            )
        )
    evaluator: optuna.importance.BaseImportanceEvaluator
    try:
        import sklearn  # noqa: F401

        evaluator, name = FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        evaluator, name = PedAnovaImportanceEvaluator(), "PED-ANOVA"
    if len({t.row.value for t in done}) == 1:
        raise RuntimeError("every completed trial has the same value")
    with warnings.catch_warnings():  # Optuna's warnings about small studies: said on the plot
        warnings.simplefilter("ignore")
        raw = evaluator.evaluate(study, params=[a.name for a in axes])
    total = sum(float(v) for v in raw.values())
    if not math.isfinite(total) or total <= 0:
        raise RuntimeError(f"{name} attributes nothing to any parameter")
    scores = {k: float(v) / total for k, v in raw.items()}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1])), name


def plot_importances(
    trials: Sequence[_Trial],
    axes: Sequence[ParamAxis],
    title: str,
    metric: str,
    mode: str,
    path: Path,
) -> Path:
    """``param_importances.png``: see :func:`param_importances`."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: parameter importances for {metric}")
    try:
        scores, evaluator = param_importances(trials, axes, mode)
    except (ValueError, RuntimeError) as exc:
        _note(ax, f"no importances: {exc}")
        return _save(fig, path)
    names = list(scores)[::-1]  # largest on top
    values = [scores[n] for n in names]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=9)
    n = sum(t.completed for t in trials)
    ax.set_xlabel(f"importance ({evaluator} over {n} completed trials; sums to 1)")
    ax.set_xlim(0, max(1.0, max(values) * 1.15))
    skipped = sorted({k for t in trials if t.completed for k in t.params} - {a.name for a in axes})
    knobs = [k for k in skipped if "." in k and not k.startswith("fixed.")]
    if knobs:
        ax.text(
            1.0,
            -0.16,
            "left out (not in every trial, or constant): "
            + ", ".join(knobs[:6])
            + (" ..." if len(knobs) > 6 else ""),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="dimgray",
        )
    return _save(fig, path)


def plot_parallel(
    trials: Sequence[_Trial], axes: Sequence[ParamAxis], title: str, metric: str, path: Path
) -> Path:
    """``parallel_coordinates.png``: see the module docstring."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: parallel coordinates")
    done = [t for t in trials if t.completed]
    if not done:
        _note(ax, "no completed trial to draw")
        return _save(fig, path)
    values = [float(t.row.value) for t in done if t.row.value is not None]
    low, high = min(values), max(values)
    value_axis = ParamAxis(metric, "float", low, high)
    columns = [*axes, value_axis]
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-12)
    cmap = colormaps["viridis"]
    xs = list(range(len(columns)))
    for trial, value in sorted(zip(done, values, strict=True), key=lambda tv: tv[1]):
        ys = [a.position(trial.params[a.name]) for a in axes]
        ys.append(value_axis.position(repr(value)))
        ax.plot(
            xs,
            ys,
            color=cmap(norm(value)),
            linewidth=1.5,
            alpha=0.85,
            linestyle="--" if trial.row.status == "pruned" else "-",
            marker="o",
            markersize=3,
        )
    for x, column in zip(xs, columns, strict=True):
        ax.axvline(x, color="black", linewidth=0.8)
        for y, label in column.ticks():
            ax.text(
                x + 0.03,
                y,
                label,
                fontsize=8,
                va="center",
                ha="left",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
            )
    ax.set_xticks(
        xs,
        [a.name + (" (log)" if a.log else "") for a in axes] + [metric],
        rotation=20 if len(columns) > 4 else 0,
    )
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.5 if len(columns) > 1 else 0.8)
    ax.set_ylim(-0.08, 1.08)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if not axes:
        ax.text(
            0.5,
            1.0,
            "no searched parameter varies among the completed trials",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label(f"{metric} (pruned trials dashed)")
    return _save(fig, path)


def front_points(points: Sequence[tuple[float, float]], mode: str) -> list[tuple[float, float]]:
    """The (size, score) points no other point beats: as small or smaller and as good or
    better, one of them strictly. Sorted by size."""
    sign = 1.0 if mode == "max" else -1.0
    front = []
    for x, y in points:
        dominated = any(
            qx <= x and sign * qy >= sign * y and (qx < x or sign * qy > sign * y)
            for qx, qy in points
        )
        if not dominated:
            front.append((x, y))
    return sorted(set(front))


def plot_tradeoff(trials: Sequence[_Trial], title: str, metric: str, mode: str, path: Path) -> Path:
    """``accuracy_vs_params.png``: see the module docstring."""
    fig = _figure()
    ax = fig.add_subplot()
    done = [t for t in trials if t.completed]
    # Test accuracy only when every completed trial has it (pruned trials never reach the
    # test split): one score per axis, never val and test mixed.
    use_test = bool(done) and all(_finite(t.row.metrics.get("test_accuracy")) for t in done)
    y_name, y_mode = ("test_accuracy", "max") if use_test else (metric, mode)
    ax.set_title(f"{title}: {y_name} vs trainable parameters")

    def y_of(trial: _Trial) -> float | None:
        return trial.row.metrics.get("test_accuracy") if use_test else trial.row.value

    drawn = [
        t for t in done if _finite(y_of(t)) and (t.row.metrics.get(C.TRAINABLE_PARAMS) or 0) > 0
    ]
    if not drawn:
        _note(ax, f"no completed trial with {y_name} and {C.TRAINABLE_PARAMS}")
        return _save(fig, path)
    generators = sorted({t.row.generator for t in drawn})
    for i, generator in enumerate(generators):
        mine = [t for t in drawn if t.row.generator == generator]
        ax.scatter(
            [t.row.metrics[C.TRAINABLE_PARAMS] for t in mine],
            [float(y_of(t) or 0.0) for t in mine],
            marker=_GENERATOR_MARKERS[i % len(_GENERATOR_MARKERS)],
            label=f"{generator or '?'} ({len(mine)})",
            s=50,
            zorder=3,
        )
    points = [(float(t.row.metrics[C.TRAINABLE_PARAMS]), float(y_of(t) or 0.0)) for t in drawn]
    front = front_points(points, y_mode)
    ax.step(
        [x for x, _ in front],
        [y for _, y in front],
        where="post",
        color="black",
        linewidth=1.2,
        alpha=0.7,
        label=f"Pareto front ({len(front)})",
        zorder=2,
    )
    ax.set_xscale("log")
    ax.set_xlabel(f"{C.TRAINABLE_PARAMS} (log scale)")
    ax.set_ylabel(f"{y_name} ({'higher' if y_mode == 'max' else 'lower'} is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=9, title="generator")
    return _save(fig, path)


# -- public entry points ----------------------------------------------------------------------
def write_search_plots(
    rows: Sequence[TrialRow],
    search: Search,
    out_dir: str | Path,
    *,
    client: MlflowClient | None = None,
    metric: str | None = None,
) -> list[Path]:
    """Write the four plots of a search (see the module docstring) into ``out_dir``.

    Args:
        rows: the search's trials, as :func:`ipt_ray.best.trial_rows` returns them.
        search: the search (its name titles the plots; its objectives give the direction).
        out_dir: a folder (created if missing); existing plots there are replaced.
        client: the MLflow client the rows came from: gives the trials' start order and all
            their params (searched top-level settings besides ``lr`` and ``prompt_length``).
            Without it the order is Ray's trial counter and the params those of the rows.
        metric: the metric ``rows`` were ranked by (default: the search's).

    Returns:
        The paths written, in :data:`PLOT_FILES` order.

    Raises:
        UserError: matplotlib is not installed; ``out_dir`` cannot be written.
    """
    metric = metric or search.metric
    mode = metric_mode(search, metric)
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write plots to {out}: {exc.strerror or exc}") from None
    trials = _trials(rows, search, client)
    axes = searched_axes(trials)
    title = search.experiment_name
    try:
        return [
            plot_history(trials, title, metric, mode, out / HISTORY_PNG),
            plot_importances(trials, axes, title, metric, mode, out / IMPORTANCES_PNG),
            plot_parallel(trials, axes, title, metric, out / PARALLEL_PNG),
            plot_tradeoff(trials, title, metric, mode, out / TRADEOFF_PNG),
        ]
    except OSError as exc:
        raise UserError(f"cannot write plots to {out}: {exc.strerror or exc}") from None


def log_search_plots(
    client: MlflowClient,
    search: Search,
    rows: Sequence[TrialRow],
    *,
    metric: str | None = None,
) -> list[str]:
    """Write the plots to a temporary folder and log them to the search's parent run under
    ``plots/``; returns their artifact paths (``plots/optimization_history.png``, ...).

    A second call replaces the files (same names). Raises what :func:`write_search_plots`
    raises, and MLflow's errors when the artifact store refuses the upload.
    """
    with tempfile.TemporaryDirectory(prefix="ipt-ray-plots-") as tmp:
        written = write_search_plots(rows, search, tmp, client=client, metric=metric)
        client.log_artifacts(search.run_id, tmp, PLOTS_ARTIFACTS)
    return [f"{PLOTS_ARTIFACTS}/{path.name}" for path in written]


__all__ = [
    "PLOTS_ARTIFACTS",
    "PLOT_FILES",
    "ParamAxis",
    "front_points",
    "infer_axis",
    "log_search_plots",
    "param_importances",
    "write_search_plots",
]
