"""Loading a bundle: verify it, load its backbone by id and revision, rebuild the model.

Needs: a bundle folder (:mod:`ipt_ray.artifacts.bundle.format`), torch and transformers; no
Ray, no MLflow. Provides: :func:`load_bundle` and :class:`LoadedBundle`, whose ``predict``,
``logits`` and ``prompt_vectors`` take lists of texts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from ipt_ray.artifacts.bundle.format import CONFIG_NAME
from ipt_ray.artifacts.bundle.verify import verify_bundle
from ipt_ray.core.backbone import load_backbone, load_tokenizer
from ipt_ray.core.config import TrainConfig
from ipt_ray.core.model import IPTModel, build_model
from ipt_ray.data import encode_texts, trim_padding
from ipt_ray.errors import UserError


@dataclass
class LoadedBundle:
    """A bundle turned back into a model, ready to predict (in eval mode, no gradients).

    Attributes:
        model: the :class:`~ipt_ray.core.model.IPTModel` (frozen backbone, generator, head).
        tokenizer: the backbone's tokenizer.
        config: the bundle's ``ipt_config.json``.
        label_names: class names in logit order.
    """

    model: IPTModel
    tokenizer: PreTrainedTokenizerBase
    config: dict[str, Any]
    label_names: list[str]

    @property
    def device(self) -> torch.device:
        return next(self.model.head.parameters()).device

    def _batches(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None, batch_size: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        texts, text_pairs = _check_texts(texts, text_pairs, bool(self.config["is_pair"]))
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pairs is None else text_pairs[start : start + batch_size]
            encoded = encode_texts(
                self.tokenizer,
                texts[start : start + batch_size],
                pairs,
                int(self.config["max_length"]),
            )
            yield {k: v.to(self.device) for k, v in trim_padding(encoded).items()}

    @torch.no_grad()
    def logits(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """(N, C) float32 logits of ``texts`` (and ``text_pairs`` for pair bundles)."""
        self.model.eval()
        out = [
            self.model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).float().cpu()
            for b in self._batches(texts, text_pairs, batch_size)
        ]
        if not out:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """One ``{"label": name, "probabilities": {name: p}}`` per text, in input order.

        Raises:
            UserError: texts are not strings; pairs are missing for a pair bundle, given for a
                single-text one, or of another length.
        """
        logits = torch.from_numpy(self.logits(texts, text_pairs, batch_size))
        probs = torch.softmax(logits.double(), dim=-1).tolist()
        names = self.label_names
        return [
            {
                "label": names[int(np.argmax(row))],
                "probabilities": {name: float(p) for name, p in zip(names, row, strict=True)},
            }
            for row in probs
        ]

    @torch.no_grad()
    def prompt_vectors(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """The generated prompts per text, float32.

        Returns:
            ``{"input": (N, P, H)}`` for input prompts and/or ``{"layer_kv": (N, L, 2, KV, P,
            D)}`` for per-layer key/value prefixes (L layers, keys then values, KV key/value
            heads of width D). Static generators give the same vectors for every text.
        """
        self.model.eval()
        parts: dict[str, list[torch.Tensor]] = {}
        for b in self._batches(texts, text_pairs, batch_size):
            prompts = self.model.prompts(
                b["input_ids"], b["attention_mask"], b.get("token_type_ids")
            )
            if prompts.input is not None:
                parts.setdefault("input", []).append(prompts.input.float().cpu())
            if prompts.layer_kv is not None:  # (L, 2, B, KV, P, D) -> (B, L, 2, KV, P, D)
                parts.setdefault("layer_kv", []).append(
                    prompts.layer_kv.permute(2, 0, 1, 3, 4, 5).float().cpu()
                )
        return {k: torch.cat(v).numpy() for k, v in parts.items()}


def _check_texts(
    texts: Sequence[str], text_pairs: Sequence[str] | None, is_pair: bool
) -> tuple[Sequence[str], Sequence[str] | None]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise UserError("texts must be a list of strings")
    if text_pairs is not None:
        if isinstance(text_pairs, str) or not all(isinstance(t, str) for t in text_pairs):
            raise UserError("text_pairs must be a list of strings")
        if len(text_pairs) != len(texts):
            raise UserError(
                f"got {len(texts)} texts but {len(text_pairs)} text_pairs; "
                "allowed: one pair per text"
            )
        if not is_pair:
            raise UserError("this bundle was trained on single texts; pass no text_pairs")
    elif is_pair and len(texts) > 0:
        raise UserError(
            "this bundle was trained on text pairs; pass text_pairs (one second text per text)"
        )
    return texts, text_pairs


def load_bundle(
    bundle_dir: Path,
    *,
    backbone: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> LoadedBundle:
    """Verify a bundle, load its backbone by id and revision, and rebuild the model.

    Args:
        bundle_dir: the bundle folder.
        backbone: a hub id or local folder to use instead of the recorded backbone (e.g. where
            the recorded local folder does not exist here); the recorded revision is then not
            applied. It must be the same model, or predictions will be wrong.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        trust_remote_code: allow the backbone's own code, only honoured when the bundle also
            records ``trust_remote_code``.

    Raises:
        UserError: the bundle fails :func:`verify_bundle`; the backbone cannot be loaded or
            needs remote code the caller did not allow; the weights do not fit the generator.
    """
    bundle_dir = Path(bundle_dir)
    config = verify_bundle(bundle_dir)
    recorded = config["backbone"]
    if recorded["trust_remote_code"] and not trust_remote_code:
        raise UserError(
            f"the bundle's backbone {recorded['model']!r} runs its own code from the "
            "hub; pass trust_remote_code=True if you trust it"
        )
    remote = bool(recorded["trust_remote_code"] and trust_remote_code)
    model_ref = str(backbone) if backbone is not None else recorded["model"]
    revision = None if backbone is not None else recorded["revision"]
    net, tokenizer = load_backbone(model_ref, revision=revision, trust_remote_code=remote)
    if recorded["tokenizer"] != recorded["model"]:
        tokenizer = load_tokenizer(
            recorded["tokenizer"],
            revision=recorded["tokenizer_revision"],
            trust_remote_code=remote,
            kind="tokenizer",
        )
    generator = config["generator"]
    options = {k: v for k, v in generator["options"].items() if k != "prompt_length"}
    prompt_layer = config["training"]["train_config"].get("prompt_layer", 0)
    if not isinstance(prompt_layer, int) or isinstance(prompt_layer, bool) or prompt_layer < 0:
        raise UserError(
            f"{CONFIG_NAME}: training.train_config.prompt_layer must be a whole number from 0, "
            f"got {prompt_layer!r}"
        )
    train = TrainConfig(
        model=model_ref,
        revision=revision,
        trust_remote_code=remote,
        generator=generator["name"],
        prompt_length=int(config["prompt_length"]),
        generator_options=options,
        max_length=int(config["max_length"]),
        pooling=config["pooling"],
        prompt_layer=prompt_layer,
        head_dropout=0.0,
    )
    model, tokenizer = build_model(
        train, int(config["num_labels"]), backbone=net, tokenizer=tokenizer
    )
    weights = load_file(str(bundle_dir / config["files"]["weights"]))
    try:
        model.load_trainable_state_dict(weights)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise UserError(
            f"bundle weights do not fit generator {generator['name']!r} on backbone "
            f"{model_ref!r}: {first}"
        ) from None
    try:
        model = model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
    return LoadedBundle(model, tokenizer, config, list(config["label_names"]))


__all__ = ["LoadedBundle", "load_bundle"]
