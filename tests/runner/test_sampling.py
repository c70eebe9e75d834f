"""OpenAI request fields to vLLM SamplingParams (no engine needed)."""

from __future__ import annotations

from typing import Any

import pytest

from llmbatch.runner.sampling import RequestError, build_sampling_params


def test_chat_fields_map_onto_sampling_params() -> None:
    params = build_sampling_params(
        {
            "max_completion_tokens": 7,
            "max_tokens": 99,
            "temperature": 0.5,
            "top_p": 0.9,
            "n": 2,
            "stop": "END",
            "seed": 3,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "logprobs": True,
            "top_logprobs": 4,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "object"}},
            },
        },
        {},
        chat=True,
    )
    assert params.max_tokens == 7  # max_completion_tokens wins over the legacy field
    assert (params.temperature, params.top_p, params.n, params.seed) == (0.5, 0.9, 2, 3)
    assert params.stop == ["END"] and params.logprobs == 4
    assert (params.presence_penalty, params.frequency_penalty) == (0.1, 0.2)
    assert params.structured_outputs is not None
    assert params.structured_outputs.json == {"type": "object"}


def test_defaults_follow_the_model_then_openai() -> None:
    chat = build_sampling_params({}, {"temperature": 0.3}, chat=True)
    assert chat.temperature == 0.3 and chat.max_tokens is None and chat.logprobs is None
    legacy = build_sampling_params({}, {}, chat=False)
    assert legacy.temperature == 1.0 and legacy.max_tokens == 16


def test_json_object_format() -> None:
    params = build_sampling_params({"response_format": {"type": "json_object"}}, {}, chat=True)
    assert params.structured_outputs is not None and params.structured_outputs.json_object


@pytest.mark.parametrize(
    "body",
    [
        {"temperature": "hot"},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"stop": 5},
        {"top_p": 7.0},
        {"n": 0},
        {"logprobs": 3},
        {"top_logprobs": 2},
        {"response_format": {"type": "xml"}},
        {"response_format": {"type": "json_schema", "json_schema": {}}},
        {"logit_bias": {"a": 1}},
    ],
)
def test_bad_values_raise_request_errors(body: dict[str, Any]) -> None:
    with pytest.raises(RequestError):
        build_sampling_params(body, {}, chat=True)
