"""The model: prompts on frozen backbones of every architecture, with every generator."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from ipt_ray.core.attention import layer_prefix
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import IPTModel, build_model
from ipt_ray.errors import ConfigError
from ipt_ray.testing import tiny_training_run
from ipt_ray.training.loop import TrainingRun

ARCHS = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "gpt2", "llama"]
GENERATORS = {
    "task": ("task", {}),
    "task-random": ("task", {"init": "random"}),
    "prefix": ("prefix", {}),
    "prefix-mlp": ("prefix", {"reparam": True, "reparam_hidden": 16}),
    "lookup": ("ipt-lookup", {}),
    "lookup-hybrid-lowrank": ("ipt-lookup", {"mode": "hybrid", "rank": 4, "scale": 0.5}),
    "encoder-cnn": ("ipt-encoder", {"encoder": "cnn", "hidden": 16}),
    "encoder-lstm-lookup": ("ipt-encoder", {"encoder": "lstm", "hidden": 8, "source": "lookup"}),
    "encoder-mlp": ("ipt-encoder", {"encoder": "mlp", "hidden": 16}),
    "encoder-cnn-345-pooled": (
        "ipt-encoder",
        {"encoder": "cnn", "hidden": 4, "num_kernels": 3, "readout": "pooled"},
    ),
    "encoder-cnn-34": ("ipt-encoder", {"encoder": "cnn", "hidden": 4, "num_kernels": 2}),
    "encoder-lstm2": ("ipt-encoder", {"encoder": "lstm", "hidden": 4, "lstm_layers": 2}),
    "encoder-lstm2-pooled": (
        "ipt-encoder",
        {"encoder": "lstm", "hidden": 4, "lstm_layers": 2, "readout": "pooled"},
    ),
    "encoder-mlp-pooled": ("ipt-encoder", {"encoder": "mlp", "hidden": 8, "readout": "pooled"}),
    "idpg": ("idpg", {"bottleneck": 8}),
    "idpg-phm-layers": ("idpg", {"bottleneck": 8, "weights": "phm", "placement": "layers"}),
    "ipt-prefix": ("ipt-prefix", {}),
    "ipt-prefix-lowrank-all": ("ipt-prefix", {"rank": 4, "layers": "all", "scale": 1.0}),
    "ipt-prefix-cnn": ("ipt-prefix", {"source": "cnn", "hidden": 8}),
    "ipt-prefix-lstm-all": ("ipt-prefix", {"source": "lstm", "hidden": 4, "layers": "all"}),
    "ipt-prefix-mlp": ("ipt-prefix", {"source": "mlp", "hidden": 8}),
    "ipt-prefix-cnn-345-pooled": (
        "ipt-prefix",
        {"source": "cnn", "hidden": 2, "num_kernels": 3, "readout": "pooled"},
    ),
    "lpt": ("lpt", {"bottleneck": 8}),
    "lpt-mean-gelu": ("lpt", {"bottleneck": 8, "pooling": "mean", "activation": "gelu"}),
    "lpt-max": ("lpt", {"bottleneck": 8, "pooling": "max"}),
}
DEEP = {"prefix", "prefix-mlp", "idpg-phm-layers", *(k for k in GENERATORS if "ipt-prefix" in k)}
#: Generators whose prompt joins a layer above the input (prompt_layer 0 means the middle).
LATE_ONLY = {"lpt", "lpt-mean-gelu", "lpt-max"}
TEXTS = ["good movie", "the plot was really dull and the cast was weak", "fun"]


def cache_arg(net: torch.nn.Module, cache: object) -> dict[str, object]:
    """``{name: cache}`` under the name this transformers' forward takes: ``cache`` since 5.24
    (``past_key_values`` a deprecated alias until 5.40), ``past_key_values`` before."""
    params = inspect.signature(net.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def make(model_dir: Path, key: str, prompt_length: int = 4) -> tuple[IPTModel, object]:
    name, options = GENERATORS[key]
    config = TrainConfig(
        model=str(model_dir),
        generator=name,
        prompt_length=prompt_length,
        generator_options=dict(options),
        max_length=24,
        head_dropout=0.0,
    )
    torch.manual_seed(0)
    return build_model(config, num_labels=3)


def encode(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def forward(model: IPTModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))


def supported(arch: str, key: str) -> bool:
    return not (arch == "deberta-v2" and key in DEEP | LATE_ONLY)


CASES = [(a, g) for a in ARCHS for g in GENERATORS if supported(a, g)]


@pytest.mark.parametrize(("arch", "key"), CASES)
def test_gradients_reach_only_generator_and_head(tiny_models, arch, key):
    model, tok = make(tiny_models[arch], key)
    model.train()
    logits = forward(model, encode(tok, TEXTS))
    assert logits.shape == (3, 3)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not model.backbone.training, "the frozen backbone must stay in eval mode"
    for name, p in [*model.generator.named_parameters(), *model.head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


@pytest.mark.parametrize(("arch", "key"), CASES)
def test_parameter_count_matches_formula(tiny_models, arch, key):
    model, _ = make(tiny_models[arch], key)
    actual = sum(p.numel() for p in model.generator.parameters())
    assert actual == model.generator.expected_num_params()
    hidden = model.backbone.config.hidden_size
    assert model.num_trainable_params() == actual + hidden * 3 + 3


@pytest.mark.parametrize(("arch", "key"), CASES)
def test_padding_does_not_change_predictions(tiny_models, arch, key):
    """Attention masks are right: an instance gets the same logits alone or padded in a batch."""
    model, tok = make(tiny_models[arch], key)
    model.eval()
    batched = forward(model, encode(tok, TEXTS))
    for i, text in enumerate(TEXTS):
        alone = forward(model, encode(tok, [text]))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("key", sorted(DEEP))
def test_deep_prompts_refused_where_attention_cannot_take_them(tiny_models, key):
    with pytest.raises(ConfigError, match="every layer"):
        make(tiny_models["deberta-v2"], key)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_prefix_attention_matches_transformers_cache(tiny_models, arch):
    """Our per-layer prefix equals transformers' own past key/values of the same length."""
    from transformers import AutoModel, DynamicCache

    net = AutoModel.from_pretrained(tiny_models[arch]).eval()
    reference = AutoModel.from_pretrained(tiny_models[arch], attn_implementation="sdpa").eval()
    torch.manual_seed(0)
    B, T, P = 2, 5, 3
    cfg = net.config
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv = torch.randn(cfg.num_hidden_layers, 2, B, kv_heads, P, head_dim)
    ids = torch.randint(5, 40, (B, T))
    mask = torch.tensor([[1] * T, [1] * (T - 2) + [0] * 2])
    positions = torch.arange(T).expand(B, T)

    from ipt_ray.core.backbone import freeze

    freeze(net)
    with layer_prefix(kv):
        ours = net(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state

    cache = DynamicCache()
    for layer in range(cfg.num_hidden_layers):
        cache.update(kv[layer, 0], kv[layer, 1], layer)
    full_mask = torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], dim=1)
    theirs = reference(
        input_ids=ids,
        attention_mask=full_mask,
        position_ids=positions,
        **cache_arg(reference, cache),
        use_cache=False,
    ).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2", "llama"])
