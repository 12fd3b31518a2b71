"""The searched parameters of a search as plot axes (:class:`ParamAxis`), read from the
trials' MLflow params, and the trials in the order they started (:func:`start_order`).

No MLflow and no matplotlib here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from ipt_ray.tracking.query import TrialRow

#: A numeric parameter is drawn (and sampled, for importances) on a log scale when its
#: positive values span more than this ratio.
LOG_RATIO = 10.0
_RAY_TRIAL_INDEX = re.compile(r"_(\d+)$")  # Ray trial ids end in a creation counter: a1b2_00003


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


def finite(value: float | None) -> bool:
    """Whether ``value`` is a number other than NaN and the infinities."""
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
    """The searched-looking params of a row, as MLflow strings (a row not read from MLflow)."""
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


def start_order(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """The rows in the order their trials started, each with its params.

    Rows read from MLflow (:func:`~ipt_ray.tracking.query.trial_rows`) carry their run's
    start time and every param. Others are ordered by Ray's trial counter (the ``_00003``
    suffix of trial ids), else kept in their order, and get the params their fields give
    (generator, lr, prompt length, knobs).
    """
    keyed = []
    for position, row in enumerate(rows):
        if row.started is not None:
            start = row.started
        else:
            index = _ray_index(row.trial_id)
            start = float(index) if index is not None else 0.0
        if not row.params:
            row = dataclasses.replace(row, params=_row_params(row))
        keyed.append(((start, position), row))
    if any(r.started is None and _ray_index(r.trial_id) is None for _, r in keyed):
        keyed = [((0.0, i), r) for i, (_, r) in enumerate(keyed)]
    return [row for _, row in sorted(keyed, key=lambda kr: kr[0])]


def searched_axes(trials: Sequence[TrialRow]) -> list[ParamAxis]:
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
