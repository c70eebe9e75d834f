"""Adversarial JSONL uploaded to the gateway (``POST /v1/files``) and checked through
``/v1/batches/validate``: never a 5xx, always an OpenAI-shaped answer, and every non-blank line
accounted for: a file is stored only when every line is valid, and a refusal counts every bad
line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.chaos.jsonl_gen import GenLine, expected, join, jsonl_files
from tests.chaos.profiles import FUZZ
from tests.gateway.conftest import GatewayEnv

DEFAULT_LINE_LIMIT = 64 * 1024 * 1024

# Part of the chaos suite (full form in make test-chaos); fast, so also in make test.
pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def client(gateway_env: GatewayEnv) -> httpx.Client:
    return gateway_env.http(gateway_env.key(tier="bench"))


@pytest.fixture
def fresh(gateway_env: GatewayEnv) -> Iterator[httpx.Client]:
    """A client of its own: the module's client may hold a keep-alive connection the server
    has just closed after the long property runs."""
    with gateway_env.http(gateway_env.key(tier="bench")) as http:
        yield http


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("message"), str) and error["message"]
    return error


def upload(client: httpx.Client, data: bytes, name: str = "input.jsonl") -> httpx.Response:
    files = {"file": (name, data, "application/jsonl")}
    return client.post("/v1/files", data={"purpose": "batch"}, files=files)


@FUZZ
@given(lines=jsonl_files(max_lines=12), crlf=st.booleans(), final_newline=st.booleans())
def test_upload_accounts_for_every_line(
    client: httpx.Client, lines: list[GenLine], crlf: bool, final_newline: bool
) -> None:
    response = upload(client, join(lines, crlf=crlf, final_newline=final_newline))
    assert response.status_code < 500, response.text
    want = expected(lines, DEFAULT_LINE_LIMIT)
    valid = [v for v in want if v.valid]
    invalid = [v for v in want if not v.valid]
    if invalid:
        assert response.status_code == 400, response.text
        error = _error(response)
        assert error["code"] == "invalid_file"
        assert error["error_count"] == len(invalid)
        assert error["line"] == invalid[0].line
        assert [e["line"] for e in error["errors"]] == [v.line for v in invalid][
            : len(error["errors"])
        ]
        return
    if not valid:
        assert response.status_code == 400, response.text
        _error(response)
        return
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    check = client.post("/v1/batches/validate", json={"input_file_id": file_id})
    assert check.status_code == 200, check.text
    assert check.json()["requests"] == len(valid)
    content = client.get(f"/v1/files/{file_id}/content")
    assert content.status_code == 200
    assert content.content == join(lines, crlf=crlf, final_newline=final_newline)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    items=st.lists(JSON_VALUES, min_size=1, max_size=6),
    model=st.one_of(st.none(), st.sampled_from(["tiny-qwen", "nope", ""])),
    endpoint=st.one_of(st.none(), st.sampled_from(["/v1/chat/completions", "/v1/x", ""])),
)
def test_inline_validate_never_fails_inside(
    client: httpx.Client, items: list[Any], model: str | None, endpoint: str | None
) -> None:
    body: dict[str, Any] = {"input": items}
    if model is not None:
        body["model"] = model
    if endpoint is not None:
        body["endpoint"] = endpoint
    response = client.post("/v1/batches/validate", json=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        _error(response)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 300_000,
        b'{"custom_id":' * 50_000 + b"1" + b"}" * 50_000,
        b"\x00" * 1000,
        b"\xef\xbb\xbf" + b'{"custom_id":"a"}',
    ],
    ids=["deep-array", "deep-object", "nuls", "bom"],
)
def test_hostile_single_line_upload_is_a_clean_400(fresh: httpx.Client, raw: bytes) -> None:
    response = upload(fresh, raw + b"\n")
    assert response.status_code == 400, response.text
    assert _error(response)["error_count"] == 1
    json.dumps(response.json())  # the body is plain JSON


SURROGATE_LINE = (
    b'{"custom_id":"\\ud800","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}'
)


def test_surrogate_custom_id_upload_is_a_clean_400(fresh: httpx.Client) -> None:
    response = upload(fresh, SURROGATE_LINE + b"\n")
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_standard_json_numbers_are_answered(fresh: httpx.Client, literal: bytes) -> None:
    """Python's JSON parser takes NaN and Infinity; the answer must still be valid JSON."""
    body = (
        b'{"input":[{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"tiny-qwen","temperature":' + literal + b',"messages":[]}}]}'
    )
    response = fresh.post(
        "/v1/batches/validate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    json.loads(response.content)
