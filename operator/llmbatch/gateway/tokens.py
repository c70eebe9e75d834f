"""Token counts for the gateway's cost estimates (the rule is ``llmbatch.api.tokens``), with the
model's own tokenizer when the gateway can read it.

The tokenizer comes from the model's ``tokenizer`` setting or its ``source``
(``llmbatch.models.tokenizer_source``: a local directory such as a PVC shared with the gateway,
the tokenizer files alone of an ``s3://`` model, read with the gateway's own S3 settings and
credentials, or a locally cached ``hf://`` model), with the model's ``chatTemplate`` if it sets
one. Without a readable tokenizer, or without transformers in the image, the count is the
heuristic estimate and the answer says so.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from llmbatch.api.tokens import PromptCounter, completion_budget, load_counter
from llmbatch.gateway.config import ModelEntry
from llmbatch.models.tokenizer_source import TokenizerNotFound, tokenizer_directory
from llmbatch.storage import ObjectStore, StorageSettings

log = logging.getLogger(__name__)


def prompt_counter(model: ModelEntry, settings: StorageSettings | None = None) -> PromptCounter:
    for candidate in (model.tokenizer, model.source):
        if not candidate:
            continue
        try:
            directory = tokenizer_directory(candidate, settings or StorageSettings.from_env())
            return load_counter(directory, model.chat_template)
        except TokenizerNotFound as exc:
            log.info("no tokenizer for cost estimates: %s", exc)
        except (ImportError, OSError, ValueError) as exc:
            log.warning("tokenizer not usable, cost estimates use the heuristic: %s", exc)
            break
    return PromptCounter()


_cache: dict[str, PromptCounter] = {}
_lock = threading.Lock()


def counter_for(name: str, model: ModelEntry, store: ObjectStore | None = None) -> PromptCounter:
    """One counter per served model for the life of the process (loading takes seconds). An
    s3:// model's tokenizer files are read with the settings of ``store``, the gateway's."""
    settings = getattr(store, "settings", None)
    with _lock:
        if name not in _cache:
            usable = settings if isinstance(settings, StorageSettings) else None
            _cache[name] = prompt_counter(model, usable)
        return _cache[name]


def max_output_tokens(
    body: dict[str, Any], prompt_tokens: int, model: ModelEntry, endpoint: str
) -> int:
    """The most tokens a request may generate: its max_tokens (per choice), else what the
    model's context leaves after the prompt."""
    context = model.engine_args.get("max_model_len")
    left = max(0, context - prompt_tokens) if isinstance(context, int) else 0
    return completion_budget(body, endpoint, left)[0]
