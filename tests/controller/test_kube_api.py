"""The operator's thin API layer against the API emulator (in-process, no sandbox): 409 on
create is success, 404 reads as None, merge patches of Jobs and of the status subresource."""

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
from llmbatch.controller.kube import KubeApi, KubeError
from llmbatch.sandbox.apiserver.threaded import ThreadedApiServer
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
