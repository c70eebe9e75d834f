"""List and watch: resourceVersion resume, 410 on compacted history, label and field
selectors, limit/continue, timeoutSeconds, bookmarks."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from llmbatch_sandbox.apiserver import ThreadedApiServer, write_kubeconfig
from tests.sandbox.apiserver.conftest import Cluster


def _cm(
    core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str] | None = None
) -> str:
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "labels": labels or {}}}
    )
    return str(cm.metadata.resource_version)


def test_watch_resumes_from_resource_version(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    rv = _cm(core, namespace, "a")
    _cm(core, namespace, "b")
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("b", namespace)
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={rv}"
        "&timeoutSeconds=1"
    )
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(rv)


def test_watch_without_version_starts_with_current_state(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    _cm(core, namespace, "x")
    events = cluster.watch(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "x")]


def test_watch_timeout_ends_the_stream(cluster: Cluster, namespace: str) -> None:
    started = time.monotonic()
    cluster.watch(f"/api/v1/namespaces/{namespace}/pods?watch=1&timeoutSeconds=1")
    assert time.monotonic() - started < 5


def test_label_and_field_selectors(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    _cm(core, namespace, "one", {"app": "web", "tier": "front"})
    _cm(core, namespace, "two", {"app": "db"})
    _cm(core, namespace, "three", {"app": "web"})

    def names(**kw: str) -> list[str]:
        items = core.list_namespaced_config_map(namespace, **kw).items
        return sorted(i.metadata.name for i in items)

    assert names(label_selector="app=web") == ["one", "three"]
    assert names(label_selector="app==web,tier") == ["one"]
    assert names(label_selector="app!=web") == ["two"]
    assert names(label_selector="app in (db, web),!tier") == ["three", "two"]
    assert names(label_selector="app notin (web)") == ["two"]
    assert names(label_selector="tier") == ["one"]
    assert names(field_selector="metadata.name=two") == ["two"]
    assert names(field_selector="metadata.name!=two") == ["one", "three"]
    assert names(field_selector=f"metadata.namespace={namespace}") == ["one", "three", "two"]


def test_pod_phase_field_selector(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    for name in ("p1", "p2"):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
    core.patch_namespaced_pod_status("p2", namespace, {"status": {"phase": "Running"}})
    running = core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items
    assert [p.metadata.name for p in running] == ["p2"]


def test_watch_with_selector_sees_objects_leave(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    rv = _cm(core, namespace, "m", {"app": "web"})
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"app": "db"}}})
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion="
        f"{int(rv) - 1}&labelSelector=app%3Dweb&timeoutSeconds=1"
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


def test_limit_and_continue(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    for i in range(5):
        _cm(core, namespace, f"c{i}")
    first = core.list_namespaced_config_map(namespace, limit=2)
    assert [i.metadata.name for i in first.items] == ["c0", "c1"]
    assert first.metadata._continue and first.metadata.remaining_item_count == 3
    second = core.list_namespaced_config_map(namespace, limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map(namespace, limit=2, _continue=second.metadata._continue)
    assert [i.metadata.name for i in second.items + third.items] == ["c2", "c3", "c4"]
    assert not third.metadata._continue


def test_list_resource_version_then_watch(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    listed = core.list_namespaced_config_map(namespace)
    _cm(core, namespace, "after")
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion="
        f"{listed.metadata.resource_version}&timeoutSeconds=1"
    )
    assert [e["object"]["metadata"]["name"] for e in events] == ["after"]


@pytest.mark.sandbox_only
def test_bookmarks(sandbox: ThreadedApiServer, cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    rv = _cm(core, namespace, "bm")
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion="
        f"{rv}&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    assert events and events[-1]["type"] == "BOOKMARK"
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    assert events[-1]["object"]["kind"] == "ConfigMap"


@pytest.mark.sandbox_only
def test_too_old_resource_version_is_410(tmp_path: object) -> None:
    with ThreadedApiServer(history_size=5) as small:
        kubeconfig = write_kubeconfig(small.url, tmp_path / "kc")  # type: ignore[operator]
        from kubernetes import config

        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        first = _cm(core, "default", "h0")
        for i in range(1, 10):
            _cm(core, "default", f"h{i}")
        cluster = Cluster(kubeconfig, core.api_client, small)
        events = cluster.watch(
            f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion="
            f"{first}&timeoutSeconds=1"
        )
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
        recent = core.list_namespaced_config_map("default").metadata.resource_version
        ok = cluster.watch(
            f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion="
            f"{recent}&timeoutSeconds=1"
        )
        assert all(e["type"] != "ERROR" for e in ok)


def test_python_client_watch(cluster: Cluster, namespace: str) -> None:
    from kubernetes import watch

    core = client.CoreV1Api(cluster.api)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    _cm(core, namespace, "w1")
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=1
    )
    names = [(e["type"], e["object"].metadata.name) for e in stream]
    assert names == [("ADDED", "w1")]


def test_watch_as_table(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    _cm(core, namespace, "tw")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=1",
        headers={"Accept": accept},
    )
    assert len(events) == 1 and events[0]["object"]["kind"] == "Table"
    assert events[0]["object"]["rows"][0]["cells"][0] == "tw"


@pytest.mark.sandbox_only
def test_send_initial_events_ends_with_a_bookmark(
    sandbox: ThreadedApiServer, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    _cm(core, namespace, "i1")
    _cm(core, namespace, "i2")
    events = cluster.watch(
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&sendInitialEvents=true"
        "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
        max_events=3,
    )
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    annotations = events[2]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}
