"""Merge patch, JSON patch (``test`` included) and strategic merge patch (built-in kinds
only: custom resources answer 415, as in Kubernetes)."""

from __future__ import annotations

from kubernetes import client

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def _pod(namespace: str, cluster: Cluster) -> str:
    client.CoreV1Api(cluster.api).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x.io/one"]},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "img:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    },
                    {"name": "side", "image": "side:1"},
                ]
            },
        },
    )
    return f"/api/v1/namespaces/{namespace}/pods/p"


def test_merge_patch(cluster: Cluster, namespace: str) -> None:
    path = _pod(namespace, cluster)
    status, pod = cluster.raw("PATCH", path, {"metadata": {"labels": {"a": None, "b": "2"}}}, MERGE)
    assert status == 200 and pod["metadata"]["labels"] == {"b": "2"}
    # Merge patch replaces lists whole.
    status, pod = cluster.raw("PATCH", path, {"metadata": {"finalizers": ["x.io/two"]}}, MERGE)
    assert pod["metadata"]["finalizers"] == ["x.io/two"]
    cluster.raw("PATCH", path, {"metadata": {"finalizers": None}}, MERGE)


def test_json_patch_and_test_op(cluster: Cluster, namespace: str) -> None:
    path = _pod(namespace, cluster)
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/c", "value": "3"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "img:2"},
        {"op": "remove", "path": "/metadata/finalizers"},
    ]
    status, pod = cluster.raw("PATCH", path, ops, JSON_PATCH)
    assert status == 200, pod
    assert pod["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert pod["spec"]["containers"][0]["image"] == "img:2"
    status, body = cluster.raw(
        "PATCH",
        path,
        [
            {"op": "test", "path": "/metadata/labels/a", "value": "nope"},
            {"op": "add", "path": "/metadata/labels/d", "value": "4"},
        ],
        JSON_PATCH,
    )
    assert status == 422 and body["kind"] == "Status"
    _, pod = cluster.raw("GET", path)
    assert "d" not in pod["metadata"]["labels"]


def test_strategic_merge_patch_merges_keyed_lists(cluster: Cluster, namespace: str) -> None:
    path = _pod(namespace, cluster)
    # Pod spec is immutable (but images): keyed lists are exercised on status and metadata.
    conditions = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"},
            ]
        }
    }
    cluster.raw("PATCH", path + "/status", conditions, STRATEGIC)
    patch = {
        "metadata": {"finalizers": ["x.io/two"]},
        "spec": {"containers": [{"name": "main", "image": "img:2"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    status, pod = cluster.raw("PATCH", path, patch, STRATEGIC)
    assert status == 200, pod
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"main", "side"}  # merged by name, not replaced
    assert containers["main"]["image"] == "img:2" and len(containers["main"]["env"]) == 2
    assert pod["metadata"]["finalizers"] == ["x.io/one", "x.io/two"]
    status, pod = cluster.raw("PATCH", path + "/status", patch, STRATEGIC)
    by_type = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert by_type == {"Ready": "True", "PodScheduled": "True"}
    delete = {"status": {"conditions": [{"type": "PodScheduled", "$patch": "delete"}]}}
    _, pod = cluster.raw("PATCH", path + "/status", delete, STRATEGIC)
    assert [c["type"] for c in pod["status"]["conditions"]] == ["Ready"]
    cluster.raw("PATCH", path, {"metadata": {"finalizers": None}}, MERGE)


def test_strategic_merge_patch_service_ports(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/services"
    cluster.raw(
        "POST",
        base,
        {
            "metadata": {"name": "svc"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]},
        },
    )
    status, svc = cluster.raw(
        "PATCH",
        f"{base}/svc",
        {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 9090, "$patch": "delete"}]}},
        STRATEGIC,
    )
    assert status == 200, svc
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, 8080)
    ]


def test_strategic_patch_on_custom_resource_is_415(
    cluster: Cluster, namespace: str, widgets: str
) -> None:
    base = f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets"
    cluster.raw(
        "POST",
        base,
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        },
    )
    status, body = cluster.raw("PATCH", f"{base}/w", {"spec": {"size": 2}}, STRATEGIC)
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    status, body = cluster.raw("PATCH", f"{base}/w", {"spec": {"size": 2}}, "text/plain")
    assert status == 415


def test_server_side_apply_creates_then_updates(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/ssa?fieldManager=test"
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
    apply = "application/apply-patch+yaml"
    status, created = cluster.raw("PATCH", path, doc, apply)
    assert status == 201 and created["data"] == {"a": "1"}
    status, updated = cluster.raw("PATCH", path, doc.replace("'1'", "'2'"), apply)
    assert status == 200 and updated["data"] == {"a": "2"}
    status, _ = cluster.raw("PATCH", path.split("?")[0], doc, apply)
    assert status == 400  # fieldManager is required for apply
