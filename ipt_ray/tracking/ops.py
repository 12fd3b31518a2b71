"""The names of the MLflow writes a search's tracker makes
(:class:`~ipt_ray.tracking.writer.RunWriter`), as its pending calls carry them. They are
journaled (:mod:`~ipt_ray.tracking.journal`): a journal an earlier version wrote must still
read, so these names do not change.
"""

from __future__ import annotations

OP_CREATE_TRIAL_RUN = "create_trial_run"
OP_LOG_PARAMS = "log_params"
OP_LOG_METRICS = "log_metrics"
OP_SET_TAG = "set_tag"
OP_TAG_BEST_TRIAL = "tag_best_trial"
OP_SET_STATUS = "set_status"
OP_SET_TERMINATED = "set_terminated"
OP_LOG_TEXT = "log_text"
OP_LOG_DICT = "log_dict"
OP_UPLOAD_CHECKPOINT = "upload_checkpoint"
OP_LOG_DATASET = "log_dataset"
# The argument naming the run a call writes to: its id, or (its creation still pending when
# the call was queued) the trial whose run it is.
ARG_RUN = "run"
ARG_RUN_OF_TRIAL = "run_of_trial"
# On a metric batch: the trial that may report an epoch its run holds already (see
# TrialRecord.check_logged); the metrics its run has at that step, and its params, are left
# out.
ARG_ONCE_FOR = "once_for"
#: In a tag's value: the id of the run the call writes to, put in when the call is made (a
#: trial's description names its run, which may not be created yet when it is written).
RUN_ID_TOKEN = "{{run_id}}"
#: Every operation name :meth:`RunWriter._apply` knows.
OPS = frozenset(
    {
        OP_CREATE_TRIAL_RUN,
        OP_LOG_PARAMS,
        OP_LOG_METRICS,
        OP_SET_TAG,
        OP_TAG_BEST_TRIAL,
        OP_SET_STATUS,
        OP_SET_TERMINATED,
        OP_LOG_TEXT,
        OP_LOG_DICT,
        OP_UPLOAD_CHECKPOINT,
        OP_LOG_DATASET,
    }
)
