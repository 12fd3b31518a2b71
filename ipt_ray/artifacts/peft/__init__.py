"""Export static prompts as a PEFT adapter (``ipt-ray export --format peft``).

* :mod:`~ipt_ray.artifacts.peft.adapter`: :func:`write_peft_adapter` (the layout and the
  mapping from ipt-ray's prompts to PEFT's are documented there).
* :mod:`~ipt_ray.artifacts.peft.readme`: the adapter's README with code that reproduces
  ipt-ray's logits.
* :mod:`~ipt_ray.artifacts.peft.layout`: the adapter's file names and PEFT method names.
"""

from __future__ import annotations

from ipt_ray.artifacts.peft.adapter import prompt_embeddings, write_peft_adapter
from ipt_ray.artifacts.peft.layout import PEFT_TYPES
from ipt_ray.artifacts.peft.readme import adapter_readme

__all__ = ["PEFT_TYPES", "adapter_readme", "prompt_embeddings", "write_peft_adapter"]
