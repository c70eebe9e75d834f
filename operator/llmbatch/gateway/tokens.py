"""Token counts for cost estimates, with the model's own tokenizer when the gateway can read it.

The tokenizer comes from the model's ``tokenizer`` setting or its ``source`` when either is a
local directory (a PVC or a volume shared with the gateway); chat requests are counted after
the chat template is applied, as vLLM will see them. Without a local tokenizer the count is an
estimate (UTF-8 bytes / 4) and the answer says so.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from llmbatch.gateway.config import ModelEntry

_BYTES_PER_TOKEN = 4


class TokenCounter:
    def __init__(self, model: ModelEntry) -> None:
        self.tokenizer: Any = None
        self.exact = False
        for candidate in (model.tokenizer, model.source):
            if (
                candidate
                and Path(candidate).is_dir()
                and (Path(candidate) / "tokenizer_config.json").exists()
            ):
                # transformers is heavy: imported only when an estimate needs it, and optional
                # (the gateway image may not carry it; then counts are estimates).
                try:
                    from transformers import AutoTokenizer
                except ImportError:
                    break
                self.tokenizer = AutoTokenizer.from_pretrained(candidate)
                if model.chat_template:
                    self.tokenizer.chat_template = model.chat_template
                self.exact = True
                break

    def _encode(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, -(-len(text.encode()) // _BYTES_PER_TOKEN)) if text else 0
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def count(self, body: dict[str, Any]) -> int:
        """Prompt tokens of one request body (chat, completion or embedding)."""
        messages = body.get("messages")
        if isinstance(messages, list):
            if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
                ids = self.tokenizer.apply_chat_template(
                    messages, tokenize=True, add_generation_prompt=True
                )
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                return len(ids)
            return sum(self._encode(_content_text(m)) for m in messages if isinstance(m, dict))
        for key in ("prompt", "input"):
            value = body.get(key)
            if isinstance(value, str):
                return self._encode(value)
            if isinstance(value, list):
                return sum(
                    self._encode(v) if isinstance(v, str) else len(v)
                    for v in value
                    if isinstance(v, str | list)
                )
        return 0


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return json.dumps(content) if content is not None else ""


_cache: dict[str, TokenCounter] = {}
_lock = threading.Lock()


def counter_for(name: str, model: ModelEntry) -> TokenCounter:
    """One counter per served model for the life of the process (loading takes seconds)."""
    with _lock:
        if name not in _cache:
            _cache[name] = TokenCounter(model)
        return _cache[name]


def max_output_tokens(
    body: dict[str, Any], prompt_tokens: int, model: ModelEntry, endpoint: str
) -> int:
    """The most tokens a request may generate: its max_tokens, else what the context leaves."""
    if endpoint == "/v1/embeddings":
        return 0
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value >= 0:
            return value
    context = model.engine_args.get("max_model_len")
    if isinstance(context, int):
        return max(0, context - prompt_tokens)
    return 0
