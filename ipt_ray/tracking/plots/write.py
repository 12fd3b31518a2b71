"""Write a search's four plots to a folder, or log them to its parent run.

See :mod:`ipt_ray.tracking.plots` for what each plot shows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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

    Each is also logged as an image (``log_image``, key ``plots/<name>``), which MLflow's UI
    shows in the experiment's and the run's charts, where a user lands, not only among the
    artifacts. A second call replaces the files (same names) and adds the images again (the UI
    shows the newest). Raises what
    :func:`write_search_plots` raises, and MLflow's errors when the artifact store refuses
    the upload.
    """
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="ipt-ray-plots-") as tmp:
        written = write_search_plots(rows, search, tmp, metric=metric)
        client.log_artifacts(search.run_id, tmp, S.PLOTS_ARTIFACT_DIR)
        for path in written:
            with Image.open(path) as image:
                key = f"{S.PLOTS_ARTIFACT_DIR}/{path.stem}"
                client.log_image(search.run_id, image.convert("RGB"), key=key, step=0)
    return [f"{S.PLOTS_ARTIFACT_DIR}/{path.name}" for path in written]
