"""The official openai SDK against the gateway: files, batches, pagination, cancel, content.

The operator's part (status, output files) is played by the test: it writes the status a
finished BatchJob has and the output the runner writes. The real operator and runner run in
test_e2e_sdk.py."""

from __future__ import annotations

import io
import json

import openai

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
