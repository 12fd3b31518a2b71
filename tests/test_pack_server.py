"""The pack server's side of a relay's conversation, in this process (no Ray actor): a report
holds its member until the relay says it handled it, however often the relay asks again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ray

from ipt_ray.core.config import TrainConfig
from ipt_ray.tuning.pack_server import PackServer


class OneConfig:
    """A search space whose every trial is ``config`` (what the server converts with)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def to_train_config(self, trial_config: Any) -> TrainConfig:
        return TrainConfig.from_dict(self.config.to_dict())


def next_event(server: PackServer, handled: int, wait: float = 60.0) -> tuple[Any, ...]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        event = server.next("t1", handled, 0.2)
        if event is not None:
            return event
    raise AssertionError("no event within the wait")


def serve_one(model: Path, task: Path, epochs: int) -> PackServer:
    """A server (no idle exit) training one trial ``t1`` of ``epochs`` epochs."""
    config = TrainConfig(
        task=str(task),
        model=str(model),
        generator="task",
        prompt_length=4,
        max_length=16,
        batch_size=16,
        epochs=epochs,
        max_samples=48,
    )
    server = PackServer(None, recompute=True, idle_exit_s=None)
    server.start("t1", {}, (OneConfig(config), None), run_name="trial-t1", resume_dir=None, cpus=1)
    return server


def test_a_report_holds_its_member_until_the_relay_handled_it(
    tiny_models: dict[str, Path], toy_csv: Path
) -> None:
    server = serve_one(tiny_models["bert"], toy_csv, epochs=2)
    kind, metrics, directory, epoch = next_event(server, 0)
    assert (kind, epoch) == ("report", 1)
    # The relay asks again without having handled it (a poll that timed out, say): the
    # member stays at epoch 1 and its checkpoint stays for Tune to copy.
    for _ in range(3):
        assert server.next("t1", 0, 0.3) is None
    assert Path(directory, "config.json").is_file()
    assert metrics["epoch"] == 1
    kind, metrics, _, epoch = next_event(server, 1)
    assert (kind, epoch) == ("report", 2)
    assert "test_accuracy" in metrics  # the last epoch carries the final metrics
    assert next_event(server, 2) == ("done",)
    server.pack.join(timeout=60)
    assert server.pack.running == []
    assert not Path(directory).exists()  # handled: removed once the member went on


def test_dropping_a_member_that_waits_for_its_relay_ends_it(
    tiny_models: dict[str, Path], toy_csv: Path
) -> None:
    server = serve_one(tiny_models["bert"], toy_csv, epochs=3)
    assert next_event(server, 0)[0] == "report"
    server.drop("t1")
    server.pack.join(timeout=60)
    assert server.pack.running == []
    assert server.info()["running"] == []
    assert not ray.is_initialized()  # the server's code asked Ray for nothing here


def test_a_server_trains_on_its_relays_gpu_only_where_torch_has_cuda(monkeypatch: Any) -> None:
    """Ray's GPU id becomes the device of that GPU among the visible ones; a Ray told of a GPU
    that this torch cannot use (a CPU build) leaves the trials on their own device, as the
    actor runner does, instead of failing every member on ``cuda:0``."""
    import torch

    from ipt_ray.tuning.pack_server import device_for

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for("5") is None and device_for(None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_for("5") == "cuda:1"
    assert device_for(None) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert device_for("3") == "cuda:3"
