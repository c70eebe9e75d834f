"""Helpers to write batch input files and read a batch's results in the runner tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmbatch_sandbox.models import TINY_SERVED_NAME


def chat_line(
    custom_id: str,
    content: str,
    *,
    model: str = TINY_SERVED_NAME,
    url: str = "/v1/chat/completions",
    **params: Any,
) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(params)
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return json.dumps(line).encode()


def completion_line(custom_id: str, prompt: Any, **params: Any) -> bytes:
    body: dict[str, Any] = {"model": TINY_SERVED_NAME, "prompt": prompt}
    body.update(params)
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}
    return json.dumps(line).encode()


def chat_batch(count: int, prefix: str = "req", **params: Any) -> list[bytes]:
    params.setdefault("max_tokens", 8)
    params.setdefault("temperature", 0)
    return [
        chat_line(f"{prefix}-{i}", f"Explain the batch {i} in a line.", **params)
        for i in range(count)
    ]


def write_lines(path: Path, lines: Iterable[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def read_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def by_custom_id(rows: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    return {row["custom_id"]: row for row in rows}
