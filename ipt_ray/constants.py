"""Metric, param and tag names shared by the training loop, Ray layer and MLflow layer.

One place for every name that crosses a layer boundary, so that a typo is an import error.
"""

from __future__ import annotations

from typing import Literal

# Metric names reported per epoch (keys of EpochResult.metrics). Validation and test
# metrics are prefixed: ``val_accuracy``, ``test_f1_macro``, ...
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
LEARNING_RATE = "learning_rate"
SAMPLES_PER_SECOND = "samples_per_second"
EPOCH_SECONDS = "epoch_seconds"
SECONDS_PER_EPOCH = "seconds_per_epoch"
TRAINABLE_PARAMS = "trainable_params"
BACKBONE_PARAMS = "backbone_params"
TRAINABLE_SHARE = "trainable_share"  # trainable / backbone parameters, as a fraction
# Unix time when a training process finished its first optimizer step (reported once by a
# search's worker; the tracker turns it into STARTUP_SECONDS, counted from the trial's start).
FIRST_STEP_UNIX = "first_step_unix"
STARTUP_SECONDS = "startup_seconds"
TORCH_THREADS = "torch_threads"  # intra-op threads of a training process (reported once)
# Result key (reported once, with the first step): the task a trial trains on, as
# TaskData.describe() gives it (name, content digest, split sizes), a JSON string.
DATASET = "dataset"
VAL_PREFIX = "val_"
TEST_PREFIX = "test_"
ACCURACY = "accuracy"
F1_MACRO = "f1_macro"
F1 = "f1"  # binary F1 of the positive class (label 1)
MCC = "mcc"

# Which way each metric is better: one table for the space loader (a search's mode), the
# training loop (which metric may select the best epoch) and the tracking layer (ranking).
Direction = Literal["max", "min"]
DIRECTIONS: tuple[Direction, ...] = ("max", "min")
#: Metrics reported per split (as ``val_<name>`` and ``test_<name>``), higher is better.
SPLIT_METRIC_DIRECTIONS: dict[str, Direction] = {
    ACCURACY: "max",
    F1_MACRO: "max",
    F1: "max",
    MCC: "max",
}
#: Metrics reported without a split prefix, with the direction that makes them better.
OTHER_METRIC_DIRECTIONS: dict[str, Direction] = {
    TRAIN_LOSS: "min",
    EPOCH_SECONDS: "min",
    SECONDS_PER_EPOCH: "min",
    SAMPLES_PER_SECOND: "max",
    TRAINABLE_PARAMS: "min",
    TRAINABLE_SHARE: "min",
}
#: Every metric the trials report that a search may optimize, with its direction.
METRIC_DIRECTIONS: dict[str, Direction] = {
    **OTHER_METRIC_DIRECTIONS,
    **{
        prefix + name: mode
        for prefix in (VAL_PREFIX, TEST_PREFIX)
        for name, mode in SPLIT_METRIC_DIRECTIONS.items()
    },
}


def known_direction(metric: str) -> Direction | None:
    """The direction of a metric in :data:`METRIC_DIRECTIONS`, else None."""
    return METRIC_DIRECTIONS.get(metric)


# MLflow tags (issue: distributed search).
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_PRUNED = "pruned"
TAG_ERROR = "error"
TAG_NODE = "node"
TAG_TRIAL_ID = "ray.trial_id"
TAG_KIND = "ipt_ray.kind"  # "search" for parent runs, "trial" for child runs
TAG_BEST_TRIAL = "best_trial_run_id"
KIND_SEARCH = "search"
KIND_TRIAL = "trial"

# Checkpoint file names (also used inside exported bundles).
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.json"

#: Environment of a process that runs a pack: one glibc malloc arena. Members take turns, so
#: one arena serves them all; glibc would otherwise give each member thread an arena that keeps
#: its own freed activations (measured in one process, 8 MiniLM members recomputing: peak
#: 1.33 GiB with one arena, 1.60 with two; 4 members with activations kept: 2.2 GiB with two,
#: 2.7 unlimited). It must be set before the process starts: glibc reads it once.
PACK_PROCESS_ENV = {"MALLOC_ARENA_MAX": "1"}
