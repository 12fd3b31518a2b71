"""What a training process keeps between runs (ipt_ray.training.warm): once a backbone is
warm, the collector no longer scans it after every run, and nothing is kept that should go."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ipt_ray.core.config import TrainConfig
from ipt_ray.training import warm


@pytest.fixture
def fresh() -> Iterator[None]:
    warm.clear()
    yield
    warm.clear()


class Cycle:
    """Garbage only the collector frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self
        self.tensor = torch.zeros(4)


def test_a_warm_backbone_is_out_of_the_collectors_sight(
    fresh: None, tiny_models: dict[str, Path]
) -> None:
    assert gc.get_freeze_count() == 0
    net, _ = warm.backbone(TrainConfig(model=str(tiny_models["bert"])))
    # The backbone and everything imported before it: not scanned by each release_memory.
    assert gc.get_freeze_count() > 10 * len(list(net.modules()))
    # A run's own garbage is still collected after it.
    run = Cycle()
    gone = weakref.ref(run)
    del run
    warm.release_memory()
    assert gone() is None
    warm.clear()
    assert gc.get_freeze_count() == 0


def test_a_forgotten_backbone_is_freed(fresh: None, tiny_models: dict[str, Path]) -> None:
    net, _ = warm.backbone(TrainConfig(model=str(tiny_models["bert"])))
    first = weakref.ref(net)
    stuck = Cycle()  # frozen with the first backbone, garbage once it is forgotten
    stuck.net = net  # type: ignore[attr-defined]
    del net, stuck
    warm.backbone(TrainConfig(model=str(tiny_models["roberta"])))  # evicts the first
    assert first() is None
    assert warm.MAX_BACKBONES == 1
