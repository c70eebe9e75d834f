"""Two gateway replicas (subprocesses) against the sandbox's API server and S3: stateless
serving, keys created and revoked with the CLI, and one rate limit shared by both replicas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.sandbox import SandboxInfo
from tests.gateway.procs import GatewayProcess, create_key, gateway_config, keys_cli, wait_for
from tests.gateway.test_sdk import batch_file

pytestmark = pytest.mark.slow

SHARED_LIMIT = 4
KEY_CACHE_SECONDS = 1.0


@pytest.fixture(scope="module")
def replicas(
    sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    workdir = tmp_path_factory.mktemp("gateways")
    config = gateway_config(
        sandbox,
        {"tiny-qwen": {"source": "/models/tiny-qwen", "resources": {"gpu": 0}}},
        tiers={"basic": 500, "shared": SHARED_LIMIT},
        auth={"cacheSeconds": KEY_CACHE_SECONDS},
    )
    first = GatewayProcess(sandbox, config, workdir, "gateway-a")
    try:
        second = GatewayProcess(sandbox, config, workdir, "gateway-b")
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0)


def test_any_replica_serves_any_object(
    sandbox: SandboxInfo, replicas: tuple[GatewayProcess, GatewayProcess], kube_api_client: object
) -> None:
    from kubernetes import client

    a, b = replicas
    key = create_key(sandbox, f"t-{uuid.uuid4().hex[:6]}", "basic")
    uploaded = sdk(a.url, key).files.create(file=("in.jsonl", batch_file(2)), purpose="batch")
    assert sdk(b.url, key).files.content(uploaded.id).read() == batch_file(2)
    batch = sdk(b.url, key).batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="1h"
    )
    assert sdk(a.url, key).batches.retrieve(batch.id).input_file_id == uploaded.id
    # The BatchJob is a real object the API server validated against the CRD.
    job = client.CustomObjectsApi(kube_api_client).get_namespaced_custom_object(
        "llmbatch.io",
        "v1alpha1",
        sandbox.namespace,
        "batchjobs",
        "batch-" + batch.id.removeprefix("batch_"),
    )
    assert job["spec"]["completionWindow"] == "1h"
    assert job["metadata"]["labels"]["llmbatch.io/batch-id"] == batch.id
    assert sdk(a.url, key).batches.cancel(batch.id).status == "cancelling"
    assert sdk(b.url, key).batches.retrieve(batch.id).status in {"cancelling", "cancelled"}


def test_reads_follow_the_watch(
    sandbox: SandboxInfo,
    replicas: tuple[GatewayProcess, GatewayProcess],
    kube_api_client: object,
) -> None:
    """Batch reads come from a watch-fed cache; a status written by someone else (the operator)
    reaches both replicas without any request to the API server on the read path."""
    from kubernetes import client

    for replica in replicas:
        wait_for(
            lambda r=replica: httpx.get(r.url + "/ready").json()["batchJobCache"] == "watching",
            30,
            "the BatchJob watch",
        )
    a, b = replicas
    key = create_key(sandbox, f"w-{uuid.uuid4().hex[:6]}", "basic")
    uploaded = sdk(a.url, key).files.create(file=("in.jsonl", batch_file(2)), purpose="batch")
    batch = sdk(a.url, key).batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="1h"
    )
    # Created through A, read at once through B (a cache miss goes to the API server).
    assert sdk(b.url, key).batches.retrieve(batch.id).id == batch.id
    client.CustomObjectsApi(kube_api_client).patch_namespaced_custom_object_status(
        "llmbatch.io",
        "v1alpha1",
        sandbox.namespace,
        "batchjobs",
        "batch-" + batch.id.removeprefix("batch_"),
        {
            "status": {
                "phase": "Running",
                "requestCounts": {"total": 2, "completed": 1, "failed": 0},
            }
        },
    )
    for replica in replicas:
        wait_for(
            lambda r=replica: sdk(r.url, key).batches.retrieve(batch.id).status == "in_progress",
            10,
            "the status change to reach the cache",
        )
        counts = sdk(replica.url, key).batches.retrieve(batch.id).request_counts
        assert counts is not None and counts.completed == 1


def test_revoked_key_fails_on_every_replica(
    sandbox: SandboxInfo, replicas: tuple[GatewayProcess, GatewayProcess]
) -> None:
    key = create_key(sandbox, "revoker", "basic")
    key_id = key.split("-")[2]
    for replica in replicas:
        assert (
            httpx.get(
                replica.url + "/v1/batches", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )
    listed = keys_cli(sandbox, "list")
    assert key_id in listed.stdout and key not in listed.stdout
    assert keys_cli(sandbox, "revoke", key_id).returncode == 0

    def refused_everywhere() -> bool:
        return all(
            httpx.get(r.url + "/v1/batches", headers={"Authorization": f"Bearer {key}"}).status_code
            == 401
            for r in replicas
        )

    # Each replica trusts its copy of the keys Secret for at most auth.cacheSeconds.
    wait_for(refused_everywhere, KEY_CACHE_SECONDS + 2, "the revoked key to be refused")


def test_rate_limit_is_shared_by_replicas(
    sandbox: SandboxInfo, replicas: tuple[GatewayProcess, GatewayProcess]
) -> None:
    key = create_key(sandbox, "limited", "shared")
    statuses = []
    for i in range(SHARED_LIMIT + 3):
        replica = replicas[i % 2]
        answer = httpx.get(replica.url + "/v1/batches", headers={"Authorization": f"Bearer {key}"})
        statuses.append(answer.status_code)
    assert statuses == [200] * SHARED_LIMIT + [429] * 3
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"


def test_ready_reports_a_missing_bucket(sandbox: SandboxInfo, tmp_path: Path) -> None:
    config = gateway_config(sandbox, {})
    config["storage"]["bucket"] = "no-such-bucket-here"
    gateway = GatewayProcess(sandbox, config, tmp_path, "gateway-nobucket", probe="/health")
    try:
        ready = httpx.get(gateway.url + "/ready")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["kubernetes"] == "ok"
        assert checks["storage"].startswith("error: BucketNotFound")
    finally:
        gateway.stop()


def test_logs_are_json_without_keys(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    for replica in replicas:
        text = replica.log.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]
        access = [e for e in entries if "route" in e]
        assert access, "no access log lines"
        assert {"method", "path", "status", "duration_ms", "tenant", "key_id"} <= set(access[0])
        assert "sk-lb-" not in text
        assert "Bearer" not in text
