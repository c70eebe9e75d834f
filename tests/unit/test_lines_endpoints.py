"""The line rules for /v1/responses bodies and for endpoints vLLM cannot serve: every refused
field and endpoint gets its own error naming it; served shapes pass; the chat request a
Responses body runs as; the token estimate of a Responses body."""

from __future__ import annotations

from typing import Any

import pytest

from llmbatch.api import responses_api
from llmbatch.api.lines import (
    Endpoint,
    ErrorCode,
    FileValidator,
    LineError,
    LineRule,
    ValidLine,
    is_unservable,
)
from llmbatch.api.tokens import CHAT_MESSAGE_TOKENS, completion_budget, heuristic_tokens


def line(body: dict[str, Any], url: str = "/v1/responses", custom_id: str = "r1") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def responses_body(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny-qwen", "input": "Say hi.", **fields}


def check(body: dict[str, Any], url: str = "/v1/responses") -> ValidLine | LineError:
    return FileValidator().check_object(1, line(body, url))


SERVED_BODIES = {
    "string input": responses_body(),
    "message items": responses_body(
        input=[
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "b", "annotations": []}],
            },
            {"role": "user", "content": "c"},
        ]
    ),
    "every served field": responses_body(
        instructions="You answer in one word.",
        max_output_tokens=16,
        temperature=0.2,
        top_p=0.9,
        metadata={"team": "a"},
        user="u-1",
        store=False,
        background=False,
        tools=[],
        tool_choice="auto",
        include=[],
        reasoning={"effort": None},
        truncation="disabled",
        parallel_tool_calls=True,
        seed=7,
        text={"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
    ),
    "plain text format": responses_body(text={"format": {"type": "text"}}),
    "json object format": responses_body(text={"format": {"type": "json_object"}}),
}


@pytest.mark.parametrize("body", SERVED_BODIES.values(), ids=SERVED_BODIES.keys())
def test_served_responses_bodies_pass(body: dict[str, Any]) -> None:
    result = check(body)
    assert isinstance(result, ValidLine), result
    assert result.request.url == Endpoint.RESPONSES


REFUSED_FIELDS: dict[str, dict[str, Any]] = {
    "tools": {"tools": [{"type": "function", "name": "f", "parameters": {}}]},
    "tool_choice": {"tool_choice": "required"},
    "background": {"background": True},
    "previous_response_id": {"previous_response_id": "resp_123"},
    "store": {"store": True},
    "conversation": {"conversation": "conv_1"},
    "prompt": {"prompt": {"id": "pmpt_1"}},
    "reasoning.effort": {"reasoning": {"effort": "high"}},
    "include": {"include": ["message.output_text.logprobs"]},
    "stream": {"stream": True},
    "truncation": {"truncation": "auto"},
    "text.verbosity": {"text": {"verbosity": "low"}},
    "input[0].type": {"input": [{"type": "function_call_output", "call_id": "c", "output": ""}]},
    "input[0].content[0].type": {
        "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
    },
}


@pytest.mark.parametrize("field", REFUSED_FIELDS)
def test_each_unsupported_field_is_refused_by_name(field: str) -> None:
    result = check(responses_body(**REFUSED_FIELDS[field]))
    assert isinstance(result, LineError), result
    assert result.rule == LineRule.UNSUPPORTED_FIELD
    assert result.code == ErrorCode.INVALID_REQUEST
    assert result.message.startswith(f"body.{field}: ")
    assert result.custom_id == "r1"


