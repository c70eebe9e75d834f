"""The Batch object: every answer the gateway gives validates against OpenAI's published schema
and the official SDK's model (with nothing the SDK does not know); ``model`` and ``usage``
follow the BatchJob status while the batch runs and at the end; ``errors`` carries a failed
validation. The operator's part (status) is played by the test, as in test_sdk.py."""

from __future__ import annotations

from typing import Any

import jsonschema
import pydantic
import pytest
from openai.types import Batch
from pydantic import BaseModel

from tests.gateway.batch_schema import BATCH_SCHEMA
from tests.gateway.conftest import NAMESPACE, GatewayEnv
from tests.gateway.test_sdk import batch_file, client


def unknown_fields(model: BaseModel) -> list[str]:
    """Every field the SDK model received but does not declare, at any depth."""
    found = [f"{type(model).__name__}.{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value if isinstance(value, list) else [value]
        found += [f for v in values if isinstance(v, BaseModel) for f in unknown_fields(v)]
    return found


def check_batch(raw: dict[str, Any]) -> Batch:
    jsonschema.validate(raw, BATCH_SCHEMA)
    batch = Batch.model_validate(raw)
    assert unknown_fields(batch) == []
    return batch


def new_batch(env: GatewayEnv, key: str) -> dict[str, Any]:
    sdk = client(env, key)
    uploaded = sdk.files.create(file=("in.jsonl", batch_file(3)), purpose="batch")
    with env.http(key) as http:
        answer = http.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"run": "schema"},
                "output_expires_after": {"anchor": "created_at", "seconds": 7200},
            },
        )
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_every_answer_is_a_valid_batch(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    created = new_batch(gateway_env, key)
    batch = check_batch(created)
    assert batch.model == "tiny-qwen"
    assert batch.expires_at == batch.created_at + 24 * 3600
    with gateway_env.http(key) as http:
        check_batch(http.get(f"/v1/batches/{batch.id}").json())
        for item in http.get("/v1/batches").json()["data"]:
            check_batch(item)
        check_batch(http.post(f"/v1/batches/{batch.id}/cancel").json())


def running_status(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "phase": "Running",
        "requestCounts": {"total": 3, "completed": 1, "failed": 0},
        "usage": {"promptTokens": prompt, "completionTokens": completion},
        "timestamps": {"createdAt": "2026-12-01T00:00:00Z", "inProgressAt": "2026-12-01T00:00:04Z"},
    }


def test_model_and_usage_follow_the_status(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    sdk = client(gateway_env, key)
    batch_id = new_batch(gateway_env, key)["id"]
    name = gateway_env.batch_name(batch_id)

    gateway_env.kube.set_status(NAMESPACE, name, running_status(11, 4))
    running = sdk.batches.retrieve(batch_id)
    assert running.status == "in_progress"
    assert running.model == "tiny-qwen"
    assert running.usage is not None
    assert (running.usage.input_tokens, running.usage.output_tokens) == (11, 4)
    assert running.usage.total_tokens == 15
    assert running.usage.input_tokens_details.cached_tokens == 0
    assert running.usage.output_tokens_details.reasoning_tokens == 0

    final = {**running_status(33, 12), "phase": "Succeeded"}
    final["requestCounts"] = {"total": 3, "completed": 3, "failed": 0}
    gateway_env.kube.set_status(NAMESPACE, name, final)
    done = sdk.batches.retrieve(batch_id)
    assert done.status == "completed"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        33,
        12,
        45,
    )
    with gateway_env.http(key) as http:
        check_batch(http.get(f"/v1/batches/{batch_id}").json())


@pytest.mark.parametrize("listed", [False, True])
def test_errors_carry_a_failed_validation(gateway_env: GatewayEnv, listed: bool) -> None:
    key = gateway_env.key()
    sdk = client(gateway_env, key)
    batch_id = new_batch(gateway_env, key)["id"]
    status: dict[str, Any] = {
        "phase": "Failed",
        "reason": "ValidationFailed",
        "message": "spec.input 's3://b/x' does not exist",
    }
    if listed:
        status["errors"] = [{"code": "invalid_json_line", "message": "not JSON", "line": 7}]
    gateway_env.kube.set_status(NAMESPACE, gateway_env.batch_name(batch_id), status)
    failed = sdk.batches.retrieve(batch_id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.object == "list"
    assert failed.errors.data is not None
    (error,) = failed.errors.data
    if listed:
        assert (error.code, error.message, error.line, error.param) == (
            "invalid_json_line",
            "not JSON",
            7,
            None,
        )
    else:
        assert error.code == "validation_failed"
        assert error.message == "spec.input 's3://b/x' does not exist"
        assert error.line is None
    with gateway_env.http(key) as http:
        check_batch(http.get(f"/v1/batches/{batch_id}").json())


def test_the_schema_check_is_not_vacuous() -> None:
    good = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-1",
        "completion_window": "24h",
        "status": "completed",
        "created_at": 1,
    }
    check_batch(good)
    for bad in (
        {**good, "output_expires_after": {"anchor": "created_at", "seconds": 3600}},
        {**good, "status": "done"},
        {**good, "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_batch(bad)
    with pytest.raises(pydantic.ValidationError):
        Batch.model_validate({k: v for k, v in good.items() if k != "id"})
