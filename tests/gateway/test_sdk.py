"""The official openai SDK against the gateway: files, batches, pagination, cancel, content.

The operator's part (status, output files) is played by the test: it writes the status a
finished BatchJob has and the output the runner writes. The real operator and runner run in
test_e2e_sdk.py."""

from __future__ import annotations

import io
import json
from typing import Any

import openai
import pytest

from llmbatch.storage import get_store
from tests.gateway.conftest import NAMESPACE, GatewayEnv


def client(env: GatewayEnv, key: str) -> openai.OpenAI:
    # No retries: a test must see the first answer (the SDK retries 429 and 5xx by default).
    return openai.OpenAI(api_key=key, base_url=env.url + "/v1", max_retries=0)


def batch_file(n: int = 3, model: str = "tiny-qwen") -> bytes:
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"hello {i}"}],
                "max_tokens": 8,
            },
        }
        for i in range(n)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_upload_create_retrieve(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(batch_file())), purpose="batch")
    assert uploaded.id.startswith("file-")
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(batch_file())
    assert uploaded.filename == "in.jsonl"
    assert sdk.files.retrieve(uploaded.id).id == uploaded.id
    assert sdk.files.content(uploaded.id).read() == batch_file()

    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"team": "nlp"},
    )
    assert batch.id.startswith("batch_")
    assert batch.status == "validating"
    assert batch.input_file_id == uploaded.id
    assert batch.metadata == {"team": "nlp"}
    assert batch.model == "tiny-qwen"
    assert batch.expires_at == batch.created_at + 24 * 3600
    again = sdk.batches.retrieve(batch.id)
    assert again.id == batch.id

    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(batch.id))
    assert job is not None
    spec = job["spec"]
    assert spec["model"] == {
        "name": "tiny-qwen",
        "source": "/models/tiny-qwen",
        "engineArgs": {"max_model_len": 512},
    }
    assert spec["parallelism"] == 2
    assert spec["input"].endswith(f"/files/{uploaded.id}/content")
    assert spec["storage"]["secretRef"] == {"name": "llmbatch-s3"}
    assert get_store(spec["input"], gateway_env.settings).read_bytes(spec["input"]) == batch_file()


