"""Shared fixtures: tiny backbones saved as local model folders, toy task files, and an
isolated ipt-ray cache, all offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny architecture written once per session: name -> model folder."""
    import transformers

    from ipt_ray.testing import ARCHITECTURES, save_tiny_backbone

    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: save_tiny_backbone(arch, root / arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learnable 2-class CSV task with 120 rows."""
    from ipt_ray.testing import write_toy_csv

    return write_toy_csv(tmp_path_factory.mktemp("toy") / "toy.csv", n=120)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tokenisation caches out of the user's home; offline tasks are shared (slow fetch)."""
    os.environ.setdefault("IPT_RAY_CACHE", str(tmp_path_factory.mktemp("ipt-ray-cache")))
