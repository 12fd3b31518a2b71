"""The figures of a search's plots, drawn with matplotlib's Agg canvas (no display, no pyplot
state): the optimization history, the parallel coordinates and the score / size trade-off.
See :mod:`ipt_ray.tracking.plots` for what each shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipt_ray import constants as C
from ipt_ray.errors import UserError
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.pareto import front
from ipt_ray.tracking.plots.axes import ParamAxis, finite

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ipt_ray.tracking.query import TrialRow

_FIGSIZE = (8.0, 5.0)
_DPI = 100
_STATUS_STYLE: dict[str, dict[str, Any]] = {
    S.STATUS_FINISHED: {"marker": "o", "color": "tab:blue"},
    S.STATUS_PRUNED: {"marker": "v", "color": "tab:orange"},
    S.STATUS_FAILED: {"marker": "x", "color": "tab:red"},
    S.STATUS_KILLED: {"marker": "x", "color": "tab:gray"},
    S.STATUS_RUNNING: {"marker": ".", "color": "tab:gray"},
}
_GENERATOR_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


# -- figures ----------------------------------------------------------------------------------
def figure() -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'ipt-ray[plots]'") from None
    return Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def crowd(n: int) -> tuple[float, float]:
    """(marker area in points², alpha) for ``n`` points or lines: a few dozen are drawn full
    size and opaque; thousands small and faint, so that where they gather still shows."""
    if n <= 50:
        return 36.0, 1.0
    return max(4.0, 36.0 * math.sqrt(50 / n)), max(0.15, math.sqrt(50 / n))


def opaque_legend(legend: Any) -> None:
    """A legend's markers opaque, however faint the crowd they stand for (:func:`crowd`)."""
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)


def note(ax: Axes, text: str) -> None:
    """A message in the middle of an empty plot."""
    ax.set_axis_off()
    ax.text(
        0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=12
    )


def plot_history(
    trials: Sequence[TrialRow], title: str, metric: str, mode: str, path: Path
) -> Path:
    """``optimization_history.png``: see the module docstring."""
    from matplotlib.ticker import MaxNLocator

    fig = figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: optimization history")
    if not trials:
        note(ax, "no trials")
        return save(fig, path)
    xs = list(range(1, len(trials) + 1))
    size, alpha = crowd(len(trials))
    for status, style in _STATUS_STYLE.items():
        with_value = [
            (x, float(t.value))
            for x, t in zip(xs, trials, strict=True)
            if t.status == status and t.value is not None and math.isfinite(t.value)
        ]
        without = [
            x for x, t in zip(xs, trials, strict=True) if t.status == status and not finite(t.value)
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
                s=size,
                alpha=alpha,
                **style,
            )
            label = "_"  # one legend entry per status
        if without:  # no value: on the bottom edge of the axes
            ax.scatter(
                without,
                [0.0] * len(without),
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                alpha=0.6 * alpha,
                s=size,
                label=label,
                zorder=3,
                **style,
            )
    best: float | None = None
    steps_x, steps_y = [], []
    for x, trial in zip(xs, trials, strict=True):
        value = trial.value
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
    opaque_legend(ax.legend(loc="best", fontsize=9))
    return save(fig, path)


def plot_parallel(
    trials: Sequence[TrialRow], axes: Sequence[ParamAxis], title: str, metric: str, path: Path
) -> Path:
    """``parallel_coordinates.png``: see the module docstring."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: parallel coordinates")
    done = [t for t in trials if t.completed]
    if not done:
        note(ax, "no completed trial to draw")
        return save(fig, path)
    values = [float(t.value) for t in done if t.value is not None]
    low, high = min(values), max(values)
    value_axis = ParamAxis(metric, "float", low, high)
    columns = [*axes, value_axis]
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-12)
    cmap = colormaps["viridis"]
    xs = list(range(len(columns)))
    _, alpha = crowd(len(done))
    thin = len(done) > 200
    for trial, value in sorted(zip(done, values, strict=True), key=lambda tv: tv[1]):
        ys = [a.position(trial.params[a.name]) for a in axes]
        ys.append(value_axis.position(repr(value)))
        ax.plot(
            xs,
            ys,
            color=cmap(norm(value)),
            linewidth=0.6 if thin else 1.5,
            alpha=0.85 * alpha,
            linestyle="--" if trial.status == S.STATUS_PRUNED else "-",
            marker="" if thin else "o",
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
    return save(fig, path)


def front_points(points: Sequence[tuple[float, float]], mode: str) -> list[tuple[float, float]]:
    """The (size, score) points no other point beats: as small or smaller and as good or
    better, one of them strictly (:func:`ipt_ray.tracking.pareto.front`). Sorted by size."""
    return sorted(set(front(points, lambda p: p, ("min", mode))))


def plot_tradeoff(
    trials: Sequence[TrialRow], title: str, metric: str, mode: str, path: Path
) -> Path:
    """``accuracy_vs_params.png``: see the module docstring."""
    fig = figure()
    ax = fig.add_subplot()
    done = [t for t in trials if t.completed]
    # Test accuracy only when every completed trial has it (pruned trials never reach the
    # test split): one score per axis, never val and test mixed.
    use_test = bool(done) and all(finite(t.metrics.get("test_accuracy")) for t in done)
    y_name, y_mode = ("test_accuracy", "max") if use_test else (metric, mode)
    ax.set_title(f"{title}: {y_name} vs trainable parameters")

    def y_of(trial: TrialRow) -> float | None:
        return trial.metrics.get("test_accuracy") if use_test else trial.value

    drawn = [t for t in done if finite(y_of(t)) and (t.metrics.get(C.TRAINABLE_PARAMS) or 0) > 0]
    if not drawn:
        note(ax, f"no completed trial with {y_name} and {C.TRAINABLE_PARAMS}")
        return save(fig, path)
    generators = sorted({t.generator for t in drawn})
    size, alpha = crowd(len(drawn))
    for i, generator in enumerate(generators):
        mine = [t for t in drawn if t.generator == generator]
        ax.scatter(
            [t.metrics[C.TRAINABLE_PARAMS] for t in mine],
            [float(y_of(t) or 0.0) for t in mine],
            marker=_GENERATOR_MARKERS[i % len(_GENERATOR_MARKERS)],
            label=f"{generator or '?'} ({len(mine)})",
            s=size * 50 / 36,
            alpha=alpha,
            zorder=3,
        )
    points = [(float(t.metrics[C.TRAINABLE_PARAMS]), float(y_of(t) or 0.0)) for t in drawn]
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
    opaque_legend(ax.legend(loc="best", fontsize=9, title="generator"))
    return save(fig, path)
