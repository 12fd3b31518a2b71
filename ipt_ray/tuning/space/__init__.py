"""Search spaces: a YAML file compiled into an Optuna define-by-run function.

A search space says which :class:`~ipt_ray.core.config.TrainConfig` settings stay fixed, which are
searched and how, and how the search runs. Everything is validated by :func:`parse_space`
before any Ray or MLflow work starts; every mistake raises :class:`~ipt_ray.errors.ConfigError`
with one line naming the file, the key path, the bad value and what is allowed.

The format::

    # demo.yaml: needs ... / searches ...     (shipped spaces open with such a comment block)
    name: demo                  # optional: default search name (MLflow experiment)
    fixed:                      # TrainConfig settings held constant in every trial
      task: mr
      model: minilm
      epochs: 2
    search:                     # optional; defaults shown
      metric: val_accuracy      # val_<m>, test_<m> (needs eval_test_every_epoch), train_loss ...
      mode: max                 # max | min; may be left out for known metrics
      num_samples: 10           # trials
      seed: 0                   # seed of the sampler (fixed.seed is the training seed)
      max_concurrent: null      # null: as many trials as the cluster's resources allow
      scheduler:                # `scheduler: none` (or null) runs every trial to the end
        type: asha              # asha | none
        grace_period: 1         # epochs before ASHA may stop a trial
        reduction_factor: 2
        max_t: null             # null: the most epochs a trial can run
      searcher:                 # Optuna's TPE
        n_startup_trials: null  # random trials first; null: min(10, max(1, num_samples // 3))
        constant_liar: true     # suits parallel trials
        multivariate: true
        group: true             # models each generator's knobs as their own group
      objectives: null          # or [{metric: val_accuracy, mode: max},
                                #      {metric: trainable_params, mode: min}]
    params:                     # searched
      lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
      prompt_length: {type: int, low: 4, high: 32, step: 4}
      batch_size: [16, 32]      # a list is short for {type: categorical, choices: [...]}
      generator:                # required; `type: categorical` may be written or left out
        choices:                # generator name -> its sub-space (a list of names: no knobs)
          task: {}
          prefix:
            reparam: [false, true]
          idpg:
            bottleneck: {type: int, low: 16, high: 128, log: true}
            weights: dnn        # a plain value in a sub-space is fixed for that generator
            lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}   # per-generator setting

Rules:

* A parameter is ``{type: float|int, low, high, log?, step?}``, ``{type: categorical,
  choices: [...]}`` or a list of choices. ``low < high``; ``log`` needs ``low > 0`` and no
  ``step``; ``high - low`` must be a multiple of ``step``; bounds of ``type: int`` are whole
  numbers. Values are checked against the setting (``TrainConfig.validate``) or the knob
  (:func:`~ipt_ray.generators.make_config`) at both ends of a range, at every value of a small
  integer range, and at every choice.
* The generator and its knobs live only in ``params.generator.choices``: ``fixed`` holds no
  ``generator`` or ``generator_options``. One choice fixes the generator. A sub-space holds the
  generator's knobs and, optionally, TrainConfig settings (such as ``lr`` or
  ``prompt_length``) that apply only when that generator is chosen. A key is either fixed, or
  searched at the top level, or set per generator: never two of these.
* In a trial's flat config (what Optuna samples and Tune passes to the trainable) a knob or
  per-generator setting is named ``<generator>.<key>`` (``idpg.bottleneck``), so that each
  generator's parameters have their own name and TPE never sees one name with two
  distributions. Fixed settings come back from :meth:`SearchSpace.define_by_run` as constants.
* ASHA counts time in the epochs that trials report (``epoch``), not in Tune iterations.
* ``objectives`` lists metrics to optimise together; the first is the primary one (``metric``
  and ``mode``). With two or more the scheduler must be ``none``: ASHA would stop trials on one
  metric alone.
* ``search.metric`` must be a metric the trials report: ``val_<m>`` or ``test_<m>`` (``m`` one
  of accuracy, f1_macro, f1, mcc, or a task's own metric), ``train_loss``, ``epoch_seconds``,
  ``samples_per_second``, ``trainable_params``... ``test_`` metrics need
  ``fixed.eval_test_every_epoch: true``. ``mode`` may be left out for known metrics and must
  match their direction.
* :func:`load_space` takes overrides (from the CLI or tests) such as ``{"num_samples": 4,
  "fixed.model": "path/to/tiny"}``.
* YAML 1.2 numbers are read as numbers: ``1e-4`` is a float (PyYAML alone reads it as text).
  A duplicated key is an error rather than silently overwriting the first.

The parts, in the order they build on each other: :mod:`.checks` (where an error points),
:mod:`.knobs` (what a setting or knob accepts), :mod:`.distribution` (one searched value),
:mod:`.params` (``fixed`` and ``params``), :mod:`.settings` (``search``),
:mod:`.search_space` (the validated space) and :mod:`.load` (file, YAML, overrides).
Loading a space imports neither torch, Ray, MLflow nor transformers (Optuna only when a
trial is sampled).
"""

from __future__ import annotations

from ipt_ray.tuning.space.distribution import Distribution
from ipt_ray.tuning.space.knobs import GENERATOR, KNOB_SEPARATOR
from ipt_ray.tuning.space.load import (
    load_space,
    parse_space,
    resolve_space_path,
    shipped_spaces,
    shipped_spaces_dir,
)
from ipt_ray.tuning.space.params import GeneratorSpace
from ipt_ray.tuning.space.search_space import SearchSpace
from ipt_ray.tuning.space.settings import SchedulerSpec, SearchSettings

__all__ = [
    "GENERATOR",
    "KNOB_SEPARATOR",
    "Distribution",
    "GeneratorSpace",
    "SchedulerSpec",
    "SearchSettings",
    "SearchSpace",
    "load_space",
    "parse_space",
    "resolve_space_path",
    "shipped_spaces",
    "shipped_spaces_dir",
]