def finish(
    env: GatewayEnv, batch_id: str, outputs: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> None:
    """Do what the operator and runner do for a batch that succeeded: write output.jsonl and
    errors.jsonl under spec.output and the status that points at them."""
    name = env.batch_name(batch_id)
    job = env.kube.get(NAMESPACE, "batchjobs", name)
    assert job is not None
    prefix = job["spec"]["output"]
    store = get_store(prefix, env.settings)
    store.write_bytes(
        f"{prefix}/output.jsonl", b"".join(json.dumps(o).encode() + b"\n" for o in outputs)
    )
    store.write_bytes(
        f"{prefix}/errors.jsonl", b"".join(json.dumps(e).encode() + b"\n" for e in errors)
    )
    env.kube.set_status(
        NAMESPACE,
        name,
        {
            "phase": "Succeeded",
            "requestCounts": {
                "total": len(outputs) + len(errors),
                "completed": len(outputs),
                "failed": len(errors),
            },
            "usage": {"promptTokens": 30, "completionTokens": 12},
            "timestamps": {
                "createdAt": "2026-01-01T00:00:00Z",
                "inProgressAt": "2026-01-01T00:00:05Z",
                "finalizingAt": "2026-01-01T00:01:00Z",
                "completedAt": "2026-01-01T00:01:10Z",
            },
            "outputFile": f"{prefix}/output.jsonl",
            "errorFile": f"{prefix}/errors.jsonl",
        },
    )


def output_line(custom_id: str, text: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "error": None,
        "response": {
            "status_code": 200,
            "request_id": f"r-{custom_id}",
            "body": {"choices": [{"message": {"role": "assistant", "content": text}}]},
        },
    }


def test_completed_batch_outputs_download(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    uploaded = sdk.files.create(file=("in.jsonl", batch_file(3)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    error = {
        "id": "batch_req_req-2",
        "custom_id": "req-2",
        "response": None,
        "error": {"code": "engine_error", "message": "boom", "line": 3},
    }
    finish(gateway_env, batch.id, [output_line("req-0", "a"), output_line("req-1", "b")], [error])

    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (3, 2, 1)
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        30,
        12,
        42,
    )
    assert done.completed_at == 1767225670
    assert done.in_progress_at == 1767225605
    assert done.output_file_id and done.error_file_id
    output = sdk.files.content(done.output_file_id).text.splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == ["req-0", "req-1"]
    errors = sdk.files.content(done.error_file_id).text.splitlines()
    assert json.loads(errors[0])["error"]["code"] == "engine_error"
    meta = sdk.files.retrieve(done.output_file_id)
    assert meta.purpose == "batch_output"
    assert meta.bytes == sum(len(line) + 1 for line in output)

    listed = {f.id: f.purpose for f in sdk.files.list()}
    assert listed == {
        uploaded.id: "batch",
        done.output_file_id: "batch_output",
        done.error_file_id: "batch_output",
    }
    only_outputs = {f.id for f in sdk.files.list(purpose="batch_output")}
    assert only_outputs == {done.output_file_id, done.error_file_id}

    # Input and output side by side, paged by line.
    with gateway_env.http(sdk.api_key) as http:
        first = http.get(f"/v1/batches/{batch.id}/results", params={"limit": 2}).json()
        assert [r["custom_id"] for r in first["data"]] == ["req-0", "req-1"]
        assert first["has_more"] is True
        assert first["data"][0]["request"]["messages"][0]["content"] == "hello 0"
        assert first["data"][1]["response"]["body"]["choices"][0]["message"]["content"] == "b"
        rest = http.get(
            f"/v1/batches/{batch.id}/results", params={"after": first["last_id"]}
        ).json()
        assert [r["custom_id"] for r in rest["data"]] == ["req-2"]
        assert rest["data"][0]["error"]["code"] == "engine_error"
        assert rest["has_more"] is False

    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)


def test_list_pagination_and_cancel(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    uploaded = sdk.files.create(file=("in.jsonl", batch_file(1)), purpose="batch")
    created = [
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    page = sdk.batches.list(limit=2)
    assert [b.id for b in page.data] == created[::-1][:2]
    assert page.has_more is True
    # The SDK follows `after` cursors by itself.
    assert [b.id for b in sdk.batches.list(limit=2)] == created[::-1]
    last = sdk.batches.list(limit=2, after=created[1])
    assert [b.id for b in last.data] == [created[0]]
    assert last.has_more is False

    cancelled = sdk.batches.cancel(created[2])
    assert cancelled.status == "cancelling"
    assert cancelled.cancelling_at is not None
    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(created[2]))
    assert job is not None and job["spec"]["cancel"] is True
    # Cancelling twice is harmless.
    assert sdk.batches.cancel(created[2]).status == "cancelling"


def test_file_list_delete(gateway_env: GatewayEnv) -> None:
    sdk = client(gateway_env, gateway_env.key())
    ids = [
        sdk.files.create(file=(f"f{i}.jsonl", batch_file(1)), purpose="batch").id for i in range(3)
    ]
    assert [f.id for f in sdk.files.list(limit=2)] == ids[::-1]
    assert [f.id for f in sdk.files.list(order="asc")] == ids
    deleted = sdk.files.delete(ids[1])
    assert deleted.deleted is True and deleted.id == ids[1]
    assert [f.id for f in sdk.files.list()] == [ids[2], ids[0]]
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(ids[1])


def test_inline_create(gateway_env: GatewayEnv) -> None:
    key = gateway_env.key()
    with gateway_env.http(key) as http:
        answer = http.post(
            "/v1/batches",
            json={
                "model": "tiny-qwen",
                "endpoint": "/v1/chat/completions",
                "input": [
                    {"prompt": "hi"},
                    {
                        "messages": [{"role": "user", "content": "yo"}],
                        "max_tokens": 4,
                        "custom_id": "mine",
                    },
                ],
            },
        )
        assert answer.status_code == 200, answer.text
        batch = answer.json()
    sdk = client(gateway_env, key)
    content = sdk.files.content(batch["input_file_id"]).text.splitlines()
    lines = [json.loads(line) for line in content]
    assert [line["custom_id"] for line in lines] == ["request-1", "mine"]
    assert lines[0]["body"] == {
        "model": "tiny-qwen",
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert lines[1]["body"]["max_tokens"] == 4
