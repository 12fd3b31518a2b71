"""The Pareto front: the items no other item beats on every objective.

One rule for ``ipt-ray best`` (the front of a multi-objective search) and the trade-off plot
(score against trainable parameters). No MLflow here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ipt_ray.tracking.query import TrialRow

T = TypeVar("T")


def front(
    items: Sequence[T], values: Callable[[T], Sequence[float] | None], modes: Sequence[str]
) -> list[T]:
    """The items no other item dominates, in their given order.

    ``values(item)`` gives the item's value per objective (aligned with ``modes``, each
    ``max`` or ``min``), or None to leave the item out. An item dominates another when it is
    at least as good on every objective and better on one; equal items do not dominate each
    other, so both stay.
    """
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    points = []
    for item in items:
        raw = values(item)
        if raw is not None:
            points.append((item, [s * v for s, v in zip(signs, raw, strict=True)]))
    return [
        item
        for item, p in points
        if not any(
            all(a >= b for a, b in zip(q, p, strict=True))
            and any(a > b for a, b in zip(q, p, strict=True))
            for _, q in points
        )
    ]


def pareto_front(rows: Sequence[TrialRow], objectives: Sequence[tuple[str, str]]) -> list[TrialRow]:
    """Rows no other row dominates on every objective (``(metric, mode)`` pairs; rows missing
    a value are left out). A row's value of an objective is its best over the epochs
    (``row.values``), else its reported metric (``row.metrics``)."""

    def of(row: TrialRow) -> list[float] | None:
        out = []
        for metric, _ in objectives:
            value = row.values.get(metric)
            if value is None and metric in row.metrics:
                value = row.metrics[metric]
            if value is None:
                return None
            out.append(value)
        return out

    return front(rows, of, [mode for _, mode in objectives])


__all__ = ["front", "pareto_front"]
