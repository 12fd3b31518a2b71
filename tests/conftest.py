"""Shared fixtures: tiny backbones saved as local model folders, toy task files, and an
isolated ipt-ray cache, all offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def fast_ray_reports() -> Iterator[None]:
    """:data:`ipt_ray.testing.FAST_RAY_REPORTS` in this process's environment for the module
    (read by Ray processes started while it is set, so it must precede every ray.init of the
    module)."""
    from ipt_ray.testing import FAST_RAY_REPORTS

    with pytest.MonkeyPatch.context() as patch:
        for key, value in FAST_RAY_REPORTS.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def ray_session(fast_ray_reports: None) -> Iterator[None]:
    """One local Ray (2 CPUs) for the module's searches (run_search uses it and leaves it
    running), polled fast. Ray's socket paths must stay short: a temp dir under /tmp, not
    pytest's deep tmp_path."""
    import shutil
    import tempfile

    import ray

    started = not ray.is_initialized()
    temp_dir = tempfile.mkdtemp(prefix="ipt-ray-test-")
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=True,
            log_to_driver=False,
            _temp_dir=temp_dir,
            logging_level="WARNING",
        )
    try:
        yield
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, object]:
    """Where a search in a test writes: a SQLite MLflow store, its artifacts, Ray results."""
    root = tmp_path / "runs"
    root.mkdir()
    return {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_root": root / "mlartifacts",
        "storage": root / "ray",
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts Ray through the ``ray_session`` fixture (directly or through
    another fixture) is marked ``ray``, so ``-m "not ray"`` never starts Ray beside a run
    that holds it (two local Ray instances confuse Ray's helpers that connect to "auto")."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
