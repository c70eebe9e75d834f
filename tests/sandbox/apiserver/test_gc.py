"""ownerReference garbage collection: background, foreground (blockOwnerDeletion) and
orphan propagation."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.sandbox.apiserver.conftest import Cluster, wait_for

JSON = dict[str, Any]


def _exists(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _family(core: client.CoreV1Api, namespace: str, block: bool = False) -> tuple[str, str]:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": block,
    }
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "child",
                "ownerReferences": [ref],
                "finalizers": ["x.io/slow"] if block else [],
            }
        },
    )
    return "owner", "child"


def test_background_deletes_dependents_after_owner(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner, child = _family(core, namespace)
    core.delete_namespaced_config_map(owner, namespace, propagation_policy="Background")
    assert not _exists(core, owner, namespace)
    wait_for(lambda: not _exists(core, child, namespace), what="dependent collected")


def test_foreground_waits_for_blocking_dependents(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner, child = _family(core, namespace, block=True)
    core.delete_namespaced_config_map(owner, namespace, propagation_policy="Foreground")
    held = core.read_namespaced_config_map(owner, namespace)
    assert held.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in held.metadata.finalizers
    wait_for(
        lambda: core.read_namespaced_config_map(child, namespace).metadata.deletion_timestamp,
        what="dependent deleting",
    )
    assert _exists(core, owner, namespace)  # blocked by the child's finalizer
    core.patch_namespaced_config_map(child, namespace, {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(core, owner, namespace), what="owner removed")


def test_orphan_keeps_dependents(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner, child = _family(core, namespace)
    core.delete_namespaced_config_map(owner, namespace, propagation_policy="Orphan")
    wait_for(lambda: not _exists(core, owner, namespace), what="owner removed")
    kept = wait_for(
        lambda: (
            (c := core.read_namespaced_config_map(child, namespace))
            and not c.metadata.owner_references
            and c
        ),
        what="owner reference dropped",
    )
    assert kept.metadata.deletion_timestamp is None


def test_job_pods_collected_with_background(cluster: Cluster, namespace: str) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    job = batch.create_namespaced_job(
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
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": "j-pod",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": "j",
                        "uid": job.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    batch.delete_namespaced_job("j", namespace, propagation_policy="Background")

    def pod_gone() -> bool:
        try:
            core.read_namespaced_pod("j-pod", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(pod_gone, what="job's pod collected")


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_custom_resource_children(
    cluster: Cluster, namespace: str, widgets: str, policy: str
) -> None:
    custom, core = client.CustomObjectsApi(cluster.api), client.CoreV1Api(cluster.api)
    from tests.sandbox.apiserver.conftest import TEST_GROUP

    owner = custom.create_namespaced_custom_object(
        TEST_GROUP,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "o"},
            "spec": {"size": 1},
        },
    )
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "kid",
                "ownerReferences": [
                    {
                        "apiVersion": f"{TEST_GROUP}/v1",
                        "kind": "Widget",
                        "name": "o",
                        "uid": owner["metadata"]["uid"],
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        },
    )
    custom.delete_namespaced_custom_object(
        TEST_GROUP, "v1", namespace, "widgets", "o", propagation_policy=policy
    )
    wait_for(lambda: not _exists(core, "kid", namespace), what="child collected")


def test_job_delete_without_policy_orphans_pods_with_a_warning(
    cluster: Cluster, namespace: str
) -> None:
    batch, core = client.BatchV1Api(cluster.api), client.CoreV1Api(cluster.api)
    job = batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "oj"},
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
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": "oj-pod",
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": "oj", "uid": job.metadata.uid}
                ],
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    resp = cluster.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/oj")
    assert resp.status == 200
    assert "child pods are preserved by default" in resp.headers.get("Warning", "")
    pod = wait_for(
        lambda: (
            (p := core.read_namespaced_pod("oj-pod", namespace))
            and not p.metadata.owner_references
            and p
        ),
        what="pod orphaned",
    )
    assert pod.metadata.deletion_timestamp is None
