"""Short training runs on a tiny backbone and a toy task, their checkpoints, and the logits a
checkpoint gives when rebuilt exactly as training builds it (what exports must reproduce)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ipt_ray.training.loop import TrainingRun

#: The settings of :func:`tiny_training_run` unless overridden: a 4-token prompt, texts of at
#: most 16 tokens, batches of 16, one epoch on 40 samples.
TINY_RUN = {
    "generator": "task",
    "prompt_length": 4,
    "max_length": 16,
    "batch_size": 16,
    "epochs": 1,
    "max_samples": 40,
}


def tiny_training_run(model: str | Path, task: str | Path, **settings: Any) -> TrainingRun:
    """A :class:`~ipt_ray.training.loop.TrainingRun` (not yet fitted) of :data:`TINY_RUN` on
    the backbone folder ``model`` and task file ``task``; ``settings`` are further
    :class:`~ipt_ray.core.config.TrainConfig` fields, overriding those defaults."""
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.training.loop import TrainingRun

    return TrainingRun(TrainConfig(task=str(task), model=str(model), **{**TINY_RUN, **settings}))


def train_checkpoint(
    directory: str | Path, model: str | Path, task: str | Path, **settings: Any
) -> Path:
    """Fit :func:`tiny_training_run` and save its checkpoint to ``directory``; returns it."""
    run = tiny_training_run(model, task, **settings)
    run.fit()
    run.save_checkpoint(directory)
    return Path(directory)


def reference_logits(
    checkpoint: str | Path, texts: Sequence[str], pairs: Sequence[str] | None = None
) -> torch.Tensor:
    """(N, C) logits of a checkpoint's best weights on ``texts`` (and ``pairs``), with the
    model built and the texts tokenised the way training does (one batch, padding trimmed)."""
    import torch

    from ipt_ray.core.checkpoint import load_weights, read_config
    from ipt_ray.core.config import TrainConfig
    from ipt_ray.core.model import build_model
    from ipt_ray.data import encode_texts, trim_padding

    meta = read_config(Path(checkpoint))
    config = TrainConfig.from_dict(meta["train_config"])
    model, tokenizer = build_model(config, meta["num_labels"])
    model.load_trainable_state_dict(load_weights(Path(checkpoint), best=True))
    model.eval()
    batch = trim_padding(encode_texts(tokenizer, texts, pairs, config.max_length))
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
