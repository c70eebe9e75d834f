"""Input file rules: every bad line gets an error naming its line number and the reason; good
lines pass; limits are configurable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmbatch.api.lines import (
    Endpoint,
    ErrorCode,
    FileValidator,
    InputLine,
    Limits,
    LineError,
    LineRule,
    OutputLine,
    ValidLine,
    iter_validated,
)


def request(custom_id: str = "r1", **overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]},
    }
    line.update(overrides)
    return line


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def only_error(lines: list[bytes], validator: FileValidator | None = None) -> LineError:
    errors = [r for r in iter_validated(lines, validator) if isinstance(r, LineError)]
    assert len(errors) == 1, errors
    return errors[0]


def test_valid_lines_pass() -> None:
    lines = [raw(request(f"r{i}")) for i in range(1, 6)]
    results = list(iter_validated(lines))
    assert all(isinstance(r, ValidLine) for r in results)
    assert [r.line for r in results] == [1, 2, 3, 4, 5]
    first = results[0]
    assert isinstance(first, ValidLine)
    assert first.request == InputLine(
        custom_id="r1",
        method="POST",
        url=Endpoint.CHAT_COMPLETIONS,
        body={"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert first.raw_size == len(lines[0])


def test_trailing_newline_and_blank_lines_are_skipped_but_counted() -> None:
    lines = [raw(request("a")) + b"\n", b"\n", b"   ", raw(request("b")) + b"\r\n"]
    results = list(iter_validated(lines))
    assert [type(r) for r in results] == [ValidLine, ValidLine]
    # Line numbers stay those of the file, so errors point at the right line.
    assert [r.line for r in results] == [1, 4]


@pytest.mark.parametrize(
    ("bad", "rule", "reason"),
    [
        (
            raw({k: v for k, v in request().items() if k != "custom_id"}),
            LineRule.MISSING_CUSTOM_ID,
            "custom_id is missing",
        ),
        (raw(request("")), LineRule.MISSING_CUSTOM_ID, "custom_id is missing"),
        (raw(request(custom_id=7)), LineRule.MISSING_CUSTOM_ID, "custom_id is missing"),
        (raw(request("x" * 513)), LineRule.MISSING_CUSTOM_ID, "longer than 512"),
        (raw(request(method="GET")), LineRule.INVALID_METHOD, "method must be POST, got 'GET'"),
        (
            raw({k: v for k, v in request().items() if k != "method"}),
            LineRule.INVALID_METHOD,
            "got None",
        ),
        (
            raw(request(url="/v1/assistants")),
            LineRule.INVALID_URL,
            "'/v1/assistants' is not supported",
        ),
        (raw(request(url=None)), LineRule.INVALID_URL, "is not supported"),
        (b'{"custom_id": "r1", "method": "POST"', LineRule.INVALID_JSON, "not valid JSON"),
        (b"not json at all", LineRule.INVALID_JSON, "not valid JSON"),
        (b"[1, 2]", LineRule.NOT_AN_OBJECT, "must be a JSON object"),
        (raw(request(body={"messages": []})), LineRule.MISSING_MODEL, "body.model is missing"),
        (raw(request(body={"model": ""})), LineRule.MISSING_MODEL, "body.model is missing"),
        (raw(request(body="hello")), LineRule.INVALID_BODY, "body must be a JSON object"),
        (raw(request(extra=1)), LineRule.INVALID_BODY, "extra"),
        (b'{"custom_id": "r\xff", "method": "POST"}', LineRule.INVALID_UTF8, "not valid UTF-8"),
    ],
    ids=lambda v: v.value if isinstance(v, LineRule) else None,
)
def test_bad_line_names_line_number_and_reason(bad: bytes, rule: LineRule, reason: str) -> None:
    error = only_error([raw(request("ok-1")), raw(request("ok-2")), bad])
    assert error.line == 3
    assert error.rule is rule
    assert reason in error.message
    assert error.code is ErrorCode.INVALID_REQUEST
    body = error.as_error_body()
    assert body.line == 3
    assert body.code == "invalid_request"
    assert body.message.startswith(f"{rule.value}: ")


def test_duplicate_custom_id() -> None:
    error = only_error([raw(request("a")), raw(request("b")), raw(request("a"))])
    assert (error.line, error.rule, error.custom_id) == (3, LineRule.DUPLICATE_CUSTOM_ID, "a")
    assert "'a' appears earlier" in error.message


def test_a_rejected_line_does_not_reserve_its_custom_id() -> None:
    # The first "a" is bad, so the second "a" is the only request with that id.
    lines = [raw(request("a", method="GET")), raw(request("a"))]
    results = list(iter_validated(lines))
    assert isinstance(results[0], LineError)
    assert isinstance(results[1], ValidLine)


def test_duplicates_can_be_left_to_the_caller() -> None:
    # A shard sees only its own slice; the whole-file check happens once, up front.
    validator = FileValidator(check_duplicates=False)
    results = list(iter_validated([raw(request("a")), raw(request("a"))], validator))
    assert all(isinstance(r, ValidLine) for r in results)


def test_mixed_url_names_the_file_endpoint() -> None:
    embedding = request("e", url="/v1/embeddings", body={"model": "tiny-qwen", "input": "x"})
    error = only_error([raw(request("a")), raw(embedding)])
    assert (error.line, error.rule) == (2, LineRule.MIXED_URL)
    assert "/v1/embeddings differs from the file's endpoint /v1/chat/completions" in error.message


def test_fixed_endpoint_rejects_the_first_line_too() -> None:
    validator = FileValidator(endpoint=Endpoint.EMBEDDINGS)
    error = only_error([raw(request("a"))], validator)
    assert (error.line, error.rule) == (1, LineRule.MIXED_URL)


def test_line_limit_is_configurable() -> None:
    validator = FileValidator(limits=Limits(max_lines=3))
    results = list(iter_validated([raw(request(f"r{i}")) for i in range(5)], validator))
    assert [type(r) for r in results] == [ValidLine] * 3 + [LineError] * 2
    error = results[3]
    assert isinstance(error, LineError)
    assert (error.line, error.rule) == (4, LineRule.TOO_MANY_LINES)
    assert "more than 3 requests" in error.message


def test_byte_limit_is_configurable() -> None:
    line = raw(request("r0"))
    validator = FileValidator(limits=Limits(max_bytes=2 * len(line) + 1))
    results = list(iter_validated([raw(request(f"r{i}")) for i in range(3)], validator))
    error = results[2]
    assert isinstance(error, LineError)
    assert (error.line, error.rule) == (3, LineRule.FILE_TOO_LARGE)
    assert f"larger than {2 * len(line) + 1} bytes" in error.message


def test_line_size_limit() -> None:
    big = raw(request("big", body={"model": "tiny-qwen", "prompt": "x" * 200}))
    validator = FileValidator(limits=Limits(max_line_bytes=100))
    error = only_error([big], validator)
    assert (error.line, error.rule) == (1, LineRule.LINE_TOO_LONG)


def test_default_limits_match_openai() -> None:
    assert Limits().max_lines == 50_000
    assert Limits().max_bytes == 200 * 1024 * 1024


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    error = only_error([deep])
    assert error.rule in (LineRule.INVALID_JSON, LineRule.NOT_AN_OBJECT)


def test_output_line_shapes() -> None:
    ok = OutputLine.model_validate(
        {
            "id": "batch_req_1",
            "custom_id": "r1",
            "response": {"status_code": 200, "request_id": "req_1", "body": {"choices": []}},
            "error": None,
        }
    )
    assert ok.response is not None and ok.response.status_code == 200
    failed = OutputLine.model_validate(
        {
            "id": "batch_req_2",
            "custom_id": "r2",
            "response": None,
            "error": {"code": "batch_expired", "message": "expired", "line": 2},
        }
    )
    assert failed.error is not None and failed.error.line == 2
    assert json.loads(failed.model_dump_json())["response"] is None


def test_an_integer_too_long_for_python_is_invalid_json_not_a_crash() -> None:
    line = (
        b'{"custom_id": "a", "method": "POST", "url": "/v1/completions", '
        b'"body": {"model": "m", "seed": ' + b"9" * 5000 + b"}}"
    )
    result = FileValidator().check(1, line)
    assert isinstance(result, LineError)
    assert result.rule is LineRule.INVALID_JSON
    assert result.line == 1


@pytest.mark.parametrize("url", ["/v1/chat/completions", "/v1/completions"])
def test_several_greedy_choices_are_refused_up_front(url: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 3}
    greedy = request("g", url=url, body={**body, "temperature": 0})
    error = only_error([raw(greedy)])
    assert (error.rule, error.code, error.custom_id) == (
        LineRule.GREEDY_CHOICES,
        ErrorCode.INVALID_REQUEST,
        "g",
    )
    assert "vLLM cannot return several greedy choices" in error.message


@pytest.mark.parametrize(
    "extra",
    [{"n": 3}, {"n": 3, "temperature": 0.7}, {"n": 1, "temperature": 0}, {"temperature": 0}],
    ids=["default-temperature", "sampled", "one-greedy", "n-unset"],
)
def test_greedy_rule_leaves_sampled_or_single_choices_alone(extra: dict[str, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    results = list(iter_validated([raw(request("ok", body=body))]))
    assert [type(r) for r in results] == [ValidLine]
