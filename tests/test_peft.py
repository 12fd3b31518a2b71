"""PEFT export: the real ``peft`` package loads the adapter and, following the adapter's own
README, reproduces ipt-ray's logits on padded batches."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ipt_ray.artifacts.bundle import load_bundle, write_bundle
from ipt_ray.artifacts.peft import write_peft_adapter
from ipt_ray.errors import UserError
from ipt_ray.testing import tiny_training_run, train_checkpoint, write_toy_csv

peft = pytest.importorskip("peft")

TEXTS = ["good movie", "the plot was really dull and the cast was weak", "fun", "zzz unknown"]
PAIRS = ["a film", "it was fine", "the story is bland and the cast is flat", "warm"]
CASES = {
    "bert-task": ("bert", "task", {}),
    "bert-prefix": ("bert", "prefix", {}),
    "bert-prefix-reparam": ("bert", "prefix", {"reparam": True, "reparam_hidden": 8}),
    "roberta-prefix": ("roberta", "prefix", {}),
    "gpt2-task": ("gpt2", "task", {}),
    "gpt2-prefix": ("gpt2", "prefix", {}),
    "llama-prefix-gqa": ("llama", "prefix", {}),
}


def large_weights_checkpoint(
    directory: Path, model_dir: Path, task: Path, generator: str, options: dict
) -> Path:
    """One short epoch, then generator weights made large so that any layout or position
    mistake in the export changes the logits well beyond float noise."""
    run = tiny_training_run(
        model_dir, task, generator=generator, generator_options=options, prompt_length=3
    )
    run.fit()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in run.model.generator.named_parameters():
            if name != "prompt":  # a task prompt starts from vocabulary rows: already large
                p.normal_(0.0, 0.5 if "mlp" in name else 1.0)
    run.save_checkpoint(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoints(tiny_models, toy_csv, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("peft-checkpoints")
    models = tiny_models
    out = {
        key: large_weights_checkpoint(root / key, models[arch], toy_csv, gen, opts)
        for key, (arch, gen, opts) in CASES.items()
    }
    pairs = write_toy_csv(root / "pairs.csv", n=60, pair=True)
    for gen in ("task", "prefix"):
        out[f"bert-pair-{gen}"] = large_weights_checkpoint(
            root / f"pair-{gen}", tiny_models["bert"], pairs, gen, {}
        )
    return out


def readme_recipe(adapter: Path, *, pair_block: bool = False) -> dict:
    """Run the adapter README's Python code (as a user would paste it); return its names."""
    blocks = re.findall(r"```python\n(.*?)```", (adapter / "README.md").read_text(), re.S)
    code = blocks[0] + (blocks[1] if pair_block else "")
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(code.replace("path/to/this/folder", str(adapter)), namespace)
    return namespace


@pytest.mark.parametrize("key", list(CASES))
def test_peft_reproduces_ipt_logits(checkpoints, tmp_path, key):
    texts = TEXTS  # unknown words included: no text token shares RoBERTa's padding index
    adapter = write_peft_adapter(checkpoints[key], tmp_path / "adapter")
    recipe = readme_recipe(adapter)
    assert isinstance(recipe["model"], peft.PeftModel)
    ours = load_bundle(write_bundle(checkpoints[key], tmp_path / "bundle"))
    expected = ours.logits(texts)  # one padded batch
    theirs = recipe["ipt_logits"](texts).numpy()
    np.testing.assert_allclose(theirs, expected, atol=1e-5, rtol=1e-4)
    assert np.abs(expected[:, 0] - expected[:, 1]).max() > 1e-2, "logits carry a signal"


def test_gpt2_ignores_token_type_ids_so_peft_agrees_even_when_a_tokenizer_sends_them(
    tiny_models, toy_csv, tmp_path
):
    """GPT-2 embeds token_type_ids with its word embeddings; ipt-ray passes token types only to
    backbones with a token-type vocabulary, so extra zeros from a tokenizer change nothing."""
    checkpoint = large_weights_checkpoint(
        tmp_path / "ckpt", tiny_models["gpt2"], toy_csv, "task", {}
    )
    ours = load_bundle(write_bundle(checkpoint, tmp_path / "b"))
    batch = ours.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        typed = ours.model(
            batch["input_ids"], batch["attention_mask"], torch.zeros_like(batch["input_ids"])
        ).numpy()
        untyped = ours.model(batch["input_ids"], batch["attention_mask"]).numpy()
    np.testing.assert_array_equal(typed, untyped)
    theirs = readme_recipe(write_peft_adapter(checkpoint, tmp_path / "adapter"))["ipt_logits"]
    np.testing.assert_allclose(theirs(TEXTS).numpy(), untyped, atol=1e-5, rtol=1e-4)


def test_adapter_layout_and_configs(checkpoints, tmp_path):
    adapter = write_peft_adapter(checkpoints["llama-prefix-gqa"], tmp_path / "adapter")
    assert sorted(p.name for p in adapter.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.safetensors",
        "ipt_head.json",
    ]
    config = peft.PeftConfig.from_pretrained(str(adapter))
    assert config.peft_type == "PREFIX_TUNING" and config.task_type == "FEATURE_EXTRACTION"
    assert not config.prefix_projection
    # tiny llama: 2 layers, 4 query heads, 2 key/value heads of width 8: W = 16
    assert (
        config.num_virtual_tokens,
        config.num_layers,
        config.num_attention_heads,
        config.token_dim,
    ) == (3, 2, 2, 16)
    assert load_file(str(adapter / "adapter_model.safetensors"))["prompt_embeddings"].shape == (
        3,
        2 * 2 * 16,
    )
    head = json.loads((adapter / "ipt_head.json").read_text())
    assert head["prompt_positions"] == 0 and head["pooling"] == "last"
    assert load_file(str(adapter / "head.safetensors"))["weight"].shape == (2, 32)


