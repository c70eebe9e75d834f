"""Pod specifics a kubelet and scheduler rely on: binding, immutable spec, graceful deletion
of bound pods."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.sandbox.apiserver.conftest import Cluster

POD = {"metadata": {"name": "bp"}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}}


def _bind(cluster: Cluster, namespace: str, node: str) -> tuple[int, object]:
    return cluster.raw(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods/bp/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "bp"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
    )


def test_binding_sets_node_once(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, POD)
    status, _ = _bind(cluster, namespace, "node-a")
    assert status == 201
    assert core.read_namespaced_pod("bp", namespace).spec.node_name == "node-a"
    status, body = _bind(cluster, namespace, "node-b")
    assert status == 409 and "already assigned" in str(body)


def test_pod_spec_is_immutable_but_image(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, POD)
    patched = core.patch_namespaced_pod(
        "bp", namespace, {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}
    )
    assert patched.spec.containers[0].image == "img:2"
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod("bp", namespace, {"spec": {"restartPolicy": "Never"}})
    assert exc.value.status == 422 and "pod updates may not change fields" in exc.value.body


def test_bound_pod_deletion_waits_for_kubelet(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, POD)
    _bind(cluster, namespace, "node-a")
    core.patch_namespaced_pod_status("bp", namespace, {"status": {"phase": "Running"}})
    core.delete_namespaced_pod("bp", namespace, grace_period_seconds=30)
    pod = core.read_namespaced_pod("bp", namespace)
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 30
    # The kubelet, once the containers stopped, confirms with grace period 0.
    core.delete_namespaced_pod("bp", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("bp", namespace)
    assert exc.value.status == 404


def test_unbound_or_finished_pods_go_at_once(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, POD)
    core.delete_namespaced_pod("bp", namespace)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bp", namespace)
    core.create_namespaced_pod(namespace, POD)
    _bind(cluster, namespace, "node-a")
    core.patch_namespaced_pod_status("bp", namespace, {"status": {"phase": "Succeeded"}})
    core.delete_namespaced_pod("bp", namespace)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bp", namespace)


def test_terminating_pod_stays_until_grace_and_finalizers_end(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {**POD, "metadata": {"name": "bp", "finalizers": ["batch.kubernetes.io/job-tracking"]}},
    )
    _bind(cluster, namespace, "node-a")
    core.patch_namespaced_pod_status("bp", namespace, {"status": {"phase": "Running"}})
    core.delete_namespaced_pod("bp", namespace)
    # The kubelet reports the stopped container; a controller drops its finalizer: still there,
    # the grace period is the kubelet's to end.
    core.patch_namespaced_pod_status("bp", namespace, {"status": {"phase": "Failed"}})
    core.patch_namespaced_pod("bp", namespace, {"metadata": {"finalizers": None}})
    assert core.read_namespaced_pod("bp", namespace).metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("bp", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("bp", namespace)
    assert exc.value.status == 404


def test_grace_zero_then_finalizer_removal(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace, {**POD, "metadata": {"name": "bp", "finalizers": ["example.com/hold"]}}
    )
    _bind(cluster, namespace, "node-a")
    core.delete_namespaced_pod("bp", namespace)
    core.delete_namespaced_pod("bp", namespace, grace_period_seconds=0)
    pod = core.read_namespaced_pod("bp", namespace)
    assert pod.metadata.deletion_grace_period_seconds == 0
    core.patch_namespaced_pod("bp", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bp", namespace)
