"""/v1/responses batches through the official openai SDK, and the endpoints vLLM cannot serve
refused at the gateway.

The first tests run against the gateway over moto S3 and an in-memory Kubernetes API (the
operator's part is not needed to accept or refuse a batch). The last runs the whole way on the
sandbox: the real operator and the runner (vLLM on the CPU with the tiny model) answer a
Responses batch, and the downloaded output holds Response objects the SDK validates."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from tests.fixtures.sandbox import SandboxInfo
from tests.gateway.conftest import NAMESPACE, GatewayEnv
from tests.gateway.procs import GatewayProcess, Process, create_key

# The sandbox's operator and gateway processes, shared with the chat end-to-end test.
from tests.gateway.test_e2e_sdk import BATCH_TIMEOUT, e2e_gateway, operator_process  # noqa: F401

MODEL = "tiny-qwen"


def client(url: str, key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=retries)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def responses_lines(n: int, model: str = MODEL, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r-{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {
                "model": model,
                "instructions": "Answer in a few words.",
                "input": [{"role": "user", "content": f"Count to {i}."}],
                "max_output_tokens": 6,
                "temperature": 0,
                **extra,
            },
        }
        for i in range(n)
    ]


def test_a_responses_file_makes_a_responses_batch(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env.url, gateway_env.key())
    uploaded = sdk.files.create(
        file=("r.jsonl", io.BytesIO(jsonl(responses_lines(3)))), purpose="batch"
    )
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    assert batch.endpoint == "/v1/responses" and batch.status == "validating"
    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(batch.id))
    assert job is not None and job["spec"]["endpoint"] == "/v1/responses"


@pytest.mark.parametrize("endpoint", ["/v1/moderations", "/v1/images/generations", "/v1/videos"])
def test_batch_creation_refuses_endpoints_vllm_cannot_serve(
    gateway_env: GatewayEnv, endpoint: str
) -> None:
    sdk = client(gateway_env.url, gateway_env.key())
    uploaded = sdk.files.create(
        file=("r.jsonl", io.BytesIO(jsonl(responses_lines(1)))), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]  # the SDK's Literal lists them all
            completion_window="24h",
        )
    error = caught.value
    assert error.code == "unsupported_endpoint" and error.param == "endpoint"
    assert "vLLM cannot serve" in error.message
    assert all(e in error.message for e in ("/v1/chat/completions", "/v1/responses"))
    assert sdk.batches.list().data == []  # nothing was created


def test_a_file_of_unservable_lines_is_refused_line_by_line(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env.url, gateway_env.key())
    moderation = {
        "custom_id": "m",
        "method": "POST",
        "url": "/v1/moderations",
        "body": {"model": MODEL, "input": "x"},
    }
    data = jsonl([*responses_lines(2), moderation])
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("mixed.jsonl", io.BytesIO(data)), purpose="batch")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_file"
    assert [(e["line"], e["code"]) for e in body["errors"]] == [(3, "unsupported_endpoint")]
    assert "vLLM cannot serve" in body["errors"][0]["message"]


def test_an_unsupported_responses_field_is_refused_with_its_name(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env.url, gateway_env.key())
    data = jsonl(responses_lines(1, previous_response_id="resp_1"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("bad.jsonl", io.BytesIO(data)), purpose="batch")
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["errors"][0]["code"] == "unsupported_field"
    assert body["errors"][0]["message"].startswith("body.previous_response_id: ")


def test_inline_shorthand_prompts_become_responses_input(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env.url, gateway_env.key())
    batch = sdk.batches.create(
        completion_window="24h",
        endpoint="/v1/responses",
        input_file_id="",
        extra_body={"input": [{"prompt": "hi", "max_output_tokens": 4}], "model": MODEL},
    )
    content = sdk.files.content(batch.input_file_id).text
    line = json.loads(content)
    assert line["url"] == "/v1/responses"
    assert line["body"] == {"model": MODEL, "input": "hi", "max_output_tokens": 4}


@pytest.mark.slow
@pytest.mark.e2e
def test_a_responses_batch_runs_end_to_end_on_the_sandbox(
    sandbox: SandboxInfo,
    operator_process: Process,  # noqa: F811
    e2e_gateway: GatewayProcess,  # noqa: F811
    tiny_served_name: str,
) -> None:
    sdk = client(e2e_gateway.url, create_key(sandbox, "e2e-responses", "basic"), retries=2)
    lines = responses_lines(4, model=tiny_served_name)
    uploaded = sdk.files.create(file=("responses.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    deadline = time.monotonic() + BATCH_TIMEOUT
    while batch.status not in {"completed", "failed", "expired", "cancelled"}:
        assert operator_process.alive(), operator_process.tail()
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(1)
        batch = sdk.batches.retrieve(batch.id)

    assert batch.status == "completed", f"{batch}\n{operator_process.tail()}"
    assert batch.endpoint == "/v1/responses"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (4, 0)
    assert batch.output_file_id is not None and batch.error_file_id is None
    output = [
        json.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()
    ]
    assert sorted(o["custom_id"] for o in output) == [f"r-{i}" for i in range(4)]
    responses = [Response.model_validate(o["response"]["body"]) for o in output]
    for response in responses:
        assert response.object == "response" and response.model == tiny_served_name
        assert response.status in ("completed", "incomplete")
        assert response.usage is not None and 0 < response.usage.output_tokens <= 6
        assert response.instructions == "Answer in a few words."
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(r.usage.input_tokens for r in responses if r.usage)
    assert batch.usage.output_tokens == sum(r.usage.output_tokens for r in responses if r.usage)