def test_deep_prefix_matches_a_cache_of_the_same_length(tiny_models, arch):
    """As in PEFT / P-tuning v2: text after a prefix of length P sits at positions P..P+T-1."""
    from transformers import AutoModel, DynamicCache

    model, tok = make(tiny_models[arch], "prefix", prompt_length=3)
    model.eval()
    batch = encode(tok, TEXTS)
    prompts = model.prompts(batch["input_ids"], batch["attention_mask"])
    ours = model.encode(batch["input_ids"], batch["attention_mask"], None, prompts)

    reference = AutoModel.from_pretrained(tiny_models[arch], attn_implementation="sdpa").eval()
    cache = DynamicCache()
    kv = prompts.layer_kv
    for layer in range(kv.shape[0]):
        cache.update(kv[layer, 0], kv[layer, 1], layer)
    mask = torch.cat([torch.ones(len(TEXTS), 3, dtype=torch.long), batch["attention_mask"]], 1)
    theirs = reference(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        use_cache=False,
        **cache_arg(reference, cache),
    ).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)


def test_input_prompt_takes_the_first_positions(tiny_models):
    """With an input prompt of length P, text token t sits at position P + t (BERT)."""
    model, tok = make(tiny_models["bert"], "task")
    model.eval()
    batch = encode(tok, ["good movie"])
    prompts = model.prompts(batch["input_ids"], batch["attention_mask"])
    ours = model.encode(batch["input_ids"], batch["attention_mask"], None, prompts)
    embeds = torch.cat(
        [prompts.input, model.backbone.get_input_embeddings()(batch["input_ids"])], 1
    )
    P, T = prompts.input.shape[1], batch["input_ids"].shape[1]
    manual = model.backbone(
        inputs_embeds=embeds,
        position_ids=torch.arange(P + T)[None],
        attention_mask=torch.ones(1, P + T, dtype=torch.long),
    ).last_hidden_state[:, P:]
    torch.testing.assert_close(ours, manual)