MALFORMED: dict[str, dict[str, Any]] = {
    "input": {"input": []},
    "instructions": {"instructions": ["not", "text"]},
    "input[0].role": {"input": [{"role": "tool", "content": "x"}]},
    "input[0].content": {"input": [{"role": "user", "content": 5}]},
    "input[0].content[0].text": {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
    "text.format": {"text": {"format": "json"}},
    "text.format.type": {"text": {"format": {"type": "yaml"}}},
    "text.format.name": {"text": {"format": {"type": "json_schema", "schema": {}}}},
    "text.format.schema": {"text": {"format": {"type": "json_schema", "name": "x"}}},
}


@pytest.mark.parametrize("field", MALFORMED)
def test_malformed_responses_bodies_name_the_field(field: str) -> None:
    body = responses_body(**MALFORMED[field])
    result = check(body)
    assert isinstance(result, LineError), result
    assert result.rule == LineRule.INVALID_BODY
    assert result.message.startswith(f"body.{field}: ")


def test_fields_openai_does_not_define_are_ignored_as_on_the_chat_path() -> None:
    body = responses_body(padding="x", note={"a": 1})
    assert isinstance(check(body), ValidLine)
    assert "padding" not in responses_api.to_chat(body)


def test_a_missing_input_is_refused() -> None:
    result = check({"model": "tiny-qwen"})
    assert isinstance(result, LineError) and result.message.startswith("body.input: ")


UNSERVABLE = [
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
]


@pytest.mark.parametrize("url", UNSERVABLE)
def test_endpoints_vllm_cannot_serve_get_unsupported_endpoint(url: str) -> None:
    assert is_unservable(url)
    result = check({"model": "tiny-qwen", "input": "x"}, url)
    assert isinstance(result, LineError)
    assert result.rule == LineRule.UNSUPPORTED_ENDPOINT
    assert result.code == ErrorCode.UNSUPPORTED_ENDPOINT
    body = result.as_error_body()
    assert body.code == "unsupported_endpoint"
    assert url in body.message and "/v1/responses" in body.message


def test_in_a_mixed_file_the_unservable_line_gets_its_own_error() -> None:
    """A chat batch with a moderation line: that line is unsupported_endpoint (not a mixed url),
    the chat lines around it pass."""
    validator = FileValidator(endpoint=Endpoint.CHAT_COMPLETIONS)
    chat = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]}
    results = [
        validator.check_object(1, line(chat, "/v1/chat/completions", "a")),
        validator.check_object(2, line({"model": "m", "input": "x"}, "/v1/moderations", "b")),
        validator.check_object(3, line(chat, "/v1/chat/completions", "c")),
    ]
    assert [type(r).__name__ for r in results] == ["ValidLine", "LineError", "ValidLine"]
    refused = results[1]
    assert isinstance(refused, LineError) and refused.code == ErrorCode.UNSUPPORTED_ENDPOINT


def test_unknown_urls_stay_invalid_url() -> None:
    result = check({"model": "tiny-qwen"}, "/v1/moderationsx")
    assert isinstance(result, LineError) and result.rule == LineRule.INVALID_URL
    assert not is_unservable("/v1/moderationsx")


def test_a_responses_body_becomes_the_chat_request_it_runs_as() -> None:
    body = responses_body(
        instructions="Reply in JSON.",
        input=[
            {"role": "developer", "content": "Keep it short."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "one"},
                    {"type": "input_text", "text": "two"},
                ],
            },
        ],
        max_output_tokens=32,
        temperature=0.5,
        top_p=0.8,
        seed=3,
        metadata={"k": "v"},
        user="ignored",
        text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    )
    assert responses_api.to_chat(body) == {
        "model": "tiny-qwen",
        "messages": [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "system", "content": "Keep it short."},
            {"role": "user", "content": "one\ntwo"},
        ],
        "max_completion_tokens": 32,
        "temperature": 0.5,
        "top_p": 0.8,
        "seed": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "n", "schema": {"type": "object"}},
        },
    }
    assert responses_api.to_chat(responses_body(text={"format": {"type": "json_object"}}))[
        "response_format"
    ] == {"type": "json_object"}


def test_token_estimate_of_a_responses_body_counts_it_as_chat() -> None:
    body = responses_body(instructions="12345678", input="1234", max_output_tokens=20)
    expected = 2 + 1 + 2 * CHAT_MESSAGE_TOKENS  # instructions, input, two messages
    assert heuristic_tokens(body, Endpoint.RESPONSES) == expected
    # Without the endpoint the Responses-only fields tell it from an embedding input.
    assert heuristic_tokens(body) == expected
    assert heuristic_tokens({"model": "m", "input": "1234"}) == 1  # an embedding
    assert heuristic_tokens({"model": "m", "input": "1234"}, Endpoint.RESPONSES) == 1 + 4
    assert completion_budget(body, Endpoint.RESPONSES, 100) == (20, False)
