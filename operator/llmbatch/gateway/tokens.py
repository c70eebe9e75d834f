"""Token counts for the gateway's cost estimates (the rule is ``llmbatch.api.tokens``), with the
model's own tokenizer when the gateway can read it.

The tokenizer comes from the model's ``tokenizer`` setting or its ``source`` when either is a
local directory (a PVC or a volume shared with the gateway), with the model's ``chatTemplate``
if it sets one. Without a local tokenizer, or without transformers in the image, the count is
the heuristic estimate and the answer says so.
"""

from __future__ import annotations

import threading
from typing import Any

from llmbatch.api.tokens import PromptCounter, completion_budget, load_counter, tokenizer_dir
from llmbatch.gateway.config import ModelEntry


def prompt_counter(model: ModelEntry) -> PromptCounter:
    for candidate in (model.tokenizer, model.source):
        directory = tokenizer_dir(candidate)
        if directory is not None:
            try:
                return load_counter(directory, model.chat_template)
            except ImportError:
                break
    return PromptCounter()


_cache: dict[str, PromptCounter] = {}
_lock = threading.Lock()


def counter_for(name: str, model: ModelEntry) -> PromptCounter:
    """One counter per served model for the life of the process (loading takes seconds)."""
    with _lock:
        if name not in _cache:
            _cache[name] = prompt_counter(model)
        return _cache[name]


def max_output_tokens(
    body: dict[str, Any], prompt_tokens: int, model: ModelEntry, endpoint: str
) -> int:
    """The most tokens a request may generate: its max_tokens (per choice), else what the
    model's context leaves after the prompt."""
    context = model.engine_args.get("max_model_len")
    left = max(0, context - prompt_tokens) if isinstance(context, int) else 0
    return completion_budget(body, endpoint, left)[0]
