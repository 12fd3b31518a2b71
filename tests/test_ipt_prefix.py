"""``ipt-prefix``: a P-tuning v2 prefix plus IPT's scaled instance part in layer 0 (or all).

The shared checks (gradients, parameter formula, padding, refusal on attention without deep
prompts) run for ipt-prefix in tests/test_model.py; these are its own.
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

TEXTS = ["good movie", "the plot was really dull and the cast was weak", "fun"]
P = 3


def build(model_dir: Path, generator: str = "ipt-prefix", **options: object) -> IPTModel:
    config = TrainConfig(
        model=str(model_dir),
        generator=generator,
        prompt_length=P,
        generator_options=dict(options),
        max_length=24,
        head_dropout=0.0,
    )
    torch.manual_seed(0)
    return build_model(config, num_labels=2)[0].eval()


def prompts_of(model: IPTModel, tiny_dir: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from transformers import AutoTokenizer

    batch = dict(AutoTokenizer.from_pretrained(tiny_dir)(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        kv = model.prompts(batch["input_ids"], batch["attention_mask"]).layer_kv
    assert kv is not None
    return kv, batch


@pytest.mark.parametrize("arch", ["bert", "llama"])  # llama: W = 2 KV heads x 8 < H = 32
def test_lookup_rows_split_into_keys_then_values_of_layer_0_only(tiny_models, arch):
    """Layer 0's prefix = static + 0.05 x the table rows of the first P tokens, the row's first
    W entries on the keys and last W on the values; every other layer is the static prefix."""
    model = build(tiny_models[arch])
    kv, batch = prompts_of(model, tiny_models[arch])  # (L, 2, B, KV, P, D)
    L, _, B, KV, _, D = kv.shape
    W = KV * D
    static = model.generator.static.prefix  # (L, 2, P, W)
    rows = model.generator.table(batch["input_ids"][:, :P])  # (B, P, 2W)
    rows = rows * batch["attention_mask"][:, :P, None]
    flat = kv.transpose(3, 4).reshape(L, 2, B, P, W)  # heads back side by side
    torch.testing.assert_close(flat[0, 0], static[0, 0] + 0.05 * rows[..., :W])
    torch.testing.assert_close(flat[0, 1], static[0, 1] + 0.05 * rows[..., W:])
    for layer in range(1, L):
        torch.testing.assert_close(flat[layer], static[layer].unsqueeze(1).expand(-1, B, -1, -1))
    assert not torch.allclose(flat[0, :, 0], flat[0, :, 1]), "instances get their own layer 0"


def test_layers_all_adds_the_same_instance_part_to_every_layer(tiny_models):
    model = build(tiny_models["bert"], source="mlp", hidden=8, layers="all", scale=0.5)
    kv, _ = prompts_of(model, tiny_models["bert"])
    static = model.generator.static.prefix  # (L, 2, P, W)
    L, _, B, KV, _, D = kv.shape
    added = kv.transpose(3, 4).reshape(L, 2, B, P, KV * D) - static.unsqueeze(2)
    torch.testing.assert_close(added[1], added[0])
    assert added[0].abs().sum() > 0


def test_scale_zero_is_p_tuning_v2(tiny_models):
    """Without the instance part the static prefix is exactly the prefix generator's."""
    from transformers import AutoTokenizer

    ours = build(tiny_models["gpt2"], source="cnn", hidden=8, scale=0.0)
    theirs = build(tiny_models["gpt2"], generator="prefix")
    theirs.generator.prefix.data.copy_(ours.generator.static.prefix.data)
    theirs.head.load_state_dict(ours.head.state_dict())
    batch = AutoTokenizer.from_pretrained(tiny_models["gpt2"])(
        TEXTS, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected = theirs(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(ours(batch["input_ids"], batch["attention_mask"]), expected)
        ours.generator.config.scale = 0.05
        assert not torch.allclose(ours(batch["input_ids"], batch["attention_mask"]), expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "gru"}, "source must be one of lookup, cnn, lstm, mlp, got 'gru'"),
        ({"layers": "last"}, "layers must be one of first, all, got 'last'"),
        ({"scale": -1}, "scale must be a number from 0 to at most 1000, got -1"),
        ({"source": "cnn", "kernel_size": 4}, "kernel_size must be odd, got 4"),
        ({"rank": -2}, "rank must be an integer from 0 to at most 65536, got -2"),
    ],
)
def test_bad_knobs_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("ipt-prefix", options)
