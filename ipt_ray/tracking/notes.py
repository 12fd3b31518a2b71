"""The descriptions (``mlflow.note.content``, markdown) that MLflow's UI shows on top of a
search's runs: what a trial tried and how it ended, what a search found and how to export it.

Plain strings from what the tracker already holds; no MLflow import.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from ipt_ray.tracking import schema as S
from ipt_ray.tracking.ops import RUN_ID_TOKEN
from ipt_ray.tracking.record import TrialRecord


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _sampled(record: TrialRecord) -> str:
    shown = record.sampled or {
        k: v for k, v in record.params.items() if k in ("generator", "prompt_length", "lr")
    }
    return ", ".join(f"`{k}={_value(v)}`" for k, v in sorted(shown.items())) or "nothing"


def trial_note(record: TrialRecord, *, search: str, metric: str) -> str:
    """A trial run's description: what it tried, how it ended, its best epoch, export."""
    lines = [f"Trial `{record.trial_id}` of search **{search}**: {_sampled(record)}."]
    status = record.status
    if status == S.STATUS_RUNNING:
        lines.append("Running.")
    else:
        ended = {
            S.STATUS_FINISHED: "Finished",
            S.STATUS_PRUNED: f"**Pruned** (stopped early) after epoch {record.last_epoch}",
            S.STATUS_FAILED: "**Failed**",
            S.STATUS_KILLED: "**Killed** (the search was interrupted)",
        }[status]
        best = ""
        if record.best_value is not None:
            best = f"; best {metric} {record.best_value:.4f} at epoch {record.best_epoch}"
        lines.append(ended + best + ".")
        if record.error:
            lines.append(f"Error: `{record.error.splitlines()[0][:200]}`")
    if status in S.COMPLETED_STATUSES:
        # The run may not be created yet (its creation is queued): filled in when logged.
        target = record.run_id or RUN_ID_TOKEN
        lines.append(
            f"Export it: `ipt-ray export {target} --out DIR` (add `--register NAME` for the "
            "model registry)."
        )
    return "\n\n".join(lines)


def search_note(
    *,
    search: str,
    space: str | None,
    metric: str,
    mode: str,
    counts: Mapping[str, int],
    best: TrialRecord | None,
) -> str:
    """The parent run's description: the space, the trials' counts, the best, how to export."""
    source = f" over space `{space}`" if space else ""
    counted = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    lines = [f"Search **{search}**{source}, {mode}imizing `{metric}`: {counted or 'no trials'}."]
    if best is not None and best.best_value is not None:
        lines.append(
            f"Best trial: **{S.trial_run_name(best.trial_id, best.settings)}** "
            f"({_sampled(best)}), {metric} {best.best_value:.4f} at epoch {best.best_epoch}."
        )
    name = shlex.quote(search)
    lines.append(
        f"Rank the trials: `ipt-ray best --experiment {name}`. Export the best: "
        f"`ipt-ray export --experiment {name} --out DIR` (add `--register NAME` for the "
        "model registry). Plots: below, and among this run's artifacts (`plots/`)."
    )
    return "\n\n".join(lines)


__all__ = ["search_note", "trial_note"]
