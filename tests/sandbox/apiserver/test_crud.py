"""Create (generateName, uid, timestamps, generation), get, replace with optimistic
concurrency, delete with finalizers, namespaces and their contents."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.sandbox.apiserver.conftest import Cluster, wait_for


def test_create_fills_metadata(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    md = cm.metadata
    assert md.name.startswith("cfg-") and len(md.name) == len("cfg-") + 5
    assert md.uid and md.creation_timestamp and md.resource_version
    assert md.namespace == namespace
    again = core.read_namespaced_config_map(md.name, namespace)
    assert again.data == {"a": "1"} and again.metadata.uid == md.uid


def test_resource_versions_grow_across_kinds(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    second = core.create_namespaced_secret(namespace, {"metadata": {"name": "b"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_already_exists_and_not_found(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    assert exc.value.status == 409 and "AlreadyExists" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("nope", namespace)
    assert exc.value.status == 404 and 'configmaps \\"nope\\" not found' in exc.value.body


def test_replace_conflicts_on_stale_resource_version(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c"}, "data": {"x": "1"}}
    )
    stale = cm.metadata.resource_version
    cm.data = {"x": "2"}
    updated = core.replace_namespaced_config_map("c", namespace, cm)
    assert updated.data == {"x": "2"} and updated.metadata.resource_version != stale
    cm.data = {"x": "3"}
    cm.metadata.resource_version = stale
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("c", namespace, cm)
    assert exc.value.status == 409
    assert "the object has been modified" in exc.value.body


def test_secret_string_data_becomes_data(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    secret = core.create_namespaced_secret(
        namespace, {"metadata": {"name": "s"}, "stringData": {"KEY": "value"}}
    )
    assert secret.data == {"KEY": "dmFsdWU="} and secret.type == "Opaque"


def test_finalizers_hold_deletion(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("held", namespace)
    cm = core.read_namespaced_config_map("held", namespace)
    assert cm.metadata.deletion_timestamp is not None
    assert cm.metadata.finalizers == ["example.com/hold"]
    # No new finalizers once deleting.
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "held", namespace, {"metadata": {"finalizers": ["example.com/hold", "other/x"]}}
        )
    assert exc.value.status == 422
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    wait_for(lambda: _gone(core.read_namespaced_config_map, "held", namespace), what="removal")


def _gone(read: object, name: str, namespace: str) -> bool:
    try:
        read(name, namespace)  # type: ignore[operator]
    except ApiException as exc:
        return exc.status == 404
    return False


def test_namespace_deletion_removes_contents(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": "doomed-ns"}})
    core.create_namespaced_config_map("doomed-ns", {"metadata": {"name": "x"}})
    core.create_namespaced_secret(
        "doomed-ns", {"metadata": {"name": "y", "finalizers": ["example.com/slow"]}}
    )
    core.delete_namespace("doomed-ns")
    ns = core.read_namespace("doomed-ns")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("doomed-ns", {"metadata": {"name": "late"}})
    assert exc.value.status == 403
    wait_for(lambda: _gone(core.read_namespaced_config_map, "x", "doomed-ns"), what="cm gone")
    core.patch_namespaced_secret("y", "doomed-ns", {"metadata": {"finalizers": None}})
    wait_for(
        lambda: _gone(lambda n, _ns: core.read_namespace(n), "doomed-ns", ""), what="namespace gone"
    )


def test_create_in_missing_namespace_is_404(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}})
    assert exc.value.status == 404


def test_job_defaults_and_selector(cluster: Cluster, namespace: str) -> None:
    batch = client.BatchV1Api(cluster.api)
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
    assert job.spec.completions == 1 and job.spec.parallelism == 1
    assert job.spec.backoff_limit == 6 and job.spec.completion_mode == "NonIndexed"
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "j"
    with pytest.raises(ApiException) as exc:
        batch.create_namespaced_job(
            namespace,
            {
                "metadata": {"name": "bad"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Always",
                            "containers": [{"name": "c", "image": "b"}],
                        }
                    }
                },
            },
        )
    assert exc.value.status == 422 and "spec.template.spec.restartPolicy" in exc.value.body


def test_delete_collection_by_label(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"team": team}}}
        )
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=x")
    left = core.list_namespaced_config_map(namespace).items
    assert [cm.metadata.name for cm in left] == ["c"]


def test_dry_run_writes_nothing(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    made = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dry"}}, dry_run="All"
    )
    assert made.metadata.name == "dry"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("dry", namespace)
    assert exc.value.status == 404
