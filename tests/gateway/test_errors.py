"""Every refusal has the right status code and OpenAI's error shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import TINY_TIER_LIMIT, GatewayEnv
from tests.gateway.test_sdk import batch_file, client


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return dict(error)


def upload(http: httpx.Client, data: bytes, purpose: str = "batch") -> httpx.Response:
    return http.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": purpose})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer sk-lb-not-a-key"},
        {"Authorization": "Bearer sk-lb-0123456789ab-" + "x" * 43},
    ],
)
def test_bad_keys_are_401(gateway_env: GatewayEnv, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=gateway_env.url) as http:
        for method, path in [
            ("GET", "/v1/batches"),
            ("GET", "/v1/files"),
            ("POST", "/v1/batches/validate"),
            ("GET", "/v1/batches/batch_x"),
        ]:
            error = assert_openai_error(http.request(method, path, headers=headers), 401)
            assert error["type"] == "authentication_error"
            assert "sk-lb" not in error["message"]


def test_sdk_raises_authentication_error(gateway_env: GatewayEnv) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(gateway_env, "sk-lb-0123456789ab-" + "y" * 43).batches.list()


def test_revoked_key_fails_at_once(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    with gateway_env.http(key) as http:
        assert http.get("/v1/batches").status_code == 200
        key_id = key.split("-")[2]
        assert gateway_env.keystore_call(lambda store: store.revoke(key_id)) is True
        assert_openai_error(http.get("/v1/batches"), 401, code="invalid_api_key")


def test_other_tenant_sees_404(gateway_env: GatewayEnv) -> None:
    owner = client(gateway_env, gateway_env.key("owner-a"))
    uploaded = owner.files.create(file=("in.jsonl", batch_file()), purpose="batch")
    batch = owner.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with gateway_env.http(gateway_env.key("intruder-b")) as http:
        for method, path in [
            ("GET", f"/v1/files/{uploaded.id}"),
            ("GET", f"/v1/files/{uploaded.id}/content"),
            ("DELETE", f"/v1/files/{uploaded.id}"),
            ("GET", f"/v1/batches/{batch.id}"),
            ("POST", f"/v1/batches/{batch.id}/cancel"),
            ("GET", f"/v1/batches/{batch.id}/results"),
        ]:
            assert_openai_error(http.request(method, path), 404)
        assert http.get("/v1/batches").json()["data"] == []
        assert http.get("/v1/files").json()["data"] == []
        # Their file cannot be used as input either.
        answer = http.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert_openai_error(answer, 404, param="input_file_id")
    assert owner.batches.retrieve(batch.id).id == batch.id


def test_rate_limit_reached_and_reset(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key(tier="tiny")
    with gateway_env.http(key) as http:
        for used in range(1, TINY_TIER_LIMIT + 1):
            answer = http.get("/v1/batches")
            assert answer.status_code == 200
            assert answer.headers["x-ratelimit-limit-requests"] == str(TINY_TIER_LIMIT)
            assert answer.headers["x-ratelimit-remaining-requests"] == str(TINY_TIER_LIMIT - used)
        refused = http.get("/v1/batches")
        error = assert_openai_error(refused, 429, code="rate_limit_exceeded")
        assert error["type"] == "requests"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= gateway_env.config.rate_limit.window_seconds
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert float(refused.headers["x-ratelimit-reset-requests"].rstrip("s")) <= retry_after
        # The limit is per key: another key of the same tier is unaffected.
        with gateway_env.http(gateway_env.key(tier="tiny")) as other:
            assert other.get("/v1/batches").status_code == 200
        # After the window the key works again.
        gateway_env.clock.advance(retry_after)
        again = http.get("/v1/batches")
        assert again.status_code == 200
        assert again.headers["x-ratelimit-remaining-requests"] == str(TINY_TIER_LIMIT - 1)
    metrics = httpx.get(gateway_env.url + "/metrics").text
    assert 'llmbatch_gateway_rate_limited_total{tier="tiny"}' in metrics


def test_unknown_tier_is_403(gateway_env: GatewayEnv) -> None:
    with gateway_env.http(gateway_env.key(tier="platinum")) as http:
        error = assert_openai_error(http.get("/v1/batches"), 403, code="unknown_tier")
        assert error["type"] == "permission_error"


def test_upload_refusals(gateway_env: GatewayEnv) -> None:
    with gateway_env.http(gateway_env.key()) as http:
        assert_openai_error(
            upload(http, batch_file(), purpose="fine-tune"),
            400,
            code="invalid_purpose",
            param="purpose",
        )
        assert_openai_error(
            http.post("/v1/files", data={"purpose": "batch"}, files={"other": ("x", b"y")}),
            400,
            code="missing_file",
        )
        assert_openai_error(
            http.post("/v1/files", content=b"{}", headers={"Content-Type": "application/json"}),
            400,
            code="invalid_content_type",
        )
        assert_openai_error(upload(http, b"\n\n"), 400, code="empty_file")

        bad = (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"model": "tiny-qwen", "messages": []}}\n'
            b'{"custom_id": "b", "method": "POST", not json\n'
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"model": "tiny-qwen", "messages": []}}\n'
            b'{"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", '
            b'"body": {"model": "tiny-qwen"}}\n'
        )
        error = assert_openai_error(upload(http, bad), 400, code="invalid_file", param="file")
        assert error["line"] == 2
        assert [(e["line"], e["code"]) for e in error["errors"]] == [
            (2, "invalid_json"),
            (3, "duplicate_custom_id"),
            (4, "invalid_method"),
        ]
        assert error["error_count"] == 3
        assert "line 2" in error["message"]
        # Nothing of a refused upload is visible.
        assert http.get("/v1/files").json()["data"] == []


def test_oversized_upload_is_413_and_not_stored(gateway_env: GatewayEnv) -> None:
    limit = gateway_env.config.limits.max_file_bytes
    line = batch_file(1)
    big = line * (limit // len(line) + 2)
    slightly_big = line * (limit // len(line) + 1)
    assert limit < len(slightly_big) < limit + 64 * 1024
    with gateway_env.http(gateway_env.key()) as http:
        # Far over: refused from Content-Length before the body is read.
        assert_openai_error(upload(http, big * 2), 413, code="file_too_large")
        # Just over: found while streaming, the partial object is discarded.
        error = assert_openai_error(upload(http, slightly_big), 413, code="file_too_large")
        assert str(limit) in error["message"]
        assert http.get("/v1/files").json()["data"] == []


def test_chunked_oversized_upload(gateway_env: GatewayEnv) -> None:
    limit = gateway_env.config.limits.max_file_bytes
    line = batch_file(1)
    body_parts = [
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n',
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n',
    ]
    body_parts += [line * 1000] * (limit // (len(line) * 1000) + 2)
    body_parts += [b"\r\n--b--\r\n"]
    with gateway_env.http(gateway_env.key()) as http:
        answer = http.post(
            "/v1/files",
            content=iter(body_parts),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert_openai_error(answer, 413, code="file_too_large")


def test_batch_create_refusals(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    sdk = client(gateway_env, key)
    good = sdk.files.create(file=("in.jsonl", batch_file()), purpose="batch").id
    unknown_model = sdk.files.create(
        file=("in.jsonl", batch_file(model="gpt-9")), purpose="batch"
    ).id
    base = {"input_file_id": good, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    with gateway_env.http(key) as http:

        def create(**change: Any) -> httpx.Response:
            return http.post("/v1/batches", json={**base, **change})

        assert_openai_error(
            create(endpoint="/v1/moderations"), 400, code="unsupported_endpoint", param="endpoint"
        )
        assert_openai_error(create(endpoint="/v1/embeddings"), 400, code="endpoint_mismatch")
        assert_openai_error(
            create(input_file_id=unknown_model), 400, code="model_not_found", param="model"
        )
        assert_openai_error(create(input_file_id="file-nope"), 404, param="input_file_id")
        assert_openai_error(
            create(completion_window="48h"),
            400,
            code="invalid_completion_window",
            param="completion_window",
        )
        assert_openai_error(create(completion_window="soon"), 400, code="invalid_completion_window")
        assert create(completion_window="2h").status_code == 200
        assert_openai_error(
            create(metadata={f"k{i}": "v" for i in range(17)}),
            400,
            code="invalid_metadata",
            param="metadata",
        )
        assert_openai_error(create(metadata={"k": "v" * 513}), 400, code="invalid_metadata")
        assert_openai_error(create(metadata={"k" * 65: "v"}), 400, code="invalid_metadata")
        assert_openai_error(create(input_file_id=None), 400, param="input_file_id")
        # Malformed JSON and wrong types get 400 (not FastAPI's 422), OpenAI-shaped.
        broken = http.post(
            "/v1/batches",
            content=b'{"input_file_id": ',
            headers={"Content-Type": "application/json"},
        )
        assert_openai_error(broken, 400, code="invalid_json")
        assert_openai_error(create(metadata="nope"), 400, param="metadata")
        assert_openai_error(http.get("/v1/batches", params={"limit": 0}), 400, param="limit")
        assert_openai_error(http.get("/v1/batches", params={"limit": 101}), 400, param="limit")


def test_not_found_shapes(gateway_env: GatewayEnv) -> None:
    with gateway_env.http(gateway_env.key()) as http:
        assert_openai_error(http.get("/v1/batches/batch_doesnotexist"), 404)
        assert_openai_error(http.get("/v1/batches/batch_0000000000abcdefgh"), 404)
        assert_openai_error(http.get("/v1/files/file-0000000000abcdefgh"), 404)
        assert_openai_error(http.get("/v1/files/file-0000000000abcdefgh-out"), 404)
        assert_openai_error(http.get("/v1/no-such-route"), 404)
        assert_openai_error(http.put("/v1/batches"), 405)
        assert_openai_error(httpx.get(gateway_env.url + "/nowhere"), 404)


def test_errors_reach_the_sdk_as_exceptions(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.files.create(file=("in.jsonl", b'{"custom_id": 1}\n'), purpose="batch")
    assert raised.value.code == "invalid_file"
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_0000000000abcdefgh")
    body = json.loads(raised.value.response.text)
    assert body["error"]["errors"][0]["code"] == "missing_custom_id"


def test_oversized_json_body_is_413(gateway_env: GatewayEnv) -> None:
    limit = gateway_env.config.limits.max_json_bytes
    prompt = "x" * (limit + 10)
    body = json.dumps({"model": "tiny-qwen", "input": [{"prompt": prompt}]}).encode()
    with gateway_env.http(gateway_env.key()) as http:
        declared = http.post(
            "/v1/batches", content=body, headers={"Content-Type": "application/json"}
        )
        assert_openai_error(declared, 413, code="request_too_large")
        chunked = http.post(
            "/v1/batches/validate",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={"Content-Type": "application/json"},
        )
        assert_openai_error(chunked, 413, code="request_too_large")


def test_backend_failures_are_503(gateway_env: GatewayEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbatch.kube import KubeError
    from llmbatch.storage import StorageError

    key = gateway_env.key()
    gateway = gateway_env.gateway

    def broken_list(tenant: str) -> list[str]:
        raise StorageError("s3://bucket/x: connection refused", "s3://bucket/x")

    async def broken_kube(label_selector: str) -> list[dict[str, Any]]:
        raise KubeError(500, "etcd timeout")

    monkeypatch.setattr(gateway.files, "list_ids", broken_list)
    monkeypatch.setattr(gateway.jobs, "list", broken_kube)
    with gateway_env.http(key) as http:
        storage = assert_openai_error(http.get("/v1/files", params={"purpose": "batch"}), 503)
        assert "connection refused" not in storage["message"]
        assert_openai_error(http.get("/v1/batches"), 503)
