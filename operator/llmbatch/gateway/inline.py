"""Batch input given inline in a JSON request instead of an uploaded file.

Each item is either a full batch line (``custom_id``, ``method``, ``url``, ``body``) or a
shorthand: ``{"prompt": ...}`` or ``{"messages": [...]}`` (or ``{"input": ...}`` for
embeddings and responses), with any other keys (``max_tokens``, ``temperature``,
``custom_id``) kept. Shorthands get ``custom_id`` ``request-<n>`` unless they set one.
"""

from __future__ import annotations

import json
from typing import Any

from llmbatch.api.lines import Endpoint
from llmbatch.gateway.errors import bad_request

_SHORTHAND_KEYS = ("prompt", "messages", "input")


def to_lines(items: list[Any], model: str | None, endpoint: str) -> list[dict[str, Any]]:
    lines = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise bad_request(f"input[{index - 1}] must be a JSON object", param="input")
        if "body" in item and "custom_id" in item:
            lines.append(item)
            continue
        if not any(key in item for key in _SHORTHAND_KEYS):
            raise bad_request(
                f"input[{index - 1}] needs 'prompt', 'messages' or 'input', or "
                "must be a whole batch line",
                param="input",
            )
        if model is None:
            raise bad_request("'model' is required with inline shorthand input", param="model")
        rest = {k: v for k, v in item.items() if k != "custom_id"}
        body: dict[str, Any] = {"model": model}
        if endpoint == Endpoint.CHAT_COMPLETIONS and "prompt" in rest:
            body["messages"] = [{"role": "user", "content": rest.pop("prompt")}]
        if endpoint == Endpoint.RESPONSES and "prompt" in rest and "input" not in rest:
            body["input"] = rest.pop("prompt")
        body.update(rest)
        custom_id = item.get("custom_id", f"request-{index}")
        lines.append({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body})
    if not lines:
        raise bad_request("input holds no requests", param="input")
    return lines


def to_jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