def test_reparam_prefix_is_folded(checkpoints, tmp_path):
    adapter = write_peft_adapter(checkpoints["bert-prefix-reparam"], tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["prefix_projection"] is False
    assert list(load_file(str(adapter / "adapter_model.safetensors"))) == ["prompt_embeddings"]


def test_export_from_a_bundle_equals_export_from_its_checkpoint(checkpoints, tmp_path):
    bundle = write_bundle(checkpoints["bert-prefix"], tmp_path / "bundle")
    a = write_peft_adapter(checkpoints["bert-prefix"], tmp_path / "from-checkpoint")
    b = write_peft_adapter(bundle, tmp_path / "from-bundle")
    for name in ("adapter_model.safetensors", "head.safetensors", "adapter_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_wrong_layout_would_be_caught(checkpoints, tmp_path):
    """Negative control: swapping keys and values in the export changes the logits a lot,
    so the round-trip tolerance above tests the layout."""
    adapter = write_peft_adapter(checkpoints["bert-prefix"], tmp_path / "adapter")
    path = adapter / "adapter_model.safetensors"
    emb = load_file(str(path))["prompt_embeddings"]  # (P, L * 2 * W)
    swapped = emb.view(3, 2, 2, -1).flip(2).reshape(3, -1).contiguous()
    save_file({"prompt_embeddings": swapped}, str(path), metadata={"format": "pt"})
    expected = load_bundle(write_bundle(checkpoints["bert-prefix"], tmp_path / "b")).logits(TEXTS)
    theirs = readme_recipe(adapter)["ipt_logits"](TEXTS).numpy()
    assert np.abs(theirs - expected).max() > 1e-2


@pytest.mark.parametrize("gen", ["task", "prefix"])
def test_pairs_need_the_readme_call_that_keeps_token_type_ids(checkpoints, tmp_path, gen):
    """PEFT's feature-extraction forward drops token_type_ids for prompt methods: the second
    text is embedded as segment 0. The README's pair recipe passes them and matches."""
    key = f"bert-pair-{gen}"
    adapter = write_peft_adapter(checkpoints[key], tmp_path / "adapter")
    expected = load_bundle(write_bundle(checkpoints[key], tmp_path / "b")).logits(TEXTS, PAIRS)
    plain = readme_recipe(adapter)["ipt_logits"](TEXTS, PAIRS).numpy()
    assert np.abs(plain - expected).max() > 1e-4, "PEFT's own forward ignores segment ids"
    with pytest.warns(UserWarning, match="Token type ids are not supported"):
        recipe = readme_recipe(adapter)
        batch = recipe["tokenizer"](TEXTS, PAIRS, padding=True, return_tensors="pt")
        recipe["model"](**batch)
    exact = readme_recipe(adapter, pair_block=True)["ipt_logits"](TEXTS, PAIRS).numpy()
    np.testing.assert_allclose(exact, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("generator", ["idpg", "ipt-lookup", "ipt-encoder", "ipt-prefix", "lpt"])
def test_instance_wise_generators_have_no_peft_form(checkpoints, tmp_path, generator):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(checkpoints["bert-task"], checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["generator"] = config["train_config"]["generator"] = generator
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        UserError,
        match=f"generator '{generator}' is instance-wise and has no PEFT form; use --format ipt",
    ):
        write_peft_adapter(checkpoint, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_a_late_task_prompt_has_no_peft_form(tiny_models, toy_csv, tmp_path):
    """PEFT puts a task prompt at the input; one trained at layer 1 would give other logits."""
    train_checkpoint(
        tmp_path / "late", tiny_models["bert"], toy_csv, prompt_length=2, prompt_layer=1,
        max_samples=20,
    )  # fmt: skip
    bundle = write_bundle(tmp_path / "late", tmp_path / "bundle")
    for source in (tmp_path / "late", bundle):
        with pytest.raises(UserError, match=r"joins the input of layer 1 .* use --format ipt"):
            write_peft_adapter(source, tmp_path / "adapter")
        assert not (tmp_path / "adapter").exists()


def test_real_idpg_checkpoint_and_bundle_are_refused(tiny_models, toy_csv, tmp_path):
    checkpoint = tmp_path / "idpg"
    train_checkpoint(
        checkpoint, tiny_models["bert"], toy_csv, generator="idpg",
        generator_options={"bottleneck": 4}, prompt_length=2, max_samples=20,
    )  # fmt: skip
    bundle = write_bundle(checkpoint, tmp_path / "bundle")
    for source in (checkpoint, bundle):
        with pytest.raises(UserError, match="instance-wise"):
            write_peft_adapter(source, tmp_path / "adapter")


def test_prefix_on_a_backbone_without_past_key_values_is_refused(tiny_models, toy_csv, tmp_path):
    """DistilBERT takes no past_key_values: PEFT would build a P + T mask for T keys."""
    checkpoint = large_weights_checkpoint(
        tmp_path / "ckpt", tiny_models["distilbert"], toy_csv, "prefix", {}
    )
    with pytest.raises(UserError, match="distilbert models do not take"):
        write_peft_adapter(checkpoint, tmp_path / "adapter")


def test_export_refuses_bad_sources_and_targets(checkpoints, tmp_path):
    with pytest.raises(UserError, match="neither an ipt-ray bundle"):
        write_peft_adapter(tmp_path, tmp_path / "adapter")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_peft_adapter(checkpoints["bert-task"], tmp_path / "full")
