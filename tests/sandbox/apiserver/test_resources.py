"""Every served built-in resource takes the basic verbs; both event APIs share storage."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.apiserver.conftest import Cluster, wait_for

JSON = dict[str, Any]

CASES: list[tuple[str, str, JSON]] = [
    ("/api/v1", "configmaps", {"data": {"a": "b"}}),
    ("/api/v1", "secrets", {"stringData": {"a": "b"}}),
    ("/api/v1", "services", {"spec": {"ports": [{"port": 80}]}}),
    ("/api/v1", "serviceaccounts", {}),
    ("/api/v1", "pods", {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    (
        "/apis/batch/v1",
        "jobs",
        {
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            }
        },
    ),
    (
        "/apis/coordination.k8s.io/v1",
        "leases",
        {"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}},
    ),
    (
        "/api/v1",
        "events",
        {
            "involvedObject": {"kind": "Pod", "name": "x"},
            "reason": "R",
            "message": "m",
            "type": "Normal",
        },
    ),
]


@pytest.mark.parametrize(("prefix", "plural", "body"), CASES, ids=[c[1] for c in CASES])
def test_basic_verbs(
    cluster: Cluster, namespace: str, prefix: str, plural: str, body: JSON
) -> None:
    base = f"{prefix}/namespaces/{namespace}/{plural}"
    if "involvedObject" in body:  # an event's object must be in the event's namespace
        body = {**body, "involvedObject": {**body["involvedObject"], "namespace": namespace}}
    status, created = cluster.raw("POST", base, {"metadata": {"name": "r1"}, **body})
    assert status == 201, created
    status, got = cluster.raw("GET", f"{base}/r1")
    assert status == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]
    assert got["kind"] and got["apiVersion"] == prefix.split("/", 2)[-1].removeprefix("api/")
    status, listed = cluster.raw("GET", base)
    assert status == 200 and [i["metadata"]["name"] for i in listed["items"]] == ["r1"]
    status, patched = cluster.raw(
        "PATCH", f"{base}/r1", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json"
    )
    assert status == 200 and patched["metadata"]["labels"] == {"x": "y"}
    assert cluster.raw("DELETE", f"{base}/r1")[0] == 200
    wait_for(lambda: cluster.raw("GET", f"{base}/r1")[0] == 404, what=f"{plural} deleted")


def test_service_gets_cluster_ip(cluster: Cluster, namespace: str) -> None:
    _, svc = cluster.raw(
        "POST",
        f"/api/v1/namespaces/{namespace}/services",
        {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}},
    )
    assert svc["spec"]["clusterIP"] and svc["spec"]["ports"][0]["protocol"] == "TCP"


def test_events_v1_and_core_share_storage(cluster: Cluster, namespace: str) -> None:
    status, _ = cluster.raw(
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        {
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Pod", "name": "p", "namespace": namespace},
            "note": "new-style",
            "reason": "Test",
            "type": "Normal",
            "action": "Testing",
            "reportingController": "pytest",
            "reportingInstance": "pytest-1",
        },
    )
    assert status == 201
    _, core = cluster.raw("GET", f"/api/v1/namespaces/{namespace}/events/e1")
    assert core["message"] == "new-style" and core["involvedObject"]["name"] == "p"
    assert core["reportingComponent"] == "pytest"


def test_namespaced_resource_listed_across_namespaces(cluster: Cluster, namespace: str) -> None:
    cluster.raw("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "a"}})
    status, listed = cluster.raw("GET", "/api/v1/configmaps")
    assert status == 200
    assert (namespace, "a") in {
        (i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]
    }
