"""vLLM outputs to OpenAI response bodies (chat.completion, text_completion, embedding list)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from typing import Any


def _token_text(token: Any) -> str:
    text = getattr(token, "decoded_token", None)
    return text if isinstance(text, str) else ""


def _chat_logprobs(completion: Any, top_n: int) -> dict[str, Any] | None:
    steps = completion.logprobs
    if steps is None:
        return None
    content: list[dict[str, Any]] = []
    for token_id, candidates in zip(completion.token_ids, steps, strict=False):
        chosen = candidates.get(token_id)
        ranked = sorted(candidates.items(), key=lambda kv: kv[1].rank or 0)[:top_n]
        text = _token_text(chosen)
        content.append(
            {
                "token": text,
                "logprob": max(chosen.logprob, -9999.0) if chosen else -9999.0,
                "bytes": list(text.encode("utf-8", "replace")),
                "top_logprobs": [
                    {
                        "token": _token_text(lp),
                        "logprob": max(lp.logprob, -9999.0),
                        "bytes": list(_token_text(lp).encode("utf-8", "replace")),
                    }
                    for _, lp in ranked
                ],
            }
        )
    return {"content": content, "refusal": None}


def _completion_logprobs(completion: Any, top_n: int, offset: int) -> dict[str, Any] | None:
    steps = completion.logprobs
    if steps is None:
        return None
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top: list[dict[str, float]] = []
    offsets: list[int] = []
    for token_id, candidates in zip(completion.token_ids, steps, strict=False):
        chosen = candidates.get(token_id)
        text = _token_text(chosen)
        tokens.append(text)
        token_logprobs.append(max(chosen.logprob, -9999.0) if chosen else -9999.0)
        ranked = sorted(candidates.items(), key=lambda kv: kv[1].rank or 0)[: max(top_n, 1)]
        top.append({_token_text(lp): max(lp.logprob, -9999.0) for _, lp in ranked})
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def count_tokens(output: Any) -> tuple[int, int]:
    prompt = len(output.prompt_token_ids or ())
    completion = sum(len(c.token_ids) for c in output.outputs)
    return prompt, completion


def chat_body(response_id: str, model: str, output: Any, top_logprobs: int) -> dict[str, Any]:
    prompt_tokens, completion_tokens = count_tokens(output)
    choices = [
        {
            "index": c.index,
            "message": {"role": "assistant", "content": c.text, "refusal": None},
            "logprobs": _chat_logprobs(c, top_logprobs),
            "finish_reason": c.finish_reason,
        }
        for c in output.outputs
    ]
    return {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def completion_body(
    response_id: str, model: str, output: Any, top_logprobs: int, echo_prompt: str | None
) -> dict[str, Any]:
    prompt_tokens, completion_tokens = count_tokens(output)
    prefix = echo_prompt or ""
    choices = [
        {
            "index": c.index,
            "text": prefix + c.text,
            "logprobs": _completion_logprobs(c, top_logprobs, len(prefix)),
            "finish_reason": c.finish_reason,
        }
        for c in output.outputs
    ]
    return {
        "id": f"cmpl-{response_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def embedding_body(
    model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding: str
) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        values = [float(x) for x in vector]
        embedding: Any = values
        if encoding == "base64":
            packed = struct.pack(f"<{len(values)}f", *values)
            embedding = base64.b64encode(packed).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
