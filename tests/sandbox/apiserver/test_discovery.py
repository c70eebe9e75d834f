"""Discovery: /api, /apis, group/version resource lists, /version, OpenAPI; a CRD's types
are served once it is created and gone once it is deleted."""

from __future__ import annotations

from kubernetes import client

from tests.sandbox.apiserver.conftest import (
    TEST_GROUP,
    Cluster,
    crd_established,
    wait_for,
    widget_crd,
)


def test_core_and_group_discovery(cluster: Cluster) -> None:
    status, api = cluster.raw("GET", "/api")
    assert status == 200 and api["kind"] == "APIVersions" and "v1" in api["versions"]
    status, groups = cluster.raw("GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"batch", "apiextensions.k8s.io", "coordination.k8s.io", "events.k8s.io"} <= names
    batch = next(g for g in groups["groups"] if g["name"] == "batch")
    assert batch["preferredVersion"]["groupVersion"] == "batch/v1"


def test_resource_lists(cluster: Cluster) -> None:
    _, core = cluster.raw("GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    for plural in (
        "namespaces",
        "pods",
        "pods/status",
        "pods/log",
        "events",
        "secrets",
        "configmaps",
        "services",
        "serviceaccounts",
    ):
        assert plural in by_name, plural
    assert by_name["pods"]["namespaced"] is True and by_name["pods"]["kind"] == "Pod"
    assert by_name["namespaces"]["namespaced"] is False
    assert "watch" in by_name["pods"]["verbs"]
    _, batch = cluster.raw("GET", "/apis/batch/v1")
    assert {"jobs", "jobs/status"} <= {r["name"] for r in batch["resources"]}
    _, leases = cluster.raw("GET", "/apis/coordination.k8s.io/v1")
    assert "leases" in {r["name"] for r in leases["resources"]}


def test_version_and_openapi(cluster: Cluster) -> None:
    status, version = cluster.raw("GET", "/version")
    assert status == 200 and version["major"] == "1" and version["gitVersion"].startswith("v1.")
    status, _ = cluster.raw("GET", "/openapi/v2")
    assert status == 200
    status, v3 = cluster.raw("GET", "/openapi/v3")
    assert status == 200 and "paths" in v3


def test_crd_served_on_create_and_gone_on_delete(cluster: Cluster) -> None:
    group = "disco.llmbatch.io"
    crd = widget_crd(group=group, plural="gadgets", kind="Gadget")
    ext = client.ApiextensionsV1Api(cluster.api)
    assert cluster.raw("GET", f"/apis/{group}/v1")[0] == 404
    ext.create_custom_resource_definition(crd)
    wait_for(lambda: crd_established(cluster, "gadgets.disco.llmbatch.io"), what="established")
    wait_for(lambda: cluster.raw("GET", f"/apis/{group}/v1")[0] == 200, what="served")
    _, resources = cluster.raw("GET", f"/apis/{group}/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["gadgets"]["kind"] == "Gadget" and "gadgets/status" in by_name
    _, groups = cluster.raw("GET", "/apis")
    assert group in {g["name"] for g in groups["groups"]}
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object(
        group,
        "v1",
        "default",
        "gadgets",
        {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"size": 1},
        },
    )
    ext.delete_custom_resource_definition("gadgets.disco.llmbatch.io")
    wait_for(lambda: cluster.raw("GET", f"/apis/{group}/v1")[0] == 404, what="unserved")
    assert cluster.raw("GET", f"/apis/{group}/v1/namespaces/default/gadgets/g1")[0] == 404
    assert group != TEST_GROUP


def test_cluster_scoped_custom_resource(cluster: Cluster) -> None:
    group = "scope.llmbatch.io"
    crd = widget_crd(group=group, plural="globals", kind="Global")
    crd["spec"]["scope"] = "Cluster"
    ext = client.ApiextensionsV1Api(cluster.api)
    ext.create_custom_resource_definition(crd)
    try:
        wait_for(lambda: cluster.raw("GET", f"/apis/{group}/v1")[0] == 200, what="served")
        _, resources = cluster.raw("GET", f"/apis/{group}/v1")
        assert resources["resources"][0]["namespaced"] is False
        custom = client.CustomObjectsApi(cluster.api)
        made = custom.create_cluster_custom_object(
            group,
            "v1",
            "globals",
            {
                "apiVersion": f"{group}/v1",
                "kind": "Global",
                "metadata": {"name": "one"},
                "spec": {"size": 2},
            },
        )
        assert "namespace" not in made["metadata"]
        listed = custom.list_cluster_custom_object(group, "v1", "globals")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
        status, _ = cluster.raw("GET", f"/apis/{group}/v1/namespaces/default/globals/one")
        assert status == 404
    finally:
        ext.delete_custom_resource_definition(f"globals.{group}")
