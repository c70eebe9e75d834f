"""The fault-injection hook the chaos suite uses (emulator only)."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmbatch_sandbox.apiserver import ThreadedApiServer
from tests.sandbox.apiserver.conftest import Cluster, wait_for

pytestmark = pytest.mark.sandbox_only


def test_next_n_matching_requests_fail(
    sandbox: ThreadedApiServer, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    sandbox.run(
        lambda: sandbox.server.faults.inject(
            429, times=2, verb="create", resource="configmaps", retry_after=1
        )
    )
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "f"}})
        assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "1"
    # Other verbs and resources are untouched; the third create succeeds.
    core.list_namespaced_secret(namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "f"}})


def test_fault_by_name_and_subresource(
    sandbox: ThreadedApiServer, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "fp"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    sandbox.run(
        lambda: sandbox.server.faults.inject(409, verb="patch", resource="pods/status", name="fp")
    )
    core.patch_namespaced_pod("fp", namespace, {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod_status("fp", namespace, {"status": {"phase": "Running"}})
    assert exc.value.status == 409
    core.patch_namespaced_pod_status("fp", namespace, {"status": {"phase": "Running"}})


def test_http_fault_endpoint_and_500(sandbox: ThreadedApiServer, cluster: Cluster) -> None:
    status, _ = cluster.raw(
        "POST", "/sandbox/faults", {"code": 500, "verb": "list", "resource": "services"}
    )
    assert status == 201
    status, body = cluster.raw("GET", "/api/v1/services")
    assert status == 500 and body["kind"] == "Status"
    assert cluster.raw("GET", "/api/v1/services")[0] == 200
    cluster.raw("POST", "/sandbox/faults", {"code": 503, "verb": "get"})
    assert cluster.raw("DELETE", "/sandbox/faults")[0] == 200
    assert cluster.raw("GET", "/api/v1/namespaces/default")[0] == 200
    assert cluster.raw("POST", "/sandbox/faults", {"verb": "get"})[0] == 400


def test_watch_gets_410_and_can_be_closed(
    sandbox: ThreadedApiServer, cluster: Cluster, namespace: str
) -> None:
    sandbox.run(lambda: sandbox.server.faults.inject(410, verb="watch", resource="configmaps"))
    events = cluster.watch(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=5")
    assert [e["type"] for e in events] == ["ERROR"] and events[0]["object"]["code"] == 410

    result: list[list[dict[str, object]]] = []
    reader = threading.Thread(
        target=lambda: result.append(
            cluster.watch(f"/api/v1/namespaces/{namespace}/secrets?watch=1&timeoutSeconds=30")
        )
    )
    reader.start()
    wait_for(
        lambda: any(w.req.rt.plural == "secrets" for w in sandbox.server.watches), what="watch open"
    )
    closed = sandbox.run(sandbox.server.close_watches, "secrets")
    assert closed >= 1
    reader.join(timeout=5)
    assert not reader.is_alive() and result == [[]]


def test_expire_history_forces_410(
    sandbox: ThreadedApiServer, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    rv = core.create_namespaced_config_map(namespace, {"metadata": {"name": "e"}}).metadata
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "e2"}})
    sandbox.run(sandbox.server.expire_history)
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion="
        f"{rv.resource_version}&timeoutSeconds=1"
    )
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_delay_only_fault(sandbox: ThreadedApiServer, cluster: Cluster, namespace: str) -> None:
    import time

    sandbox.run(
        lambda: sandbox.server.faults.inject(0, verb="list", resource="configmaps", delay=0.5)
    )
    started = time.monotonic()
    status, _ = cluster.raw("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert status == 200 and time.monotonic() - started >= 0.5
