"""The operator's thin API layer against the API emulator (in-process, no sandbox): 409 on
create is success, 404 reads as None, merge patches of Jobs and of the status subresource,
and throttling (429 / Retry-After) waited out as the server asks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from llmbatch.api.crd import build_crd
from llmbatch.controller.build_jobs import build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.handle_reconcile import failure_delay
from llmbatch.controller.kube import (
    MAX_RETRY_AFTER,
    RETRY_AFTER_ATTEMPTS,
    KubeApi,
    KubeError,
    parse_retry_after,
)
from llmbatch_sandbox.apiserver.threaded import ThreadedApiServer
from tests.controller.factories import at, batchjob

NS = "kube-api-test"


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # our emulator on localhost
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ThreadedApiServer() as threaded:
        url = threaded.url
        _post(url, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", build_crd())
        _post(url, "/api/v1/namespaces", {"metadata": {"name": NS}})
        yield url


@pytest.fixture
def api(server: str) -> Iterator[KubeApi]:
    configuration = kubernetes.client.Configuration()
    configuration.host = server
    kube = KubeApi(configuration, workers=2)
    yield kube
    kube.close()


def _batchjob(server: str, name: str) -> dict[str, Any]:
    body = batchjob(name=name)
    body["metadata"] = {"name": name, "namespace": NS}
    body.pop("status")
    # The emulator may need a moment to serve a freshly registered CRD.
    for _ in range(50):
        try:
            return _post(server, f"/apis/llmbatch.io/v1alpha1/namespaces/{NS}/batchjobs", body)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        time.sleep(0.1)
    raise AssertionError("the BatchJob CRD was never served")


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
    await asyncio.to_thread(_post, server, f"/api/v1/namespaces/{NS}/secrets", secret)
    got = await api.get_secret(NS, "creds")
    assert got is not None and got["data"]["AWS_ACCESS_KEY_ID"] == "aw=="


def _fault(server: str, **fault: Any) -> None:
    _post(server, "/sandbox/faults", {"namespace": NS, **fault})


def _clear_faults(server: str) -> None:
    request = urllib.request.Request(server + "/sandbox/faults", method="DELETE")
    with urllib.request.urlopen(request, timeout=10):
        pass


async def test_a_429_with_retry_after_is_waited_out_and_retried(api: KubeApi, server: str) -> None:
    owner = await asyncio.to_thread(_batchjob, server, "throttled")
    job = build_runner_job(owner, OperatorConfig(), at(0))
    await asyncio.to_thread(
        _fault, server, code=429, verb="create", resource="jobs", times=2, retry_after=1
    )
    try:
        started = time.monotonic()
        assert await api.create_job(NS, job) is True
        waited = time.monotonic() - started
    finally:
        await asyncio.to_thread(_clear_faults, server)
    assert api.throttled == 2
    assert waited >= 2.0  # the server asked for 1 s, twice
    assert await api.get_job(NS, "throttled-run") is not None


async def test_throttling_that_outlasts_the_attempts_surfaces_with_its_pause(
    api: KubeApi, server: str
) -> None:
    await asyncio.to_thread(
        _fault, server, code=429, verb="get", resource="jobs", times=50, retry_after=0
    )
    try:
        with pytest.raises(KubeError) as raised:
            await api.get_job(NS, "anything")
    finally:
        await asyncio.to_thread(_clear_faults, server)
    assert raised.value.status == 429
    assert raised.value.retry_after == 0.0
    assert api.throttled == RETRY_AFTER_ATTEMPTS - 1


async def test_a_500_without_retry_after_fails_at_once(api: KubeApi, server: str) -> None:
    await asyncio.to_thread(_fault, server, code=500, verb="get", resource="jobs", times=1)
    try:
        with pytest.raises(KubeError) as raised:
            await api.get_job(NS, "anything")
    finally:
        await asyncio.to_thread(_clear_faults, server)
    assert raised.value.status == 500 and raised.value.retry_after is None
    assert api.throttled == 0
    assert await api.get_job(NS, "anything") is None  # the fault was used up by one call


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "3", 3.0),
        (429, None, 1.0),  # "slow down" without a number: one second
        (429, "Wed, 21 Oct 2026 07:28:00 GMT", 1.0),
        (429, "3600", MAX_RETRY_AFTER),
        (429, "-5", 1.0),
        (503, "2", 2.0),
        (503, None, None),  # a 5xx retries only when the server asks
        (409, "2", None),  # a conflict will not clear by waiting
        (404, None, None),
    ],
)
def test_parse_retry_after(status: int, header: str | None, expected: float | None) -> None:
    assert parse_retry_after(status, header) == expected


def test_failure_delay_backs_off_with_jitter_and_honours_the_server() -> None:
    plain = [failure_delay(n, RuntimeError("x")) for n in range(1, 8)]
    for n, delay in enumerate(plain, start=1):
        cap = min(30.0, 2.0**n)
        assert cap / 2 <= delay <= cap
    throttled = KubeError(429, "slow down", retry_after=8.0)
    assert failure_delay(1, throttled) >= 8.0
