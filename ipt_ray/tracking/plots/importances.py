"""How much each searched parameter decided a search's metric: :func:`param_importances`
(an Optuna study rebuilt in memory) and its figure, ``param_importances.png``."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ipt_ray.tracking.plots.axes import ParamAxis
from ipt_ray.tracking.plots.figures import figure, note, save

if TYPE_CHECKING:
    import optuna

    from ipt_ray.tracking.query import TrialRow


#: Importances are computed on at most this many completed trials (a seeded sample).
IMPORTANCE_SAMPLE = 1000


def importance_sample(trials: Sequence[TrialRow]) -> list[TrialRow]:
    """The completed trials importances are computed on: all of them, or a seeded sample of
    :data:`IMPORTANCE_SAMPLE` (fANOVA's forest grows with the trials)."""
    done = [t for t in trials if t.completed]
    if len(done) <= IMPORTANCE_SAMPLE:
        return done
    return random.Random(0).sample(done, IMPORTANCE_SAMPLE)


def param_importances(
    trials: Sequence[TrialRow], axes: Sequence[ParamAxis], mode: str
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

    done = importance_sample(trials)
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
                value=trial.value,
            )
        )
    evaluator: optuna.importance.BaseImportanceEvaluator
    try:
        import sklearn  # noqa: F401

        evaluator, name = FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        evaluator, name = PedAnovaImportanceEvaluator(), "PED-ANOVA"
    if len({t.value for t in done}) == 1:
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
    trials: Sequence[TrialRow],
    axes: Sequence[ParamAxis],
    title: str,
    metric: str,
    mode: str,
    path: Path,
) -> Path:
    """``param_importances.png``: see :func:`param_importances`."""
    fig = figure()
    ax = fig.add_subplot()
    ax.set_title(f"{title}: parameter importances for {metric}")
    try:
        scores, evaluator = param_importances(trials, axes, mode)
    except (ValueError, RuntimeError) as exc:
        note(ax, f"no importances: {exc}")
        return save(fig, path)
    names = list(scores)[::-1]  # largest on top
    values = [scores[n] for n in names]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=9)
    n = sum(t.completed for t in trials)
    over = (
        f"{n} completed trials"
        if n <= IMPORTANCE_SAMPLE
        else (f"a sample of {IMPORTANCE_SAMPLE} of {n} completed trials")
    )
    ax.set_xlabel(f"importance ({evaluator} over {over}; sums to 1)")
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
    return save(fig, path)
