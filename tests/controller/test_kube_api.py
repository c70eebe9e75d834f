"""The operator's thin API layer (controller/kube.py over llmbatch.kube) against the API
emulator (in-process, no sandbox): 409 on create is success, 404 reads as None, merge patches
of Jobs and of the status subresource, and throttling (429 / Retry-After) waited out as the
server asks. The client's own behaviour (errors, throttling limits, watches, configuration) is
tested in tests/kube."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llmbatch.controller.build_jobs import build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.handle_reconcile import failure_delay
from llmbatch.controller.kube import KubeApi, KubeError
from llmbatch.kube import Connection
from tests.controller.factories import at, batchjob
from tests.kube.emulator import api_server, create_batchjob, fault, send

NS = "kube-api-test"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with api_server(NS) as url:
        yield url


@pytest.fixture
async def api(server: str) -> AsyncIterator[KubeApi]:
    kube = KubeApi(Connection(server), workers=2)
    yield kube
    await kube.aclose()


def _batchjob(server: str, name: str) -> dict[str, Any]:
    body = batchjob(name=name)
    body["metadata"] = {"name": name, "namespace": NS}
    body.pop("status")
    return create_batchjob(server, NS, body)


async def test_create_twice_is_idempotent_and_reads_are_none_when_missing(
    api: KubeApi, server: str
) -> None:
    owner = await asyncio.to_thread(_batchjob, server, "idem")
    job = build_runner_job(owner, OperatorConfig(), at(0))
    assert await api.create_job(NS, job) is True
    assert await api.create_job(NS, job) is False  # 409 AlreadyExists is success
    got = await api.get_job(NS, "idem-run")
    assert got is not None and got["spec"]["completions"] == 2
    assert got["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert await api.get_job(NS, "nope-run") is None
    assert await api.get_secret(NS, "nope") is None
    await api.patch_job(NS, "idem-run", {"spec": {"suspend": True}})
    suspended = await api.get_job(NS, "idem-run")
    assert suspended is not None and suspended["spec"]["suspend"] is True
    assert await api.list_pods(NS, "idem-run") == []
    await api.delete_job(NS, "idem-run")
    await api.delete_job(NS, "idem-run")  # 404 on delete is success too


async def test_status_patch_touches_only_status(api: KubeApi, server: str) -> None:
    await asyncio.to_thread(_batchjob, server, "stat")
    result = await api.patch_batchjob_status(NS, "stat", {"phase": "Queued", "jobName": "stat-run"})
    assert result["status"]["phase"] == "Queued"
    assert result["spec"]["parallelism"] == 2
    result = await api.patch_batchjob_status(NS, "stat", {"jobName": None})
    assert "jobName" not in result["status"] and result["status"]["phase"] == "Queued"
    assert api.status_patches == 2
    with pytest.raises(KubeError) as missing:
        await api.patch_batchjob_status(NS, "absent", {"phase": "Queued"})
    assert missing.value.status == 404


async def test_secret_is_read(api: KubeApi, server: str) -> None:
    secret = {
        "metadata": {"name": "creds"},
        "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(b"k").decode()},
    }
    await asyncio.to_thread(send, server, "POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    got = await api.get_secret(NS, "creds")
    assert got is not None and got["data"]["AWS_ACCESS_KEY_ID"] == "aw=="


async def test_a_429_with_retry_after_is_waited_out_and_retried(api: KubeApi, server: str) -> None:
    owner = await asyncio.to_thread(_batchjob, server, "throttled")
    job = build_runner_job(owner, OperatorConfig(), at(0))
    with fault(server, NS, code=429, verb="create", resource="jobs", times=2, retry_after=1):
        started = time.monotonic()
        assert await api.create_job(NS, job) is True
        waited = time.monotonic() - started
    assert api.throttled == 2
    assert waited >= 2.0  # the server asked for 1 s, twice
    assert await api.get_job(NS, "throttled-run") is not None


async def test_close_is_synchronous_for_kopfs_cleanup_handler(server: str) -> None:
    api = KubeApi(Connection(server))
    assert await api.get_job(NS, "nothing") is None
    api.close()
    assert api.closing is not None
    await api.closing
    with pytest.raises(RuntimeError, match="closed"):
        await api.get_job(NS, "nothing")


def test_failure_delay_backs_off_with_jitter_and_honours_the_server() -> None:
    plain = [failure_delay(n, RuntimeError("x")) for n in range(1, 8)]
    for n, delay in enumerate(plain, start=1):
        cap = min(30.0, 2.0**n)
        assert cap / 2 <= delay <= cap
    throttled = KubeError(429, "slow down", retry_after=8.0)
    assert failure_delay(1, throttled) >= 8.0
