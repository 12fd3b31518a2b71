"""``lpt``: Late Prompt Tuning's generator reads the text's states where its prompt joins.

The shared checks (gradients, parameter formula, padding, late prompts from cached states on
every architecture) run for lpt in tests/test_model.py; these are lpt's own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import IPTModel, build_model
from ipt_ray.errors import ConfigError
from ipt_ray.generators import make_config
from ipt_ray.testing import tiny_training_run

TEXTS = ["good movie", "the plot was really dull and the cast was weak", "fun"]


def with_layers(source: Path, layers: int, target: Path) -> Path:
    """A copy of the tiny backbone at ``source`` with ``layers`` layers (fresh weights)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    config.num_hidden_layers = layers
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def build(model_dir: Path, prompt_layer: int = 0, **options: object) -> tuple[IPTModel, object]:
    config = TrainConfig(
        model=str(model_dir),
        generator="lpt",
        prompt_length=3,
        prompt_layer=prompt_layer,
        generator_options={"bottleneck": 8, **options},
        max_length=24,
        head_dropout=0.0,
    )
    torch.manual_seed(0)
    model, tok = build_model(config, num_labels=2)
    assert config.prompt_layer == model.prompt_layer, "the run records the layer it used"
    return model.eval(), tok


def test_unset_prompt_layer_is_the_middle_layer_and_a_set_one_is_kept(tiny_models, tmp_path):
    four = with_layers(tiny_models["bert"], 4, tmp_path / "bert4")
    assert build(four)[0].prompt_layer == 2
    assert build(four, prompt_layer=3)[0].prompt_layer == 3
    five = with_layers(tiny_models["gpt2"], 5, tmp_path / "gpt2-5")
    assert build(five)[0].prompt_layer == 2


def test_a_one_layer_backbone_is_refused(tiny_models, tmp_path):
    one = with_layers(tiny_models["bert"], 1, tmp_path / "bert1")
    with pytest.raises(ConfigError, match="this 1-layer backbone does not have"):
        build(one)


@pytest.mark.parametrize(
    ("arch", "pooling", "expected"),
    [
        ("bert", "auto", "first"),  # the authors' [CLS] on encoders
        ("gpt2", "auto", "last"),  # and the last real token on decoders
        ("bert", "mean", "mean"),
        ("llama", "max", "max"),
    ],
)
def test_prompt_is_the_bottleneck_of_the_pooled_states_at_the_prompt_layer(
    tiny_models, tmp_path, arch, pooling, expected
):
    """By hand: the states at the input of layer k, pooled over real tokens, through
    down -> relu -> up, are the prompt; and those same states are what layer k takes."""
    model, tok = build(with_layers(tiny_models[arch], 4, tmp_path / "net"), pooling=pooling)
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        all_states = model.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        states = all_states.hidden_states[2]  # the input of layer 2 (the middle of 4)
        rows = []
        for i in range(len(TEXTS)):
            real = states[i, mask[i].bool()]  # (len_i, H): padding left out
            rows.append(
                {
                    "first": real[0],
                    "last": real[-1],
                    "mean": real.mean(0),
                    "max": real.max(0).values,
                }[expected]
            )
        g = model.generator
        manual = g.up(torch.relu(g.down(torch.stack(rows)))).view(len(TEXTS), 3, -1)
        prompts = model.prompts(ids, mask, batch.get("token_type_ids"))
    torch.testing.assert_close(prompts.input, manual, atol=1e-5, rtol=1e-4)
    if pooling == "auto":  # a prompt depends on the text's states, not on the batch
        other = model.prompts(ids[:1, :3], mask[:1, :3], None).input[0]
        assert not torch.allclose(other, prompts.input[1], atol=1e-4)


def test_layers_below_the_prompt_run_once_per_step_and_not_with_cached_states(tiny_models):
    """One frozen pass below layer k feeds both the generator and the layers above; given
    cached states, the layers below are not run at all."""
    model, tok = build(tiny_models["bert"])
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    states, _ = model.frozen_states(ids, mask, types)
    calls: list[int] = []
    original = IPTModel.frozen_states

    def counted(self: IPTModel, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(IPTModel, "frozen_states", counted)
        model.train()
        live = model(ids, mask, types)
        assert len(calls) == 1
        live.sum().backward()  # the frozen pass has no graph: only generator and head train
        assert all(p.grad is None for p in model.backbone.parameters())
        assert model.generator.down.weight.grad is not None
        model.eval()
        cached = model(ids, mask, types, None, states)
        assert len(calls) == 1, "cached states: the layers below k did not run"
    torch.testing.assert_close(cached, model(ids, mask, types), atol=1e-6, rtol=1e-5)


def test_training_reads_the_layer_states_from_the_cache(
    tiny_models, toy_csv, tmp_path, monkeypatch
):
    """prompt_layer unset: the run still caches the states at lpt's layer and trains on them
    as the live pass would."""
    monkeypatch.setenv("IPT_RAY_CACHE", str(tmp_path))
    settings = {
        "epochs": 1,
        "lr": 1e-2,
        "max_samples": None,
        "generator_options": {"bottleneck": 8},
    }
    cached = tiny_training_run(tiny_models["bert"], toy_csv, generator="lpt", **settings)
    live = tiny_training_run(
        tiny_models["bert"], toy_csv, generator="lpt", cache_features=False, **settings
    )
    assert cached.config.prompt_layer == 1 and cached.layer_states is not None
    assert live.layer_states is None
    first, second = cached.fit(), live.fit()
    assert first.history[-1].metrics["train_loss"] == pytest.approx(
        second.history[-1].metrics["train_loss"], rel=1e-4
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bottleneck": 0}, "bottleneck must be an integer from 1 to at most 65536, got 0"),
        ({"pooling": "cls"}, "pooling must be one of auto, first, last, mean, max, got 'cls'"),
        ({"activation": "swish"}, "activation must be one of tanh, relu, gelu, got 'swish'"),
    ],
)
def test_bad_knobs_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("lpt", options)