def test_prompt_that_does_not_fit_positions_is_refused(tiny_models):
    config = TrainConfig(
        model=str(tiny_models["bert"]), generator="task", prompt_length=50, max_length=20
    )
    with pytest.raises(ConfigError, match=r"prompt_length 50 \+ max_length 20 = 70 exceeds the 64"):
        build_model(config, 2)


def _run(tiny_models, toy_csv, generator="task", **overrides) -> TrainingRun:
    """Two epochs on all 120 toy rows at a learning rate that learns them."""
    settings = {"epochs": 2, "lr": 3e-2, "max_samples": None, **overrides}
    return tiny_training_run(tiny_models["bert"], toy_csv, generator=generator, **settings)


def test_backbone_is_bit_identical_after_training(tiny_models, toy_csv):
    run = _run(tiny_models, toy_csv, generator="idpg")
    before = {k: v.clone() for k, v in run.model.backbone.state_dict().items()}
    generator_before = {k: v.clone() for k, v in run.model.generator.state_dict().items()}
    run.fit()
    after = run.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [
        k
        for k, v in run.model.generator.state_dict().items()
        if not torch.equal(v, generator_before[k])
    ]
    assert changed, "training changed no generator weight"


def test_runs_repeat_exactly_with_the_same_seed(tiny_models, toy_csv):
    first = _run(tiny_models, toy_csv, generator="ipt-encoder").fit()
    second = _run(tiny_models, toy_csv, generator="ipt-encoder").fit()
    assert [h.metrics["train_loss"] for h in first.history] == [
        h.metrics["train_loss"] for h in second.history
    ]
    assert first.metrics["test_accuracy"] == second.metrics["test_accuracy"]


def test_checkpoint_round_trip_gives_identical_outputs(tiny_models, toy_csv, tmp_path):
    run = _run(tiny_models, toy_csv, generator="prefix", epochs=1)
    run.fit()
    run.save_checkpoint(tmp_path / "ckpt")
    fresh = _run(tiny_models, toy_csv, generator="prefix", epochs=1)
    assert not torch.equal(fresh.predict_logits("test"), run.predict_logits("test"))
    fresh.load_checkpoint(tmp_path / "ckpt")
    torch.testing.assert_close(
        fresh.predict_logits("test"), run.predict_logits("test"), atol=0, rtol=0
    )
    assert not list(tmp_path.glob("ckpt/*.tmp")), "no temporary files left behind"


