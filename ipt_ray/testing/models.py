"""Tiny random backbones of every supported architecture and a word-level tokenizer over
the toy vocabulary (:data:`ipt_ray.testing.data.TOY_WORDS`), as transformers' model testers
build them: hidden 32, 2 layers, vocabulary 99."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerFast

from ipt_ray.testing.data import TOY_WORDS

ARCHITECTURES = ("bert", "roberta", "distilbert", "electra", "deberta-v2", "gpt2", "llama")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE = 99  # as in transformers' model testers: room beyond the toy words


def tiny_tokenizer(token_types: bool = True) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer over the toy vocabulary ([CLS] text [SEP] text [SEP]).

    ``token_types=False`` makes it return no ``token_type_ids``, like GPT-2's and Llama's.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIALS + TOY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        if token_types
        else ["input_ids", "attention_mask"],
    )


def tiny_config_kwargs(arch: str) -> dict[str, object]:
    """Config values for a random model with hidden 32, 2 layers, 2 heads, 64 positions."""
    common: dict[str, object] = {"vocab_size": VOCAB_SIZE, "pad_token_id": 0}
    if arch == "distilbert":
        return {
            **common,
            "dim": 32,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 64,
        }
    if arch == "gpt2":
        return {
            **common,
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 2,
            "n_positions": 64,
            "bos_token_id": 2,
            "eos_token_id": 3,
        }
    if arch == "llama":
        return {
            **common,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "bos_token_id": 2,
            "eos_token_id": 3,
        }
    base = {
        **common,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    if arch == "roberta":
        base["max_position_embeddings"] = 65  # RoBERTa reserves padding_idx + 1 = 1 position
    if arch == "electra":
        base["embedding_size"] = 32
    return base


def tiny_backbone(arch: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised base model of ``arch`` (one of :data:`ARCHITECTURES`)."""
    import torch

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    config = AutoConfig.for_model(arch, **tiny_config_kwargs(arch))
    return AutoModel.from_config(config)


def save_tiny_backbone(arch: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny model and tokenizer to ``directory`` (a local model id); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tiny_backbone(arch, seed).save_pretrained(directory)
    tokenizer = tiny_tokenizer(token_types=arch not in ("gpt2", "llama"))
    tokenizer.save_pretrained(directory)
    return directory
