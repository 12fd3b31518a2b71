"""Write a search's four plots to a folder, or log them to its parent run.

See :mod:`ipt_ray.tracking.plots` for what each plot shows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ipt_ray.errors import UserError
from ipt_ray.tracking import schema as S
from ipt_ray.tracking.plots.axes import searched_axes, start_order
from ipt_ray.tracking.plots.figures import plot_history, plot_parallel, plot_tradeoff
from ipt_ray.tracking.plots.importances import plot_importances
from ipt_ray.tracking.query import metric_mode

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ipt_ray.tracking.query import Search, TrialRow

HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"
PARALLEL_PNG = "parallel_coordinates.png"
TRADEOFF_PNG = "accuracy_vs_params.png"
PLOT_FILES = (HISTORY_PNG, IMPORTANCES_PNG, PARALLEL_PNG, TRADEOFF_PNG)


def write_search_plots(
    rows: Sequence[TrialRow],
    search: Search,
    out_dir: str | Path,
    *,
    metric: str | None = None,
) -> list[Path]:
    """Write the four plots of a search (see the module docstring) into ``out_dir``.

    Args:
        rows: the search's trials, as :func:`ipt_ray.tracking.query.trial_rows` returns them
            (they give the trials' start order and all their params; other rows are ordered
            by Ray's trial counter and give the params their fields hold: see
            :func:`~ipt_ray.tracking.plots.axes.start_order`).
        search: the search (its name titles the plots; its objectives give the direction).
        out_dir: a folder (created if missing); existing plots there are replaced.
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
    trials = start_order(rows)
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

    They are also shown where a user lands: the parent run's description (the top of its page
    in MLflow's UI) gets a "Plots" section that embeds them. A second call replaces the files
    (same names) and the section. Raises what :func:`write_search_plots` raises, and MLflow's
    errors when the artifact store refuses the upload.
    """
    with tempfile.TemporaryDirectory(prefix="ipt-ray-plots-") as tmp:
        written = write_search_plots(rows, search, tmp, metric=metric)
        client.log_artifacts(search.run_id, tmp, S.PLOTS_ARTIFACT_DIR)
    paths = [f"{S.PLOTS_ARTIFACT_DIR}/{path.name}" for path in written]
    note = client.get_run(search.run_id).data.tags.get(S.TAG_NOTE, "")
    client.set_tag(search.run_id, S.TAG_NOTE, with_plots(note, search.run_id, paths))
    return paths


#: Starts the section of a search's description that embeds its plots.
PLOTS_HEADING = "**Plots**"


def with_plots(note: str, run_id: str, paths: Sequence[str]) -> str:
    """``note`` with its plots section (re)written: each plot as a markdown image that MLflow's
    UI loads from the run's artifacts (a URL relative to the UI's root)."""
    note = note.split(PLOTS_HEADING, 1)[0].rstrip()
    images = [
        f"![{Path(p).stem}](get-artifact?path={quote(p, safe='')}&run_uuid={run_id})" for p in paths
    ]
    return "\n\n".join(part for part in (note, PLOTS_HEADING, *images) if part)
