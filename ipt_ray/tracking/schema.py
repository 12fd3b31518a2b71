"""What a writer and a reader of a search's MLflow records must agree on, in one place.

Tag names, artifact names, the trial statuses and their MLflow run statuses, the result key a
trial reports its hosts under, and the direction (``max``/``min``) of every metric the trials
report. The tracker writes with these names; ``ipt-ray best``, ``export`` and the plots read
with them.

No MLflow, Ray or torch import here (only :mod:`ipt_ray.constants`): any layer, loading a
search space included, may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipt_ray import constants as C
from ipt_ray.constants import (
    KIND_SEARCH,
    KIND_TRIAL,
    TAG_BEST_TRIAL,
    TAG_ERROR,
    TAG_KIND,
    TAG_NODE,
    TAG_PARENT_RUN,
    TAG_PRUNED,
    TAG_RUN_NAME,
    TAG_TRIAL_ID,
)

# -- artifacts ----------------------------------------------------------------------------
#: The search space file, on the parent run.
SPACE_ARTIFACT = "search_space.yaml"
#: The search summary (``SearchSummary.to_dict()``), on the parent run.
SUMMARY_ARTIFACT = "search_summary.json"
#: Folder of a trial run holding its best checkpoint (weights + config, no optimizer state).
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
#: Name of the pyfunc model that ``export --register`` logs to a trial's run.
MODEL_NAME = "model"
#: A trial's test metrics that a registered model version and a bundle carry.
TEST_METRICS = (C.TEST_PREFIX + C.ACCURACY, C.TEST_PREFIX + C.F1_MACRO)
#: Folder of the parent run holding the search's plots.
PLOTS_ARTIFACT_DIR = "plots"

# -- what MLflow's UI shows --------------------------------------------------------------
#: Experiment tag (and its value) that opens MLflow 3's UI on its training layout, not the
#: GenAI one it picks for an experiment without it.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: A run's description (markdown), shown at the top of its page.
TAG_NOTE = "mlflow.note.content"
#: Appended to a pruned trial's run name: MLflow shows it FINISHED, like a finished one.
PRUNED_SUFFIX = " (pruned)"


def trial_run_name(trial_id: str, settings: Mapping[str, Any]) -> str:
    """A trial run's name after what it tried, e.g. ``idpg-P8-lr2.3e-3-6529`` for Tune's trial
    ``bf3d6529``: generator, prompt length, learning rate, and the end of the trial id (names
    stay distinct within a search, and lead to the trial)."""
    parts = [str(settings.get("generator") or "trial")]
    length = settings.get("prompt_length")
    if length not in (None, ""):
        parts.append(f"P{length}")
    try:
        mantissa, exponent = f"{float(settings['lr']):.1e}".split("e")
        parts.append(f"lr{mantissa}e{int(exponent)}")
    except (KeyError, TypeError, ValueError):
        pass
    parts.append(trial_id[-4:])  # Tune's ids (``bf3d6529``) differ in their ends too
    return "-".join(parts)


# -- what trials report -------------------------------------------------------------------
#: Result key with the hosts of a trial's workers; the tracker writes it to the tag of the
#: same name (:data:`TAG_NODE`).
NODE_RESULT_KEY = TAG_NODE
#: Prefix of the metrics a trial reports at its end about its best epoch (``best_<metric>``).
BEST_PREFIX = "best_"

#: Prefix of the parent run's counts of trials by status (``trials_finished``, ...).
COUNT_PREFIX = "trials_"

# -- what is a metric, a param or a tag ----------------------------------------------------
# MLflow draws every metric as a chart over steps. A value that does not change over a run's
# epochs would be a one-point chart, so it is logged once, as a param when the trial's
# configuration fixes it, as a tag when a run may report it again differently (a restarted
# process measures again, a resumed search recounts; MLflow refuses a changed param).
#: Trial values its configuration fixes: params.
CONFIG_NUMBERS = (C.TRAINABLE_PARAMS, C.BACKBONE_PARAMS, C.TRAINABLE_SHARE)
#: Trial values measured once per process: tags (as the ``best_*`` values and the counts).
MEASURED_ONCE = (C.STARTUP_SECONDS, C.TORCH_THREADS)
WHERE_METRIC, WHERE_PARAM, WHERE_TAG = "metric", "param", "tag"


def logged_where(key: str) -> str:
    """Where a reported number ``key`` is logged: :data:`WHERE_PARAM` (fixed by the
    configuration), :data:`WHERE_TAG` (once per report of it: ``best_*``, the counts, what a
    process measured once) or :data:`WHERE_METRIC` (a value per epoch)."""
    if key in CONFIG_NUMBERS:
        return WHERE_PARAM
    if key in MEASURED_ONCE or key.startswith((BEST_PREFIX, COUNT_PREFIX)):
        return WHERE_TAG
    return WHERE_METRIC


def number_text(value: float) -> str:
    """A number as a param or tag holds it: ``1234`` for a whole number, else Python's
    shortest exact form (``0.7568181818181818``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def logged_number(data: Any, key: str) -> float | None:
    """The number ``key`` of a run's ``data`` (MLflow's ``RunData``): its metric, else (see
    :func:`logged_where`) its param or tag; None when absent or not a number. Runs that earlier
    ipt-ray versions logged hold every value as a metric, and read the same."""
    for values in (data.metrics, data.params, data.tags):
        if key in values:
            try:
                return float(values[key])
            except (TypeError, ValueError):
                return None
    return None


# -- trial statuses -----------------------------------------------------------------------
STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_PRUNED = "pruned"  # stopped before its last epoch (ASHA), without an error
STATUS_FAILED = "failed"
STATUS_KILLED = "killed"  # the search was interrupted, or the trial was lost with its driver
#: Every status, in the order counts and tables show them.
STATUSES = (STATUS_FINISHED, STATUS_PRUNED, STATUS_FAILED, STATUS_KILLED, STATUS_RUNNING)
#: Statuses of trials that measured something (a pruned trial was stopped for scoring low):
#: what ``export`` may pick and what the plots call completed.
COMPLETED_STATUSES = (STATUS_FINISHED, STATUS_PRUNED)
#: The MLflow run status of a closed trial (a pruned one is FINISHED with ``pruned=true``).
MLFLOW_STATUS = {
    STATUS_FINISHED: "FINISHED",
    STATUS_PRUNED: "FINISHED",
    STATUS_FAILED: "FAILED",
    STATUS_KILLED: "KILLED",
}


def status_of(mlflow_status: str, tags: Mapping[str, str]) -> str:
    """The trial status of a run with ``mlflow_status`` and ``tags``: the inverse of
    :data:`MLFLOW_STATUS` (an open or scheduled run is ``running``)."""
    if mlflow_status == "FINISHED":
        return STATUS_PRUNED if tags.get(TAG_PRUNED) == "true" else STATUS_FINISHED
    return {"FAILED": STATUS_FAILED, "KILLED": STATUS_KILLED}.get(mlflow_status, STATUS_RUNNING)


# -- metric directions --------------------------------------------------------------------
# The table lives beside the metric names (ipt_ray.constants): the core layer (which metric
# may select a run's best epoch) and the space loader read it too, and neither may import
# from the tracking layer.
Direction = C.Direction
DIRECTIONS = C.DIRECTIONS
SPLIT_METRIC_DIRECTIONS = C.SPLIT_METRIC_DIRECTIONS
OTHER_METRIC_DIRECTIONS = C.OTHER_METRIC_DIRECTIONS
METRIC_DIRECTIONS = C.METRIC_DIRECTIONS
#: Name parts of metrics that are better low (losses, times, sizes), for metrics outside
#: :data:`METRIC_DIRECTIONS` (``backbone_params``, ``startup_seconds``, a task's own loss).
_LOWER_IS_BETTER = ("loss", "seconds", "_params", "share")


known_direction = C.known_direction


def metric_direction(metric: str) -> Direction:
    """The direction of any logged metric: :func:`known_direction`, else ``min`` for names
    of losses, times and sizes, ``max`` otherwise."""
    known = known_direction(metric)
    if known is not None:
        return known
    return "min" if any(word in metric for word in _LOWER_IS_BETTER) else "max"


__all__ = [
    "BEST_PREFIX",
    "CHECKPOINT_ARTIFACT_DIR",
    "COMPLETED_STATUSES",
    "CONFIG_NUMBERS",
    "COUNT_PREFIX",
    "DIRECTIONS",
    "EXPERIMENT_KIND",
    "KIND_SEARCH",
    "KIND_TRIAL",
    "MEASURED_ONCE",
    "METRIC_DIRECTIONS",
    "MLFLOW_STATUS",
    "MODEL_NAME",
    "NODE_RESULT_KEY",
    "OTHER_METRIC_DIRECTIONS",
    "PLOTS_ARTIFACT_DIR",
    "PRUNED_SUFFIX",
    "SPACE_ARTIFACT",
    "SPLIT_METRIC_DIRECTIONS",
    "STATUSES",
    "STATUS_FAILED",
    "STATUS_FINISHED",
    "STATUS_KILLED",
    "STATUS_PRUNED",
    "STATUS_RUNNING",
    "SUMMARY_ARTIFACT",
    "TAG_BEST_TRIAL",
    "TAG_ERROR",
    "TAG_EXPERIMENT_KIND",
    "TAG_KIND",
    "TAG_NODE",
    "TAG_NOTE",
    "TAG_PARENT_RUN",
    "TAG_PRUNED",
    "TAG_RUN_NAME",
    "TAG_TRIAL_ID",
    "TEST_METRICS",
    "WHERE_METRIC",
    "WHERE_PARAM",
    "WHERE_TAG",
    "Direction",
    "known_direction",
    "logged_number",
    "logged_where",
    "metric_direction",
    "number_text",
    "status_of",
    "trial_run_name",
]
