"""validate, cost-estimate, health, readiness, metrics and the access log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmbatch.gateway.config import ModelEntry
from llmbatch.gateway.tokens import max_output_tokens, prompt_counter
from tests.gateway.conftest import GatewayEnv
from tests.gateway.test_errors import assert_openai_error
from tests.gateway.test_sdk import batch_file, client


def test_validate_file_and_inline(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    file_id = (
        client(gateway_env, key).files.create(file=("in.jsonl", batch_file(4)), purpose="batch").id
    )
    with gateway_env.http(key) as http:
        ok = http.post("/v1/batches/validate", json={"input_file_id": file_id}).json()
        assert ok == {
            "object": "batch.validation",
            "valid": True,
            "requests": 4,
            "endpoint": "/v1/chat/completions",
            "models": ["tiny-qwen"],
            "error_count": 0,
            "errors": [],
        }
        bad = http.post(
            "/v1/batches/validate",
            json={
                "input": [
                    {
                        "custom_id": "x",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": "tiny-qwen", "messages": []},
                    },
                    {
                        "custom_id": "x",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": "tiny-qwen", "messages": []},
                    },
                    {
                        "custom_id": "y",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": "other-model", "messages": []},
                    },
                ]
            },
        ).json()
        assert bad["valid"] is False
        assert [(e["line"], e["code"]) for e in bad["errors"]] == [
            (2, "duplicate_custom_id"),
            (3, "model_not_found"),
            (None, "mixed_models"),
        ]
        assert_openai_error(http.post("/v1/batches/validate", json={}), 400)
        assert_openai_error(
            http.post("/v1/batches/validate", json={"input": [{"x": 1}]}), 400, param="input"
        )


def test_cost_estimate_uses_prices(gateway_env: GatewayEnv) -> None:
    with gateway_env.http(gateway_env.key()) as http:
        answer = http.post(
            "/v1/batches/cost-estimate",
            json={
                "model": "tiny-qwen",
                "input": [
                    {"prompt": "abcdefgh", "max_tokens": 10},
                    {"prompt": "abcd", "max_tokens": 30},
                ],
            },
        )
        assert answer.status_code == 200, answer.text
        estimate = answer.json()
    # /models/tiny-qwen is not on this machine: the heuristic of llmbatch.api.tokens (bytes / 4
    # per text, +4 per chat message: the shorthand prompts became user messages), and the answer
    # says so.
    assert estimate["token_count"] == "estimated"
    assert estimate["requests"] == 2
    assert estimate["input_tokens"] == (2 + 4) + (1 + 4)
    assert estimate["max_output_tokens"] == 40
    assert estimate["input_cost"] == pytest.approx(11 * 0.5 / 1e6)
    assert estimate["max_output_cost"] == pytest.approx(40 * 1.5 / 1e6)
    assert estimate["max_total_cost"] == pytest.approx((5.5 + 60) / 1e6)


def test_token_counter_uses_the_models_tokenizer(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    entry = ModelEntry(source=str(tiny_model), engine_args={"max_model_len": 100})
    counter = prompt_counter(entry)
    assert counter.exact
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    messages = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]
    expected: Any = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True
    )
    if hasattr(expected, "keys"):
        expected = expected["input_ids"]
    assert counter.count({"messages": messages}) == len(expected)
    prompt = "hello there general kenobi"
    assert counter.count({"prompt": prompt}) == len(
        tokenizer.encode(prompt, add_special_tokens=False)
    )
    # Without max_tokens, what the context leaves.
    assert max_output_tokens({}, 30, entry, "/v1/chat/completions") == 70
    assert max_output_tokens({"max_tokens": 5}, 30, entry, "/v1/chat/completions") == 5
    assert max_output_tokens({}, 30, entry, "/v1/embeddings") == 0


def test_health_ready_metrics(gateway_env: GatewayEnv) -> None:
    with httpx.Client(base_url=gateway_env.url) as http:
        assert http.get("/health").json() == {"status": "ok"}
        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"kubernetes": "ok", "storage": "ok"}
        # The in-memory API has no watch: reads go to the API server.
        assert ready.json()["batchJobCache"] == "off"
        http.get("/v1/batches", headers={"Authorization": f"Bearer {gateway_env.key()}"})
        metrics = http.get("/metrics").text
    assert (
        'llmbatch_gateway_requests_total{method="GET",route="/v1/batches",status="200"}' in metrics
    )
    assert (
        'llmbatch_gateway_request_duration_seconds_bucket{le="0.1",method="GET",'
        'route="/v1/batches"}' in metrics
    )


def test_access_log_has_no_key_or_content(
    gateway_env: GatewayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    key = gateway_env.key("logged")
    secret_text = "do-not-log-this-prompt"
    with (
        caplog.at_level(logging.INFO, logger="llmbatch.gateway.access"),
        gateway_env.http(key) as http,
    ):
        data = batch_file(1).replace(b"hello 0", secret_text.encode())
        http.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
        http.get("/v1/files")
    lines = [r.getMessage() for r in caplog.records if r.name == "llmbatch.gateway.access"]
    assert len(lines) >= 2
    entries = [json.loads(line) for line in lines]
    assert {e["route"] for e in entries} >= {"/v1/files"}
    assert all(e["tenant"] == "logged" for e in entries)
    for line in lines:
        assert key not in line and key.split("-")[-1] not in line
        assert secret_text not in line
