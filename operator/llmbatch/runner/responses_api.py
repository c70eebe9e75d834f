"""vLLM outputs to OpenAI Response objects, the answers of ``/v1/responses`` batch lines.

The request itself runs as a chat request (llmbatch.api.responses_api.to_chat); this module
builds what OpenAI answers: ``object: "response"`` with one assistant message of
``output_text`` content, the request's settings echoed back, and Responses-style usage. A
generation cut by the token limit is ``status: "incomplete"`` with
``incomplete_details.reason: "max_output_tokens"``, as OpenAI reports it.
``output_text`` is not a field of the JSON: the SDKs compute it from ``output``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llmbatch.runner.responses import count_tokens


def echo_fields(body: Mapping[str, Any], temperature: float, top_p: float) -> dict[str, Any]:
    """The request's settings a Response repeats, fixed when the request starts (with the
    sampling values it really runs with). Refused features echo their "off" values."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    tool_choice = body.get("tool_choice")
    return {
        "created_at": int(time.time()),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "background": False,
        "temperature": temperature,
        "top_p": top_p,
        "text": {"format": dict(fmt) if isinstance(fmt, Mapping) else {"type": "text"}},
        "tool_choice": tool_choice if isinstance(tool_choice, str) else "auto",
        "tools": [],
        "truncation": "disabled",
        "user": body.get("user"),
    }


def _usage(output: Any) -> dict[str, Any]:
    prompt_tokens, completion_tokens = count_tokens(output)
    return {
        "input_tokens": prompt_tokens,
        # Prompt tokens vLLM's prefix cache already held.
        "input_tokens_details": {
            "cached_tokens": int(getattr(output, "num_cached_tokens", 0) or 0),
            "cache_write_tokens": 0,
        },
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_body(
    response_id: str, model: str, output: Any, echo: Mapping[str, Any]
) -> dict[str, Any]:
    """The Response object of a finished request (``echo`` from echo_fields)."""
    completion = output.outputs[0]  # a Responses request has one output, no ``n``
    cut = completion.finish_reason == "length"
    status = "incomplete" if cut else "completed"
    message = {
        "type": "message",
        "id": f"msg_{response_id}",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": completion.text, "annotations": []}],
    }
    return {
        "id": f"resp_{response_id}",
        "object": "response",
        **echo,
        "status": status,
        "completed_at": None if cut else int(time.time()),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "model": model,
        "output": [message],
        "usage": _usage(output),
    }
