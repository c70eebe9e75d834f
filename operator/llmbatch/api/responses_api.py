"""The OpenAI Responses API (``/v1/responses``) as a batch request: which body fields run here,
and the chat request each body becomes.

A Responses request runs as a chat request through the model's chat template: ``instructions``
becomes a system message first, ``input`` (a string, or message items whose content is a string
or text parts) the messages after it, ``max_output_tokens`` the completion budget and
``text.format`` the structured-output format (``response_format`` in chat terms).

What cannot run on vLLM in a batch (tools, background mode, stored conversations, reasoning
effort, extra output to include, ...) is refused with the field named, never dropped silently:
the same check runs in the line rules (``llmbatch validate``, the gateway's upload, the
runner's plan) and in the runner, so all of them refuse the same line for the same reason.
Pure functions over JSON values; nothing here imports vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

ProblemKind = Literal["unsupported", "invalid"]


class BodyProblem(ValueError):
    """A Responses body that cannot run: ``field`` is its dotted path in the body, ``kind``
    says whether the field is valid OpenAI but not served here, or malformed."""

    def __init__(self, field: str, message: str, kind: ProblemKind = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind


# Fields that only carry information back (metadata, user: echoed) or are hints with no
# effect on a local engine (safety_identifier, prompt_cache_key, service_tier,
# parallel_tool_calls) are accepted and otherwise ignored.

# vLLM's own sampling fields beyond OpenAI's, as vLLM's chat endpoint takes them.
VLLM_EXTRAS = ("seed", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop")


def _off(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


# Fields OpenAI defines that need something a batch on vLLM does not have; each is accepted
# only at its "off" value. The text says what the field needs.
_REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tools": (_off, "tools (function calling, built-in tools) are not supported in batches here"),
    "tool_choice": (
        lambda v: v is None or v in ("none", "auto"),
        "only 'none' or 'auto' (with no tools) is supported",
    ),
    "background": (_off, "background mode does not apply to a batch"),
    "previous_response_id": (_off, "responses are not stored, so none can be continued"),
    "store": (_off, "responses are not stored; leave store unset or false"),
    "conversation": (_off, "conversations are not stored here"),
    "prompt": (_off, "stored prompt templates are not available here"),
    "include": (_off, "no extra output items can be included"),
    "max_tool_calls": (_off, "tools are not supported"),
    "top_logprobs": (lambda v: v in (None, 0), "log probabilities are not returned here"),
    "truncation": (
        lambda v: v in (None, "disabled"),
        "only 'disabled' is supported: a prompt longer than the context fails",
    ),
    "stream": (_off, "a batch request cannot stream"),
    "stream_options": (_off, "a batch request cannot stream"),
    "context_management": (_off, "context management is not supported"),
    "background_options": (_off, "background mode does not apply to a batch"),
    "prompt_cache_options": (_off, "prompt cache options are not supported"),
    "moderation": (_off, "moderation is not available here"),
    "image": (_off, "image generation is not available here"),
    "access_programs": (_off, "programs are not available here"),
}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text")
_MEDIA_PARTS = ("input_image", "input_file", "input_audio")


def check_fields(body: Mapping[str, Any]) -> None:
    """Raise BodyProblem for the first field that asks for what is not served here. Fields
    OpenAI does not define are ignored, as on the chat path and in vLLM's own server."""
    for name, value in body.items():
        refused = _REFUSED.get(name)
        if refused is not None:
            accepts, why = refused
            if not accepts(value):
                raise BodyProblem(name, why, "unsupported")
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, Mapping):
            raise BodyProblem("reasoning", "must be an object")
        for key, value in reasoning.items():
            if value is not None and value != "none":
                raise BodyProblem(
                    f"reasoning.{key}", "reasoning settings are not supported here", "unsupported"
                )


def _part_text(part: Any, where: str) -> str:
    if not isinstance(part, Mapping):
        raise BodyProblem(where, "a content part must be an object")
    kind = part.get("type")
    if kind in _MEDIA_PARTS:
        raise BodyProblem(f"{where}.type", f"{kind} parts are not supported", "unsupported")
    if kind not in _TEXT_PARTS:
        raise BodyProblem(f"{where}.type", f"must be one of {', '.join(_TEXT_PARTS)}")
    text = part.get("text")
    if not isinstance(text, str):
        raise BodyProblem(f"{where}.text", "must be a string")
    return text


def _message(item: Any, where: str) -> dict[str, str]:
    if not isinstance(item, Mapping):
        raise BodyProblem(where, "an input item must be an object")
    kind = item.get("type", "message")
    if kind != "message":
        raise BodyProblem(
            f"{where}.type", f"input items of type {kind!r} are not supported", "unsupported"
        )
    role = item.get("role")
    if role not in _ROLES:
        raise BodyProblem(f"{where}.role", f"must be one of {', '.join(_ROLES)}")
    content = item.get("content")
    if isinstance(content, list) and content:
        # Text parts join with a newline, as vLLM joins them for a chat template.
        text = "\n".join(_part_text(p, f"{where}.content[{i}]") for i, p in enumerate(content))
    elif isinstance(content, str):
        text = content
    else:
        raise BodyProblem(f"{where}.content", "must be a string or a non-empty list of parts")
    # developer is OpenAI's newer name for system; chat templates know only system.
    return {"role": _ROLES[role], "content": text}


def messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages of a Responses body: the instructions as a system message first, then
    the input. Raises BodyProblem."""
    out: list[dict[str, str]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BodyProblem("instructions", "must be a string")
        out.append({"role": "system", "content": instructions})
    value = body.get("input")
    if isinstance(value, str):
        out.append({"role": "user", "content": value})
    elif isinstance(value, list) and value:
        out.extend(_message(item, f"input[{i}]") for i, item in enumerate(value))
    else:
        raise BodyProblem("input", "must be a string or a non-empty list of message items")
    return out


def response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format`` (None for plain text). Raises
    BodyProblem."""
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise BodyProblem("text", "must be an object")
    verbosity = text.get("verbosity")
    if verbosity not in (None, "medium"):
        raise BodyProblem("text.verbosity", "only 'medium' is supported", "unsupported")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or not isinstance(fmt.get("type"), str):
        raise BodyProblem("text.format", "must be an object with a type")
    kind = fmt["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise BodyProblem("text.format.type", "must be text, json_schema or json_object")
    if not isinstance(fmt.get("name"), str) or not fmt["name"]:
        raise BodyProblem("text.format.name", "is required for json_schema")
    if not isinstance(fmt.get("schema"), Mapping):
        raise BodyProblem("text.format.schema", "must be a JSON Schema object")
    spec = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
    return {"type": "json_schema", "json_schema": spec}


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat completion body a Responses body runs as. Raises BodyProblem."""
    check_fields(body)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages(body)}
    if "max_output_tokens" in body:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    fmt = response_format(body)
    if fmt is not None:
        chat["response_format"] = fmt
    for name in ("temperature", "top_p", *VLLM_EXTRAS):
        if name in body:
            chat[name] = body[name]
    return chat


def problem(body: Mapping[str, Any]) -> BodyProblem | None:
    """Why this Responses body cannot run, or None."""
    try:
        to_chat(body)
    except BodyProblem as exc:
        return exc
    return None
