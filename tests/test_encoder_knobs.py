"""``ipt-encoder``'s knobs for IPT's own encoders: several CNN windows, stacked LSTM layers,
a pooled readout. Defaults keep the generator (and its checkpoints) as it was.

Gradients, parameter formulas and padding for these knobs run in tests/test_model.py.
"""

from __future__ import annotations

import re

import pytest
import torch

from ipt_ray.errors import ConfigError
from ipt_ray.generators import BackboneInfo, GeneratorInputs, build_generator, make_config

H, P = 16, 3


def info() -> BackboneInfo:
    return BackboneInfo(
        hidden_size=H,
        num_layers=2,
        num_heads=2,
        num_kv_heads=2,
        head_dim=8,
        vocab_size=50,
        max_positions=64,
        is_decoder=False,
        supports_deep_prompts=True,
    )


def inputs(vectors: torch.Tensor, mask: torch.Tensor | None = None) -> GeneratorInputs:
    B, T, _ = vectors.shape
    mask = torch.ones(B, T, dtype=torch.long) if mask is None else mask
    return GeneratorInputs(torch.zeros(B, T, dtype=torch.long), mask, vectors)


def make(**options: object):  # -> EncoderPrompt
    torch.manual_seed(0)
    return build_generator("ipt-encoder", {"prompt_length": P, "hidden": 4, **options}, info())


@pytest.mark.parametrize(
    ("encoder", "keys"),
    [
        ("cnn", {"encoder.weight", "encoder.bias", "out.weight", "out.bias"}),
        ("lstm", {"encoder.weight_ih_l0", "encoder.weight_hh_l0_reverse", "out.weight"}),
    ],
)
def test_defaults_keep_the_generator_and_its_checkpoint_keys(encoder, keys):
    config = make_config("ipt-encoder", {"encoder": encoder})
    assert (config.num_kernels, config.lstm_layers, config.readout.value) == (1, 1, "tokens")
    state = make(encoder=encoder).state_dict()
    assert keys <= set(state)
    assert not any("_l1" in k or k.startswith("encoder.0") for k in state)


def test_cnn_windows_are_kernel_size_onwards_and_sit_side_by_side():
    """IPT's TextCNN windows 3, 4, 5; each keeps T outputs, so token readout still works."""
    generator = make(encoder="cnn", kernel_size=3, num_kernels=3)
    assert [conv.weight.shape for conv in generator.encoder] == [
        (4, H, 3),
        (4, H, 4),
        (4, H, 5),
    ]
    states = generator.encode(torch.randn(2, 7, H), torch.ones(2, 7))
    assert states.shape == (2, 7, 12)


def test_two_lstm_layers_stack():
    generator = make(encoder="lstm", lstm_layers=2)
    assert generator.encoder.num_layers == 2
    assert generator.encode(torch.randn(2, 5, H), torch.ones(2, 5)).shape == (2, 5, 8)


@pytest.mark.parametrize("encoder", ["cnn", "lstm", "mlp"])
def test_pooled_readout_makes_every_prompt_vector_see_the_whole_text(encoder):
    """Change only the last of 12 tokens: with readout=pooled every prompt vector moves; with
    the first-P token readout of a 3-token window, the first vector cannot."""
    text = torch.randn(1, 12, H)
    edited = text.clone()
    edited[0, -1] = 10.0 * torch.randn(H)
    pooled = make(encoder=encoder, readout="pooled", hidden=16)  # max over 16+ channels
    before, after = pooled(inputs(text)).input, pooled(inputs(edited)).input
    assert before.shape == (1, P, H)
    assert all(not torch.allclose(before[0, i], after[0, i]) for i in range(P))
    if encoder != "lstm":  # a BiLSTM's first output sees the last token too
        tokens = make(encoder=encoder)
        torch.testing.assert_close(
            tokens(inputs(text)).input[0, 0], tokens(inputs(edited)).input[0, 0]
        )


def test_pooled_mlp_is_ipts_mlp_over_the_mean_embedding_of_real_tokens():
    generator = make(encoder="mlp", readout="pooled")
    vectors = torch.randn(2, 6, H)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    mean = torch.stack([vectors[0].mean(0), vectors[1, :4].mean(0)])
    expected = generator.out(generator.encoder(mean)).view(2, P, H)
    torch.testing.assert_close(generator(inputs(vectors, mask)).input, expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_kernels": 0}, "num_kernels must be an integer from 1 to at most 8, got 0"),
        ({"lstm_layers": 9}, "lstm_layers must be an integer from 1 to at most 8, got 9"),
        ({"readout": "cls"}, "readout must be one of tokens, pooled, got 'cls'"),
    ],
)
@pytest.mark.parametrize("generator", ["ipt-encoder", "ipt-prefix"])
def test_bad_values_are_refused_in_one_line(generator, options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(generator, options)
