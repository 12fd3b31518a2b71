"""The IPT model: a frozen backbone, a prompt generator, and a trainable classification head.

:meth:`IPTModel.encode` is the one place where prompts meet the backbone: input prompts are
prepended to the word embeddings (attention mask and token types grow by P; position ids are
the architecture's own, so the prompt takes positions 0..P-1 and the text P..P+T-1), and deep
prompts enter every attention layer through :func:`ipt_ray.core.attention.layer_prefix` (the
pass itself is a :class:`~ipt_ray.core.backbone_call.BackboneCall`, so a pack can fuse it). A deep
prefix of length P also occupies positions 0..P-1: the text is shifted to P..P+T-1, as in
P-tuning v2 and PEFT (where the prefix is a key/value cache of length P), so that a prefix
trained here gives the same logits under PEFT. Pooling reads text positions only.

Late prompts (``prompt_layer`` k > 0; Late Prompt Tuning, Liu et al., 2022): the input prompt
joins the sequence at the input of layer k instead of at the embeddings. Layers 0..k-1 run on
the text alone, so their output, the text's states at layer k, is a frozen feature of the
instance: computed live (no gradient), or read from a cache (``layer_states``,
:mod:`ipt_ray.training.features`), in which case layers below k are not run at all. Layers k..L-1
then run on [prompt; text states] with the mask grown by P. The text keeps the positions it had
below layer k (0..T-1); prompt vectors enter as hidden states and carry no position.

Dropout: the backbone stays in eval mode even while training, so it is a fixed function of
its input. Its dropout would perturb the frozen features that every generator conditions on
(and that can be cached); regularisation belongs to the trainable parts (``dropout`` knob of
each generator, ``head_dropout``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ipt_ray.core.backbone import (
    backbone_info,
    count_params,
    default_pooling,
    freeze,
    load_backbone,
    uses_token_types,
)
from ipt_ray.core.backbone_call import BackboneCall, BackboneRunner, run_call
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.layers import StopForward, hidden_states_of, layer_list
from ipt_ray.errors import ConfigError
from ipt_ray.generators import GeneratorInputs, PromptGenerator, Prompts, build_generator


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool text states (B, T, H) with mask (B, T) into (B, H): ``first``, ``mean`` or ``last``."""
    if how == "first":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1  # index of the last real token (right padding)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class IPTModel(nn.Module):
    """Frozen backbone + generator + head. Only ``generator`` and ``head`` have gradients.

    Args:
        backbone: a base model (no task head), frozen by :func:`ipt_ray.core.backbone.freeze`.
        generator: the prompt generator, built for this backbone.
        num_labels: classes C of the head.
        pooling: ``first``, ``mean`` or ``last`` (over text positions).
        head_dropout: dropout before the head.
        prompt_layer: the layer whose input the input prompt joins (0: the embeddings; see
            the module docstring on late prompts). A generator that conditions on the states
            there (``needs_layer_states``, lpt) takes 0 as unset: the middle layer L // 2.

    Raises:
        ConfigError: ``prompt_layer`` outside 0..L-1, with a generator that makes a prefix
            for every layer, or on an architecture late prompts are not supported on.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        generator: PromptGenerator,
        num_labels: int,
        pooling: str,
        head_dropout: float = 0.0,
        prompt_layer: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = freeze(backbone)
        self.token_types = uses_token_types(backbone)
        self.generator = generator
        self.pooling = pooling
        num_layers = int(backbone.config.num_hidden_layers)
        if generator.needs_layer_states and not prompt_layer:
            # A generator that reads the states at the prompt layer (lpt) needs a late prompt;
            # unset, it is the middle layer, as LPT's layer 12 of RoBERTa-large's 24.
            prompt_layer = num_layers // 2
            if not prompt_layer:
                raise ConfigError(
                    f"generator {generator.name!r} puts its prompt at a layer above the input, "
                    f"which this {num_layers}-layer backbone does not have; allowed: a backbone "
                    "of 2 layers or more"
                )
        self.prompt_layer = prompt_layer
        if prompt_layer:
            if not 0 < prompt_layer < num_layers:
                raise ConfigError(
                    f"prompt_layer {prompt_layer} is not a layer of this {num_layers}-layer "
                    f"backbone; allowed: 0 to {num_layers - 1}"
                )
            if generator.deep:
                raise ConfigError(
                    f"prompt_layer {prompt_layer} moves the input prompt, but generator "
                    f"{generator.name!r} with these knobs makes a key/value prefix for every "
                    "layer; use prompt_layer 0"
                )
            layer_list(backbone)  # refuses architectures late prompts are not tested on
        hidden = int(backbone.config.hidden_size)
        #: Runs every pass of the backbone (:mod:`ipt_ray.core.backbone_call`); a pack of
        #: trials puts its own here to fuse the passes of its members.
        self.backbone_runner: BackboneRunner = run_call
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(hidden, num_labels)

    def train(self, mode: bool = True) -> IPTModel:
        super().train(mode)
        self.backbone.eval()  # frozen means a fixed function: no dropout (see module doc)
        return self

    # -- the one place prompts meet the backbone -------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        prompts: Prompts | None,
        layer_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the backbone with prompts; return text states (B, T, H), prompt positions removed.

        ``layer_states`` (B, T, H): the text's frozen states at the input of layer
        ``prompt_layer`` (a late prompt); computed here when not given.
        """
        if not self.token_types:
            token_type_ids = None
        if self.prompt_layer and prompts is not None and prompts.input is not None:
            if layer_states is None:
                layer_states, _ = self.frozen_states(input_ids, attention_mask, token_type_ids)
            return self._encode_late(attention_mask, token_type_ids, prompts.input, layer_states)
        embeds = self.backbone.get_input_embeddings()(input_ids)  # (B, T, H)
        mask = attention_mask
        P = 0
        if prompts is not None and prompts.input is not None:
            P = prompts.input_length
            embeds = torch.cat([prompts.input.to(embeds.dtype), embeds], dim=1)  # (B, P+T, H)
            mask = torch.cat([mask.new_ones(mask.shape[0], P), mask], dim=1)  # (B, P+T)
            if token_type_ids is not None:
                token_type_ids = torch.cat(
                    [token_type_ids.new_zeros(token_type_ids.shape[0], P), token_type_ids], dim=1
                )
        call = BackboneCall(embeds, mask, token_type_ids)
        if prompts is not None and prompts.layer_kv is not None:
            call.layer_kv = prompts.layer_kv
            call.position_ids = self.shifted_positions(
                embeds.shape[0], embeds.shape[1], prompts.prefix_length, embeds.device
            )
        hidden = self.backbone_runner(self.backbone, call)  # (B, P+T, H)
        return hidden[:, P:]

    @torch.no_grad()
    def frozen_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        full: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The text alone through the frozen layers below ``prompt_layer``; no gradient.

        Returns the (B, T, H) states at the input of layer ``prompt_layer``, and with
        ``full`` also the last layer's (B, T, H) output of the same pass (None otherwise: the
        pass stops at layer ``prompt_layer``).
        """
        _, _, layers = layer_list(self.backbone)
        captured: list[torch.Tensor] = []

        def grab(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(hidden_states_of(args, kwargs))
            if not full:
                raise StopForward

        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        handle = layers[self.prompt_layer].register_forward_pre_hook(grab, with_kwargs=True)
        last = None
        try:
            last = self.backbone(**kwargs, use_cache=False).last_hidden_state
        except StopForward:
            pass
        finally:
            handle.remove()
        return captured[0], last

    def _encode_late(
        self,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        prompt: torch.Tensor,
        states: torch.Tensor,
    ) -> torch.Tensor:
        """Layers ``prompt_layer``..L-1 on [prompt (B, P, H); states (B, T, H)] -> (B, T, H).

        One :class:`~ipt_ray.core.backbone_call.BackboneCall` starting at ``prompt_layer``;
        the backbone builds the mask for P + T positions.
        """
        P = int(prompt.shape[1])
        hidden = torch.cat([prompt.to(states.dtype), states], dim=1)  # (B, P+T, H)
        mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], P), attention_mask], 1)
        if token_type_ids is not None:
            token_type_ids = torch.cat(
                [token_type_ids.new_zeros(token_type_ids.shape[0], P), token_type_ids], dim=1
            )
        call = BackboneCall(hidden, mask, token_type_ids, start_layer=self.prompt_layer)
        return self.backbone_runner(self.backbone, call)[:, P:]  # (B, T, H)

    def shifted_positions(
        self, batch: int, length: int, shift: int, device: torch.device
    ) -> torch.Tensor:
        """(B, length) position ids starting ``shift`` places after the architecture's first.

        RoBERTa-style embeddings (which have a ``padding_idx``) count from ``padding_idx + 1``.
        """
        embeddings = getattr(self.backbone, "embeddings", None)
        padding_idx = getattr(embeddings, "padding_idx", None)
        first = padding_idx + 1 if isinstance(padding_idx, int) else 0
        positions = torch.arange(first + shift, first + shift + length, device=device)
        return positions.unsqueeze(0).expand(batch, -1)

    @torch.no_grad()
    def sentence_embedding(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The frozen backbone's pooled representation without prompt, (B, H); no gradient."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids, None)
        return pool(hidden, attention_mask, self.pooling)

    def prompts(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        sentence_embedding: torch.Tensor | None = None,
        layer_states: torch.Tensor | None = None,
    ) -> Prompts:
        """The generator's prompts for a batch (computing the frozen inputs it needs).

        ``layer_states`` (B, T, H): the text's states at the input of ``prompt_layer``, given
        to a generator that asks for them (computed here when not given).
        """
        if self.generator.needs_sentence_embedding and sentence_embedding is None:
            sentence_embedding = self.sentence_embedding(input_ids, attention_mask, token_type_ids)
        if not self.generator.needs_layer_states:
            layer_states = None
        elif layer_states is None:
            layer_states, _ = self.frozen_states(input_ids, attention_mask, token_type_ids)
        with torch.no_grad():
            token_embeddings = self.backbone.get_input_embeddings()(input_ids)
        return self.generator(
            GeneratorInputs(
                input_ids, attention_mask, token_embeddings, sentence_embedding, layer_states
            )
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        sentence_embedding: torch.Tensor | None = None,
        layer_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T) ids and mask -> (B, C) logits.

        ``sentence_embedding`` (B, H) and, for a late prompt, ``layer_states`` (B, T, H) may
        be passed precomputed (a cache); otherwise they are computed when needed (one frozen
        pass of the text gives both).
        """
        if self.prompt_layer and layer_states is None:
            wants_sentence = self.generator.needs_sentence_embedding and sentence_embedding is None
            layer_states, last = self.frozen_states(
                input_ids, attention_mask, token_type_ids, full=wants_sentence
            )
            if last is not None:
                sentence_embedding = pool(last, attention_mask, self.pooling)
        prompts = self.prompts(
            input_ids, attention_mask, token_type_ids, sentence_embedding, layer_states
        )
        hidden = self.encode(  # (B, T, H)
            input_ids, attention_mask, token_type_ids, prompts, layer_states
        )
        pooled = pool(hidden, attention_mask, self.pooling)
        return self.head(self.head_dropout(pooled))  # (B, C)

    # -- what is trained, counted and saved -----------------------------------------------
    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "head": self.head}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Generator and head tensors, keys ``generator.*`` and ``head.*``."""
        out: dict[str, torch.Tensor] = {}
        for prefix, module in self.trainable_modules().items():
            for key, value in module.state_dict().items():
                out[f"{prefix}.{key}"] = value
        return out

    def load_trainable_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what :meth:`trainable_state_dict` saved; raises RuntimeError on a mismatch."""
        for prefix, module in self.trainable_modules().items():
            part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
            module.load_state_dict(part, strict=True)
        unknown = [k for k in state if k.split(".", 1)[0] not in self.trainable_modules()]
        if unknown:
            raise RuntimeError(f"unexpected keys in trainable state: {unknown[:5]}")

    def num_trainable_params(self) -> int:
        return sum(count_params(m) for m in self.trainable_modules().values())

    def num_backbone_params(self) -> int:
        return count_params(self.backbone)

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: the generator's own (it may split them) and the head's."""
        groups = self.generator.param_groups(lr)
        groups.append({"params": list(self.head.parameters()), "lr": head_lr})
        for group in groups:
            group["weight_decay"] = weight_decay
        return [g for g in groups if g["params"]]


def build_model(
    config: TrainConfig,
    num_labels: int,
    *,
    backbone: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[IPTModel, PreTrainedTokenizerBase]:
    """Load (or reuse) the backbone, build the generator and head for ``config``.

    Raises:
        UserError: the model cannot be loaded.
        ConfigError: a knob is invalid, the prompt does not fit the backbone's positions, or
            a deep generator meets an attention that cannot take a prefix.
    """
    if backbone is None or tokenizer is None:
        backbone, tokenizer = load_backbone(
            config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    info = backbone_info(backbone)
    generator = build_generator(config.generator, config.generator_kwargs(), info)
    needed = config.prompt_length + config.max_length
    if needed > info.max_positions:
        raise ConfigError(
            f"prompt_length {config.prompt_length} + max_length {config.max_length} = "
            f"{needed} exceeds the {info.max_positions} positions of {config.model!r}; allowed: "
            f"prompt_length + max_length <= {info.max_positions}"
        )
    pooling = config.pooling or default_pooling(info)
    model = IPTModel(
        backbone, generator, num_labels, pooling, config.head_dropout, config.prompt_layer
    )
    # The layer the model chose (lpt's default) is what the run logs and checkpoints, as
    # validate() fills in the learning rate actually used.
    config.prompt_layer = model.prompt_layer
    return model, tokenizer
