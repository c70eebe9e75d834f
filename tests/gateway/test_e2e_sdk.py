"""End to end through the official openai SDK: upload, create, watch, download. The sandbox's
API server and Job controller, the real operator (`llmbatch operator`) and the real runner
(vLLM on the CPU with the tiny model) do the work; nothing is played by the test."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fixtures.sandbox import SandboxInfo
from tests.gateway.procs import (
    GatewayProcess,
    Process,
    create_key,
    gateway_config,
    namespaced_cli,
    wait_for,
)
from tests.gateway.test_batch_object import check_batch
from tests.notify.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BATCH_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def operator_process(
    sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    workdir = tmp_path_factory.mktemp("operator")
    process = Process(
        [sys.executable, "-m", "llmbatch.cli.main", "operator"],
        sandbox.env(),
        workdir / "operator.log",
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def e2e_gateway(
    sandbox: SandboxInfo,
    tiny_model: Path,
    tiny_served_name: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    config = gateway_config(
        sandbox,
        {tiny_served_name: {"source": str(tiny_model), "parallelism": 2, "resources": {"gpu": 1}}},
        prices={tiny_served_name: {"input": 0.1, "output": 0.2}},
        # The test's webhook receiver listens on 127.0.0.1.
        webhooks={"allowPrivateTargets": True, "intervalSeconds": 0.5},
    )
    if not sandbox.is_sandbox:
        pytest.skip(
            "the tiny model is a local directory here; on LLMBATCH_E2E_KUBECONFIG's "
            "cluster the runner pods cannot load it from this host's disk"
        )
    gateway = GatewayProcess(sandbox, config, tmp_path_factory.mktemp("e2e-gateway"))
    try:
        yield gateway
    finally:
        gateway.stop()


def test_batch_through_the_sdk_completes(
    sandbox: SandboxInfo,
    operator_process: Process,
    e2e_gateway: GatewayProcess,
    tiny_served_name: str,
) -> None:
    key = create_key(sandbox, "e2e", "basic")
    sdk = openai.OpenAI(api_key=key, base_url=e2e_gateway.url + "/v1", max_retries=2)
    receiver = Receiver(clock=time.time)
    added = namespaced_cli(
        sandbox, "webhooks", "add", receiver.url, "--tenant", "e2e", "--allow-private"
    )
    assert added.returncode == 0, added.stderr
    receiver.secret = added.stdout.strip().splitlines()[-1]
    requests = [
        {
            "custom_id": f"q-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": tiny_served_name,
                "max_tokens": 6,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"count to {i}"}],
            },
        }
        for i in range(6)
    ]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
    uploaded = sdk.files.create(file=("e2e.jsonl", io.BytesIO(data)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="1h",
        metadata={"suite": "e2e"},
    )
    assert batch.status == "validating"

    deadline = time.monotonic() + BATCH_TIMEOUT
    seen = {batch.status}
    while True:
        batch = sdk.batches.retrieve(batch.id)
        seen.add(batch.status)
        if batch.status in {"completed", "failed", "expired", "cancelled"}:
            break
        assert operator_process.alive(), operator_process.tail()
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(1)

    assert batch.status == "completed", f"{batch}\n{operator_process.tail()}"
    assert "in_progress" in seen or "finalizing" in seen
    assert batch.request_counts is not None
    assert (
        batch.request_counts.total,
        batch.request_counts.completed,
        batch.request_counts.failed,
    ) == (6, 6, 0)
    assert batch.usage is not None and batch.usage.output_tokens > 0
    assert batch.completed_at is not None and batch.completed_at >= batch.created_at
    assert batch.output_file_id is not None
    assert batch.error_file_id is None

    output = [
        json.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()
    ]
    assert sorted(o["custom_id"] for o in output) == [f"q-{i}" for i in range(6)]
    for line in output:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["choices"][0]["message"]["content"] is not None
    assert sdk.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in sdk.batches.list()]

    # The Batch object as OpenAI publishes it, with the real run's model and usage.
    raw = sdk.batches.with_raw_response.retrieve(batch.id).http_response.json()
    checked = check_batch(raw)
    assert checked.model == tiny_served_name
    assert checked.usage is not None and checked.usage.input_tokens > 0
    assert checked.usage.total_tokens == checked.usage.input_tokens + checked.usage.output_tokens

    # The tenant's webhook: one signed batch.completed event, from the gateway's notifier.
    try:
        wait_for(lambda: bool(receiver.received), 30, "the batch.completed webhook")
        (delivery,) = receiver.received
        assert delivery.verified and delivery.status == 200
        assert delivery.event["type"] == "batch.completed"
        assert delivery.event["data"] == {"id": batch.id}
    finally:
        receiver.close()
