"""The status subresource is isolated both ways; metadata.generation moves on spec changes
only."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster

JSON = dict[str, Any]


def _path(namespace: str, name: str) -> str:
    return f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets/{name}"


def test_custom_resource_status_isolation(cluster: Cluster, namespace: str, widgets: str) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    created = custom.create_namespaced_custom_object(
        TEST_GROUP,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "s"},
            "spec": {"size": 1},
            "status": {"phase": "Ignored"},
        },
    )
    assert "status" not in created  # status is dropped on create
    assert created["metadata"]["generation"] == 1
    merge = "application/merge-patch+json"
    # Writes to /status change only status.
    status, obj = cluster.raw(
        "PATCH",
        _path(namespace, "s") + "/status",
        {"status": {"phase": "Running"}, "spec": {"size": 9}, "metadata": {"labels": {"x": "y"}}},
        merge,
    )
    assert status == 200
    assert obj["status"] == {"phase": "Running"} and obj["spec"]["size"] == 1
    assert "labels" not in obj["metadata"] and obj["metadata"]["generation"] == 1
    # Writes to the main resource ignore status.
    status, obj = cluster.raw(
        "PATCH", _path(namespace, "s"), {"status": {"phase": "Hacked"}, "spec": {"size": 2}}, merge
    )
    assert obj["status"] == {"phase": "Running"} and obj["spec"]["size"] == 2
    assert obj["metadata"]["generation"] == 2
    # Metadata-only change: no new generation.
    status, obj = cluster.raw(
        "PATCH", _path(namespace, "s"), {"metadata": {"labels": {"a": "b"}}}, merge
    )
    assert obj["metadata"]["generation"] == 2 and obj["metadata"]["labels"] == {"a": "b"}
    # PUT on /status with the full object.
    obj["status"] = {"phase": "Done", "count": 3}
    obj["spec"]["size"] = 7
    status, put = cluster.raw("PUT", _path(namespace, "s") + "/status", obj)
    assert status == 200 and put["status"]["count"] == 3 and put["spec"]["size"] == 2


def test_noop_write_keeps_resource_version(cluster: Cluster, namespace: str, widgets: str) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    obj = custom.create_namespaced_custom_object(
        TEST_GROUP,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "n"},
            "spec": {"size": 1},
        },
    )
    same = custom.patch_namespaced_custom_object(
        TEST_GROUP, "v1", namespace, "widgets", "n", {"spec": {"size": 1}}
    )
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_pod_and_job_status_isolation(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    pod = core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"},
        },
    )
    assert pod.status.phase == "Pending"
    core.patch_namespaced_pod_status(
        "p", namespace, {"status": {"phase": "Running"}, "spec": {"activeDeadlineSeconds": 5}}
    )
    pod = core.read_namespaced_pod("p", namespace)
    assert pod.status.phase == "Running" and pod.spec.active_deadline_seconds is None
    core.patch_namespaced_pod("p", namespace, {"status": {"phase": "Failed"}})
    assert core.read_namespaced_pod("p", namespace).status.phase == "Running"

    batch = client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            },
        },
    )
    batch.patch_namespaced_job_status("j", namespace, {"status": {"active": 1}})
    batch.patch_namespaced_job("j", namespace, {"status": {"active": 5}, "spec": {"suspend": True}})
    job = batch.read_namespaced_job("j", namespace)
    assert job.status.active == 1 and job.spec.suspend is True
    assert job.metadata.generation == 2
