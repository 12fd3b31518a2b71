"""Test helpers shipped in the package (like ``optuna.testing``), so that tests, benchmarks
and users' own tests build the same fixtures. Nothing here touches the network.

Modules, one job each:

* :mod:`~ipt_ray.testing.models`: tiny random backbones of every architecture, a toy tokenizer.
* :mod:`~ipt_ray.testing.data`: toy sentences, a CSV task file, a search-space YAML.
* :mod:`~ipt_ray.testing.training`: short runs, their checkpoints, reference logits.
* :mod:`~ipt_ray.testing.tracking`: a search's MLflow runs, a flaky client, a real server.
* :mod:`~ipt_ray.testing.cluster`: live Ray actors, a hung cluster's evidence, a stalled worker.
* :mod:`~ipt_ray.testing.cli`: ``ipt-ray`` in a new process and its one-line errors.

Names are imported lazily: ``run_cli`` needs neither torch nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipt_ray.lazy import lazy_exports

if TYPE_CHECKING:  # the real names, for type checkers
    from ipt_ray.testing.cli import assert_one_line_error as assert_one_line_error
    from ipt_ray.testing.cli import cli_command as cli_command
    from ipt_ray.testing.cli import run_cli as run_cli
    from ipt_ray.testing.cli import start_cli as start_cli
    from ipt_ray.testing.cluster import FAST_RAY_REPORTS as FAST_RAY_REPORTS
    from ipt_ray.testing.cluster import alive_actor_pids as alive_actor_pids
    from ipt_ray.testing.cluster import evidence_text as evidence_text
    from ipt_ray.testing.cluster import machine_lock as machine_lock
    from ipt_ray.testing.cluster import ray_evidence as ray_evidence
    from ipt_ray.testing.cluster import stalled_worker as stalled_worker
    from ipt_ray.testing.data import TOY_WORDS as TOY_WORDS
    from ipt_ray.testing.data import tiny_space_text as tiny_space_text
    from ipt_ray.testing.data import toy_sentences as toy_sentences
    from ipt_ray.testing.data import write_toy_csv as write_toy_csv
    from ipt_ray.testing.models import ARCHITECTURES as ARCHITECTURES
    from ipt_ray.testing.models import SPECIALS as SPECIALS
    from ipt_ray.testing.models import VOCAB_SIZE as VOCAB_SIZE
    from ipt_ray.testing.models import save_tiny_backbone as save_tiny_backbone
    from ipt_ray.testing.models import tiny_backbone as tiny_backbone
    from ipt_ray.testing.models import tiny_config_kwargs as tiny_config_kwargs
    from ipt_ray.testing.models import tiny_tokenizer as tiny_tokenizer
    from ipt_ray.testing.tracking import FlakyMlflowClient as FlakyMlflowClient
    from ipt_ray.testing.tracking import MlflowServer as MlflowServer
    from ipt_ray.testing.tracking import free_port as free_port
    from ipt_ray.testing.tracking import metric_steps as metric_steps
    from ipt_ray.testing.tracking import mlflow_server as mlflow_server
    from ipt_ray.testing.tracking import search_runs as search_runs
    from ipt_ray.testing.training import TINY_RUN as TINY_RUN
    from ipt_ray.testing.training import reference_logits as reference_logits
    from ipt_ray.testing.training import tiny_training_run as tiny_training_run
    from ipt_ray.testing.training import train_checkpoint as train_checkpoint

_EXPORTS = {
    "FAST_RAY_REPORTS": "ipt_ray.testing.cluster",
    "ARCHITECTURES": "ipt_ray.testing.models",
    "FlakyMlflowClient": "ipt_ray.testing.tracking",
    "MlflowServer": "ipt_ray.testing.tracking",
    "SPECIALS": "ipt_ray.testing.models",
    "TINY_RUN": "ipt_ray.testing.training",
    "TOY_WORDS": "ipt_ray.testing.data",
    "VOCAB_SIZE": "ipt_ray.testing.models",
    "alive_actor_pids": "ipt_ray.testing.cluster",
    "assert_one_line_error": "ipt_ray.testing.cli",
    "cli_command": "ipt_ray.testing.cli",
    "evidence_text": "ipt_ray.testing.cluster",
    "machine_lock": "ipt_ray.testing.cluster",
    "free_port": "ipt_ray.testing.tracking",
    "metric_steps": "ipt_ray.testing.tracking",
    "mlflow_server": "ipt_ray.testing.tracking",
    "ray_evidence": "ipt_ray.testing.cluster",
    "reference_logits": "ipt_ray.testing.training",
    "run_cli": "ipt_ray.testing.cli",
    "save_tiny_backbone": "ipt_ray.testing.models",
    "search_runs": "ipt_ray.testing.tracking",
    "stalled_worker": "ipt_ray.testing.cluster",
    "start_cli": "ipt_ray.testing.cli",
    "tiny_backbone": "ipt_ray.testing.models",
    "tiny_config_kwargs": "ipt_ray.testing.models",
    "tiny_space_text": "ipt_ray.testing.data",
    "tiny_tokenizer": "ipt_ray.testing.models",
    "tiny_training_run": "ipt_ray.testing.training",
    "toy_sentences": "ipt_ray.testing.data",
    "train_checkpoint": "ipt_ray.testing.training",
    "write_toy_csv": "ipt_ray.testing.data",
}

__all__ = sorted(_EXPORTS)

if not TYPE_CHECKING:  # mypy reads the imports above; see ipt_ray.lazy
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
