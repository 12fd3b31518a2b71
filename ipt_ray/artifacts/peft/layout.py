"""The files of a PEFT adapter folder and the PEFT method of each static generator: what the
writer (:mod:`.adapter`) and the adapter's README (:mod:`.readme`) both name."""

from __future__ import annotations

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "ipt_head.json"

#: ipt-ray generator -> PEFT method. Every other generator is instance-wise.
PEFT_TYPES = {"task": "PROMPT_TUNING", "prefix": "PREFIX_TUNING"}
#: Offline aliases and the hub model they are a copy of (for ``base_model_name_or_path``).
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