def test_resume_continues_where_it_stopped(tiny_models, toy_csv, tmp_path):
    """Two epochs in one go equal one epoch, a checkpoint, and one more epoch."""
    straight = _run(tiny_models, toy_csv, generator="task").fit()

    first = _run(tiny_models, toy_csv, generator="task")
    first.config.epochs = 2
    first.train_epoch()
    first.epoch = 1
    first.save_checkpoint(tmp_path / "ckpt")
    resumed = _run(tiny_models, toy_csv, generator="task").fit(resume_from=tmp_path / "ckpt")
    assert [h.epoch for h in resumed.history] == [2]
    assert resumed.history[0].metrics["train_loss"] == pytest.approx(
        straight.history[1].metrics["train_loss"], rel=1e-6
    )


def test_training_learns_the_toy_task(tiny_models, toy_csv):
    result = _run(tiny_models, toy_csv, generator="task", epochs=6).fit()
    losses = [h.metrics["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert {"test_accuracy", "test_f1_macro", "val_accuracy", "trainable_params"} <= set(
        result.metrics
    )


def test_cached_sentence_features_equal_the_live_ones(tiny_models, toy_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("IPT_RAY_CACHE", str(tmp_path))
    cached = _run(tiny_models, toy_csv, generator="idpg")
    live = _run(tiny_models, toy_csv, generator="idpg", cache_features=False)
    assert cached.features is not None and live.features is None
    assert list((tmp_path / "features").glob("*.safetensors")), "features written to the cache"
    torch.testing.assert_close(
        cached.predict_logits("test"), live.predict_logits("test"), atol=1e-5, rtol=1e-4
    )
    first, second = cached.fit(), live.fit()
    assert first.history[-1].metrics["train_loss"] == pytest.approx(
        second.history[-1].metrics["train_loss"], rel=1e-4
    )
    # A second run (another trial) reads the file instead of recomputing.
    monkeypatch.setattr(IPTModel, "sentence_embedding", lambda *a, **k: pytest.fail("recomputed"))
    again = _run(tiny_models, toy_csv, generator="idpg")
    torch.testing.assert_close(again.features["train"], cached.features["train"])


# -- late prompts (prompt_layer > 0) ------------------------------------------------------------
LATE_ARCHS = ["bert", "roberta", "distilbert", "electra", "gpt2", "llama"]
LATE_GENERATORS = ["task", "lookup", "encoder-cnn", "idpg", "lpt", "lpt-max"]
LATE_CASES = [(a, g) for a in LATE_ARCHS for g in LATE_GENERATORS]


def make_late(model_dir: Path, key: str, prompt_layer: int = 1) -> tuple[IPTModel, object]:
    name, options = GENERATORS[key]
    config = TrainConfig(
        model=str(model_dir),
        generator=name,
        prompt_length=4,
        prompt_layer=prompt_layer,
        generator_options=dict(options),
        max_length=24,
        head_dropout=0.0,
    )
    torch.manual_seed(0)
    return build_model(config, num_labels=3)


@pytest.mark.parametrize(("arch", "key"), LATE_CASES)
def test_late_prompt_trains_only_generator_and_head_and_ignores_padding(tiny_models, arch, key):
    model, tok = make_late(tiny_models[arch], key)
    model.eval()
    batch = encode(tok, TEXTS)
    batched = forward(model, batch)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(
            forward(model, encode(tok, [text]))[0], batched[i], atol=1e-5, rtol=1e-4
        )
    model.train()
    forward(model, batch).logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    for name, p in [*model.generator.named_parameters(), *model.head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


@pytest.mark.parametrize(("arch", "key"), LATE_CASES)
def test_late_prompt_from_cached_states_equals_the_live_pass(tiny_models, arch, key):
    """Given the text's states at the prompt layer, the layers below it are not needed."""
    model, tok = make_late(tiny_models[arch], key)
    model.eval()
    batch = encode(tok, TEXTS)
    types = batch.get("token_type_ids")
    live = forward(model, batch)
    states, _ = model.frozen_states(batch["input_ids"], batch["attention_mask"], types)
    sentence = None
    if model.generator.needs_sentence_embedding:
        sentence = model.sentence_embedding(batch["input_ids"], batch["attention_mask"], types)
    cached = model(batch["input_ids"], batch["attention_mask"], types, sentence, states)
    torch.testing.assert_close(cached, live, atol=1e-6, rtol=1e-5)


def test_late_prompt_is_the_prompt_joining_the_text_at_layer_k(tiny_models):
    """A hand-written BERT layer loop: embeddings, layer 0 on the text alone, then layer 1 on
    [prompt; text states] with the prompt visible to every token; equals IPTModel's logits."""
    from ipt_ray.core.model import pool
    from ipt_ray.generators import GeneratorInputs

    model, tok = make_late(tiny_models["bert"], "task")
    model.eval()
    batch = encode(tok, TEXTS)
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    net = model.backbone
    with torch.no_grad():
        hidden = net.embeddings(input_ids=ids, token_type_ids=types)  # positions 0..T-1
        keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T): real tokens are visible
        hidden = net.encoder.layer[0](hidden, attention_mask=keys)
        prompt = model.generator(GeneratorInputs(ids, mask, net.embeddings.word_embeddings(ids)))
        P = prompt.input.shape[1]
        joined = torch.cat([prompt.input, hidden], dim=1)
        keys = torch.cat([torch.ones(len(ids), P, dtype=torch.bool), mask.bool()], 1)
        out = net.encoder.layer[1](joined, attention_mask=keys[:, None, None, :])[:, P:]
        expected = model.head(pool(out, mask, model.pooling))
        torch.testing.assert_close(forward(model, batch), expected, atol=1e-6, rtol=1e-5)
        # And prompt_layer 0 is not that: the prompt is at the input.
        early, _ = make(tiny_models["bert"], "task")
        early.load_state_dict(model.state_dict())
        assert not torch.allclose(forward(early.eval(), batch), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("arch", "key", "prompt_layer", "message"),
    [
        ("bert", "prefix", 1, "makes a key/value prefix for every layer; use prompt_layer 0"),
        ("bert", "idpg-phm-layers", 1, "makes a key/value prefix for every layer"),
        (
            "bert",
            "task",
            2,
            "prompt_layer 2 is not a layer of this 2-layer backbone; allowed: 0 to 1",
        ),
        ("deberta-v2", "task", 1, "not supported on 'deberta-v2' backbones; allowed: bert"),
    ],
)
def test_late_prompt_refusals(tiny_models, arch, key, prompt_layer, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_late(tiny_models[arch], key, prompt_layer)


def test_cached_layer_states_equal_the_live_pass_and_are_read_back(
    tiny_models, toy_csv, tmp_path, monkeypatch
):
    """A late prompt's run reads the frozen states from the cache: the same predictions and
    losses as computing them every step, and a second run reads the files."""
    monkeypatch.setenv("IPT_RAY_CACHE", str(tmp_path))
    cached = _run(tiny_models, toy_csv, generator="idpg", prompt_layer=1)
    live = _run(tiny_models, toy_csv, generator="idpg", prompt_layer=1, cache_features=False)
    assert cached.layer_states is not None and live.layer_states is None
    (folder,) = [p for p in (tmp_path / "features").glob("states-*") if p.is_dir()]
    assert {p.name for p in folder.glob("*.npy")} == {
        f"{s}.{kind}.npy" for s in ("train", "validation", "test") for kind in ("values", "offsets")
    }
    torch.testing.assert_close(
        cached.predict_logits("test"), live.predict_logits("test"), atol=1e-5, rtol=1e-4
    )
    first, second = cached.fit(), live.fit()
    assert first.history[-1].metrics["train_loss"] == pytest.approx(
        second.history[-1].metrics["train_loss"], rel=1e-4
    )
    monkeypatch.setattr(IPTModel, "frozen_states", lambda *a, **k: pytest.fail("recomputed"))
    again = _run(tiny_models, toy_csv, generator="idpg", prompt_layer=1)
    index = torch.arange(len(again.data["train"]))
    torch.testing.assert_close(
        again.layer_states["train"].batch(index, 16), cached.layer_states["train"].batch(index, 16)
    )
