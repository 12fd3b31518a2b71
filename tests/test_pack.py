"""Packed training: runs trained together in one pack, their backbone passes fused, train as
they would alone (same seed: same per-epoch metrics up to float rounding), fail and stop alone.
No Ray."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from ipt_ray.core.backbone import load_backbone
from ipt_ray.core.backbone_call import BackboneCall, fuse, run_call, split
from ipt_ray.core.config import TrainConfig
from ipt_ray.data import load_task
from ipt_ray.errors import TrainingDiverged
from ipt_ray.testing import ARCHITECTURES
from ipt_ray.training.loop import TrainingRun
from ipt_ray.training.pack import MemberStopped, Pack, PackMember

#: Mixed generators, prompt lengths, batch sizes (so epochs end at different steps) and
#: dropout (so each member's random stream matters): name -> settings.
MEMBERS: dict[str, dict[str, Any]] = {
    "task-4": {"generator": "task", "prompt_length": 4, "batch_size": 16, "seed": 1},
    "idpg-6": {
        "generator": "idpg",
        "prompt_length": 6,
        "batch_size": 8,
        "seed": 2,
        "generator_options": {"dropout": 0.2},
    },
    "encoder-3": {
        "generator": "ipt-encoder",
        "prompt_length": 3,
        "batch_size": 12,
        "seed": 3,
        "generator_options": {"encoder": "cnn"},
    },
    "lookup-5": {"generator": "ipt-lookup", "prompt_length": 5, "batch_size": 16, "seed": 4},
}
#: Deep prefixes: two of one length fuse with each other, the third runs beside them.
DEEP_MEMBERS: dict[str, dict[str, Any]] = {
    "prefix-4a": {"generator": "prefix", "prompt_length": 4, "batch_size": 16, "seed": 5},
    "prefix-4b": {"generator": "prefix", "prompt_length": 4, "batch_size": 8, "seed": 6},
    "ipt-prefix-3": {"generator": "ipt-prefix", "prompt_length": 3, "batch_size": 16, "seed": 7},
}
LATE_MEMBERS: dict[str, dict[str, Any]] = {
    "lpt": {"generator": "lpt", "prompt_length": 4, "batch_size": 16, "seed": 8},
    "late-task": {
        "generator": "task",
        "prompt_length": 2,
        "prompt_layer": 1,
        "batch_size": 8,
        "seed": 9,
    },
}
COMPARED = ("train_loss", "val_accuracy", "val_f1_macro")


def config(model: Path, task: Path, settings: dict[str, Any]) -> TrainConfig:
    base = {"max_length": 16, "epochs": 2, "max_samples": 48, "head_dropout": 0.1, "lr": 1e-2}
    return TrainConfig(task=str(task), model=str(model), **{**base, **settings})


def members_for(arch: str) -> dict[str, dict[str, Any]]:
    members = dict(MEMBERS)
    if arch not in ("deberta-v2", "distilbert"):  # their attention takes no prefix
        members.update(DEEP_MEMBERS)
    if arch != "deberta-v2":  # late prompts are not supported there
        members.update(LATE_MEMBERS)
    return members


def train_alone(
    model: Path, task: Path, members: dict[str, dict[str, Any]], shared: Any
) -> dict[str, list[dict[str, float]]]:
    out = {}
    for name, settings in members.items():
        run = TrainingRun(config(model, task, settings), **shared)
        run.fit()
        out[name] = [h.metrics for h in run.history]
    return out


def train_packed(
    model: Path, task: Path, members: dict[str, dict[str, Any]], shared: Any, recompute: bool
) -> tuple[Pack, dict[str, list[dict[str, float]]]]:
    pack, out = Pack(recompute=recompute), {}

    def target(name: str, settings: dict[str, Any]) -> Any:
        def body(member: PackMember) -> None:
            run = TrainingRun(config(model, task, settings), **shared)
            member.attach(run)
            run.fit()
            out[name] = [h.metrics for h in run.history]

        return body

    for name, settings in members.items():
        pack.start(name, target(name, settings))
    pack.join(timeout=300)
    errors = {n: repr(m.error) for n, m in pack.members.items() if m.error is not None}
    assert not errors
    return pack, out


def shared_parts(model: Path, task: Path) -> dict[str, Any]:
    backbone, tokenizer = load_backbone(str(model))
    return {"backbone": backbone, "tokenizer": tokenizer, "task": load_task(str(task))}


@pytest.mark.parametrize(
    ("arch", "recompute"),
    [(arch, False) for arch in ARCHITECTURES] + [("roberta", True), ("llama", True)],
    ids=[*ARCHITECTURES, "roberta-recompute", "llama-recompute"],
)
def test_a_run_trained_in_a_pack_matches_the_same_run_alone(
    arch: str, recompute: bool, tiny_models: dict[str, Path], toy_csv: Path
) -> None:
    """With activations kept, and recomputed in the backward pass (exact either way: the
    frozen backbone is deterministic) on an encoder and a decoder."""
    model = tiny_models[arch]
    members = members_for(arch)
    shared = shared_parts(model, toy_csv)
    alone = train_alone(model, toy_csv, members, shared)
    pack, packed = train_packed(model, toy_csv, members, shared, recompute)
    for name in members:
        assert len(packed[name]) == len(alone[name]) == 2, name
        for epoch, (a, p) in enumerate(zip(alone[name], packed[name], strict=True), 1):
            for key in COMPARED:
                assert p[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (name, epoch, key)
    # The members' training passes really were fused: fewer passes than calls, and passes
    # with more rows than any one member's batch.
    assert pack.stats.forward_passes < pack.stats.forward_calls
    assert pack.stats.max_rows > max(s["batch_size"] for s in members.values())
    assert pack.stats.backward_passes < pack.stats.forward_calls


def test_fused_rows_equal_their_calls_alone(tiny_models: dict[str, Path]) -> None:
    """Different prompt lengths and text widths in one pass: each row as alone."""
    backbone, _ = load_backbone(str(tiny_models["roberta"]))
    torch.manual_seed(0)
    calls = []
    for rows, length in ((3, 7), (2, 11), (4, 5)):
        mask = torch.ones(rows, length, dtype=torch.long)
        mask[0, length - 2 :] = 0  # right padding inside a call stays masked
        calls.append(BackboneCall(torch.randn(rows, length, 32), mask))
    fused = fuse(calls)
    assert fused.inputs_embeds.shape == (9, 11, 32)
    parts = split(run_call(backbone, fused), calls)
    for call, part in zip(calls, parts, strict=True):
        alone = run_call(backbone, call)
        real = call.attention_mask.bool()
        torch.testing.assert_close(part[real], alone[real], rtol=1e-5, atol=1e-5)


def test_calls_of_different_kinds_are_not_fused() -> None:
    plain = BackboneCall(torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.long))
    late = BackboneCall(torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.long), start_layer=1)
    with pytest.raises(ValueError, match="different kinds"):
        fuse([plain, late])


def test_a_diverging_member_fails_alone(tiny_models: dict[str, Path], toy_csv: Path) -> None:
    model = tiny_models["bert"]
    shared = shared_parts(model, toy_csv)
    healthy = {"task-4": MEMBERS["task-4"], "idpg-6": MEMBERS["idpg-6"]}
    alone = train_alone(model, toy_csv, healthy, shared)
    pack, out = Pack(), {}

    def body(name: str, settings: dict[str, Any], poison: bool) -> Any:
        def run_member(member: PackMember) -> None:
            run = TrainingRun(config(model, toy_csv, settings), **shared)
            member.attach(run)
            if poison:  # the head's weights become NaN: the loss is not finite at once
                with torch.no_grad():
                    run.model.head.weight.fill_(math.nan)
            run.fit()
            out[name] = [h.metrics for h in run.history]

        return run_member

    pack.start("diverges", body("diverges", MEMBERS["encoder-3"], True))
    for name, settings in healthy.items():
        pack.start(name, body(name, settings, False))
    pack.join(timeout=300)
    assert isinstance(pack.members["diverges"].error, TrainingDiverged)
    for name in healthy:
        assert pack.members[name].error is None
        assert [m["train_loss"] for m in out[name]] == pytest.approx(
            [m["train_loss"] for m in alone[name]], rel=1e-4
        )


def test_a_stopped_member_leaves_and_the_others_go_on(
    tiny_models: dict[str, Path], toy_csv: Path
) -> None:
    """A member stopped while it waits outside the pack (its report not yet taken) raises
    MemberStopped; the other member trains to its end as alone."""
    model = tiny_models["bert"]
    shared = shared_parts(model, toy_csv)
    pack, out = Pack(), {}
    parked = threading.Event()
    forever = threading.Event()

    def stopped(member: PackMember) -> None:
        run = TrainingRun(config(model, toy_csv, MEMBERS["task-4"]), **shared)
        member.attach(run)

        def wait_for_report(result: Any, _: TrainingRun) -> None:
            with member.outside():
                parked.set()
                forever.wait(timeout=60)

        run.fit(on_epoch_end=wait_for_report)

    def goes_on(member: PackMember) -> None:
        run = TrainingRun(config(model, toy_csv, MEMBERS["idpg-6"]), **shared)
        member.attach(run)
        run.fit()
        out["idpg-6"] = [h.metrics for h in run.history]

    pack.start("stopped", stopped)
    pack.start("idpg-6", goes_on)
    assert parked.wait(timeout=120)
    pack.stop("stopped")
    forever.set()
    pack.join(timeout=300)
    assert isinstance(pack.members["stopped"].error, MemberStopped)
    assert pack.members["idpg-6"].error is None
    alone = train_alone(model, toy_csv, {"idpg-6": MEMBERS["idpg-6"]}, shared)
    assert [m["train_loss"] for m in out["idpg-6"]] == pytest.approx(
        [m["train_loss"] for m in alone["idpg-6"]], rel=1e-4
    )
    assert pack.running == []


@pytest.mark.parametrize(
    ("arch", "chunk_rows"), [("bert", None), ("bert", 2), ("llama", 2)], ids=str
)
def test_recomputed_layers_keep_only_layer_inputs_and_give_the_same_gradients(
    arch: str,
    chunk_rows: int | None,
    tiny_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also R rows at a time (``chunk_rows``; what a pack uses so that the backward pass holds
    one chunk's intermediates): per-row masks, position ids and rotary tables are cut with
    the rows, and the outputs and gradients are those of the whole batch at once."""
    import torch.utils.checkpoint as checkpointing

    from ipt_ray.core.backbone_call import recomputed_layers

    backbone, _ = load_backbone(str(tiny_models[arch]))
    torch.manual_seed(0)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0  # rows of different lengths: a mask cut at the wrong rows changes them
    mask[2, 2:] = 0
    call = BackboneCall(torch.randn(3, 6, 32, requires_grad=True), mask)
    plain_out = run_call(backbone, call)
    (plain_out * mask[..., None]).square().sum().backward()
    plain = call.inputs_embeds.grad.clone()
    call.inputs_embeds.grad = None
    calls = []
    real = checkpointing.checkpoint
    monkeypatch.setattr(
        checkpointing, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with recomputed_layers(backbone, chunk_rows):
        out = run_call(backbone, call)
    (out * mask[..., None]).square().sum().backward()
    chunks = 1 if chunk_rows is None else math.ceil(3 / chunk_rows)
    assert len(calls) == chunks * backbone.config.num_hidden_layers
    torch.testing.assert_close(out * mask[..., None], plain_out * mask[..., None])
    torch.testing.assert_close(call.inputs_embeds.grad, plain)
