"""On a CUDA device only (marker ``gpu``, deselected by default: ``bash dev.sh test -m gpu``):
bf16 autocast training and two trials sharing one GPU through fractional GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ipt_ray.core.config import TrainConfig
from ipt_ray.testing import tiny_space_text
from ipt_ray.training.loop import TrainingRun
from ipt_ray.tuning.space import parse_space

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_autocast_learns_and_keeps_fp32_weights(tiny_models, toy_csv):
    run = TrainingRun(
        TrainConfig(
            task=str(toy_csv),
            model=str(tiny_models["bert"]),
            generator="idpg",
            prompt_length=4,
            max_length=16,
            batch_size=16,
            epochs=4,
            lr=3e-2,
            device="cuda",
            precision="bf16",
        )
    )
    assert run.autocast_dtype == torch.bfloat16
    backbone_before = {k: v.clone() for k, v in run.model.backbone.state_dict().items()}
    result = run.fit()
    losses = [h.metrics["train_loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in run.model.parameters() if p.requires_grad)
    after = run.model.backbone.state_dict()
    assert all(torch.equal(backbone_before[k], after[k]) for k in backbone_before)


@pytest.mark.ray
def test_two_trials_share_one_gpu(tiny_models, toy_csv, paths: dict[str, Any]) -> None:
    """gpus_per_worker 0.5 on a one-GPU Ray: both trials hold half of it at the same time
    (trials of several seconds, so that Tune cannot reuse the first trial's process)."""
    import ray

    from ipt_ray.tuning.run import run_search

    text = tiny_space_text(
        Path(tiny_models["bert"]),
        toy_csv,
        "num_samples: 2\nmax_concurrent: 2\nseed: 0\nscheduler: none",
        "lr: [0.01, 0.03]\ngenerator: {choices: {task: {}}}",
        max_samples=None,
        batch_size=1,
        epochs=4,
    )
    events: list[Any] = []
    ray.init(num_cpus=2, num_gpus=1, log_to_driver=False)
    try:
        summary = run_search(
            parse_space("name: gpu-share\n" + text),
            gpus_per_worker=0.5,
            runner="actor",
            progress=events.append,
            **paths,
        )
    finally:
        ray.shutdown()
    assert summary.counts["finished"] == 2
    kinds = [e.kind for e in events if e.kind in ("trial_start", "trial_end")]
    assert kinds[:2] == ["trial_start", "trial_start"], f"not side by side: {kinds}"
