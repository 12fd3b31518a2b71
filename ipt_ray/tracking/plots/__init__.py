"""Plots of a search from its MLflow records: history, importances, parallel coordinates and
the accuracy / size trade-off.

Needs: the rows of :func:`ipt_ray.tracking.query.trial_rows` (with their runs' start times and
params) and the :class:`~ipt_ray.tracking.query.Search`;
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

from ipt_ray.tracking.plots.axes import ParamAxis, infer_axis, searched_axes, start_order
from ipt_ray.tracking.plots.figures import front_points
from ipt_ray.tracking.plots.importances import param_importances
from ipt_ray.tracking.plots.write import PLOT_FILES, log_search_plots, write_search_plots

__all__ = [
    "PLOT_FILES",
    "ParamAxis",
    "front_points",
    "infer_axis",
    "log_search_plots",
    "param_importances",
    "searched_axes",
    "start_order",
    "write_search_plots",
]
