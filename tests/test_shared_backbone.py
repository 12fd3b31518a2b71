"""The backbone held once per node in Ray's object store (ipt_ray.tuning.shared_backbone) and the
process cache that hands it to one trial after another (ipt_ray.training.warm)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ipt_ray.core.config import TrainConfig
from ipt_ray.testing import ARCHITECTURES
from ipt_ray.tuning.options import resolve_runner

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_materialized_backbone_equals_the_loaded_one(
    ray_session: None, tiny_models: dict[str, Path], arch: str
) -> None:
    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.tuning.shared_backbone import materialize, publish_backbone

    loaded, _ = load_backbone(str(tiny_models[arch]))
    shared = publish_backbone(loaded, model=str(tiny_models[arch]))
    net = materialize(shared)
    assert type(net) is type(loaded) and not net.training
    theirs = dict([*loaded.named_parameters(), *loaded.named_buffers()])
    mine = dict([*net.named_parameters(), *net.named_buffers()])
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), name
        assert not mine[name].requires_grad
    assert shared.nbytes == sum(t.numel() * t.element_size() for t in theirs.values())
    ids = torch.randint(5, 60, (2, 9))
    with torch.no_grad():
        expected = loaded(input_ids=ids).last_hidden_state
        got = net(input_ids=ids).last_hidden_state
    assert torch.equal(got, expected)


def test_a_write_to_the_shared_weights_kills_the_writer_not_the_other_trials(
    ray_session: None, tiny_models: dict[str, Path]
) -> None:
    """The shared pages are read-only in a trial process: a write there is a crash of that
    process, and the node's copy (what every other trial reads) is unchanged."""
    import ray

    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.tuning.shared_backbone import materialize, publish_backbone

    original, _ = load_backbone(str(tiny_models["bert"]))
    expected = original.embeddings.word_embeddings.weight.clone()
    shared = publish_backbone(original, model=str(tiny_models["bert"]))

    @ray.remote(max_retries=0)
    def write(shared_backbone: object) -> None:
        net = materialize(shared_backbone)  # type: ignore[arg-type]
        with torch.no_grad():
            net.embeddings.word_embeddings.weight.add_(1.0)

    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(write.remote(shared))
    assert torch.equal(materialize(shared).embeddings.word_embeddings.weight, expected)


def test_the_process_cache_builds_a_backbone_once_and_serves_the_shared_copy(
    ray_session: None, tiny_models: dict[str, Path]
) -> None:
    from ipt_ray.core.backbone import load_backbone
    from ipt_ray.training import warm
    from ipt_ray.tuning.shared_backbone import publish_backbone

    model = str(tiny_models["bert"])
    shared = publish_backbone(load_backbone(model)[0], model=model)
    warm.clear()
    try:
        net, tokenizer = warm.backbone(TrainConfig(model=model), shared)
        again, _ = warm.backbone(TrainConfig(model=model, lr=0.5), shared)
        assert again is net and tokenizer.pad_token_id is not None
        # Served from the object store: the weights live outside this process's heap, in
        # the pages Ray mapped (read-only numpy arrays under the tensors).
        weight = net.embeddings.word_embeddings.weight
        assert not weight.requires_grad
        other, _ = warm.backbone(TrainConfig(model=str(tiny_models["roberta"])), shared)
        assert other is not net  # another backbone: loaded, and the cache keeps only it
        assert warm.backbone(TrainConfig(model=model), shared)[0] is not net
    finally:
        warm.clear()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("fixed: {model: M}\nparams: {generator: {choices: {task: {}}}}", ("M", None, False)),
        ("fixed: {}\nparams: {generator: {choices: {task: {}}}}", ("minilm", None, False)),
        (
            "fixed: {model: M, revision: v2}\nparams: {generator: {choices: {task: {}}}}",
            ("M", "v2", False),
        ),
        ("fixed: {}\nparams: {model: [M, N], generator: {choices: {task: {}}}}", None),
        ("fixed: {}\nparams: {generator: {choices: {task: {model: N}, prefix: {}}}}", None),
    ],
    ids=["fixed", "default", "revision", "searched", "per-generator"],
)
def test_a_search_shares_its_backbone_only_when_every_trial_uses_it(body, expected):
    from ipt_ray.tuning.space import parse_space

    assert parse_space(body).fixed_backbone() == expected


def test_remote_code_backbones_are_not_published(tiny_models: dict[str, Path]) -> None:
    """Their classes come from the hub's code, which a trial process may import otherwise:
    each trial loads its own (nothing is loaded by the driver)."""
    from ipt_ray.tuning.plan import load_shared_backbone
    from ipt_ray.tuning.space import parse_space

    body = "params: {generator: {choices: {task: {}}}}"
    model = str(tiny_models["bert"])
    remote = parse_space(f"fixed: {{model: {model}, trust_remote_code: true}}\n{body}")
    assert load_shared_backbone(remote) is None
    net, name, revision = load_shared_backbone(parse_space(f"fixed: {{model: {model}}}\n{body}"))
    assert (name, revision) == (model, None) and not net.training


@pytest.mark.parametrize(
    ("runner", "workers", "worker_failures", "expected"),
    [
        ("auto", 1, 0, "actor"),
        ("auto", 2, 0, "train"),
        ("auto", 1, 1, "train"),
        ("actor", 1, 0, "actor"),
        ("train", 1, 0, "train"),
        ("train", 3, 2, "train"),
    ],
)
def test_runner_choice(runner: str, workers: int, worker_failures: int, expected: str) -> None:
    assert resolve_runner(runner, workers, worker_failures) == expected


@pytest.mark.parametrize(
    ("runner", "workers", "worker_failures", "message"),
    [
        ("acter", 1, 0, "unknown runner 'acter' (did you mean 'actor'?); allowed: actor, auto"),
        (
            "actor",
            2,
            0,
            "runner actor trains each trial in one process, but workers_per_trial is 2",
        ),
        ("actor", 1, 1, "use max_failures"),
    ],
)
def test_runner_refusals(runner: str, workers: int, worker_failures: int, message: str) -> None:
    from ipt_ray.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        resolve_runner(runner, workers, worker_failures)
