"""The layering rules a user or an operator would notice: what each layer drags in on import.

Each check runs in a fresh interpreter, since this test process has long imported torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ipt_ray
from ipt_ray.generators import (
    GeneratorConfig,
    PromptGenerator,
    generator_names,
    get_config_class,
    get_generator_class,
    register,
)

HEAVY = ("torch", "transformers", "ray", "mlflow")
#: The checkout under test, put first on the child's path (not an installed copy).
ROOT = Path(ipt_ray.__file__).resolve().parent.parent


def heavy_imports(code: str) -> list[str]:
    """Which of :data:`HEAVY` are in ``sys.modules`` after a new interpreter runs ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_generator_configs_validate_without_torch() -> None:
    code = (
        "from ipt_ray.generators import generator_names, get_config_class, make_config\n"
        "for name in generator_names():\n"
        "    get_config_class(name).knobs()\n"
        "    make_config(name, {'prompt_length': 4})\n"
    )
    assert heavy_imports(code) == []


def test_loading_a_search_space_imports_no_torch_ray_mlflow_or_transformers() -> None:
    code = "from ipt_ray import load_space\nload_space('smoke')"
    assert heavy_imports(code) == []


def test_a_run_config_validates_without_torch() -> None:
    code = "from ipt_ray.core import TrainConfig\nTrainConfig(generator='idpg').validate()"
    assert heavy_imports(code) == []


@pytest.mark.parametrize(
    "module",
    [
        "ipt_ray.training.loop",
        "ipt_ray.training.features",
        "ipt_ray.training.warm",
        "ipt_ray.training.setup",
        "ipt_ray.core.model",
        "ipt_ray.core.checkpoint",
    ],
)
def test_the_train_and_core_layers_import_neither_ray_nor_mlflow(module: str) -> None:
    found = heavy_imports(f"import {module}")
    assert "ray" not in found and "mlflow" not in found, found


@pytest.mark.parametrize("name", generator_names())
def test_every_registered_generator_resolves_to_its_torch_class(name: str) -> None:
    cls = get_generator_class(name)
    assert issubclass(cls, PromptGenerator)
    assert get_config_class(name).name == name


def test_a_second_generator_under_a_taken_name_is_refused() -> None:
    class Again(GeneratorConfig):
        name = "task"
        generator_class = "ipt_ray.generators.task:TaskPrompt"

    with pytest.raises(ValueError, match="'task' is already registered"):
        register(Again)


def test_a_packed_runners_relay_imports_ray_but_not_torch() -> None:
    """A packed trial's process (its relay) and the module that creates its pack server
    hold Ray and Tune only: one more packed trial must not cost one more torch import."""
    code = "import ipt_ray.tuning.relay, ipt_ray.tuning.pack_server, ipt_ray.tuning.trial_io"
    assert heavy_imports(code) == ["ray"]
