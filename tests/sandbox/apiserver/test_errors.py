"""Bad input gets a Kubernetes Status with the right code, never a 500 or a hang."""

from __future__ import annotations

import pytest

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster


def _assert_status(result: tuple[int, object], code: int) -> dict[str, object]:
    status, body = result
    assert status == code, body
    assert isinstance(body, dict) and body["kind"] == "Status" and body["code"] == code
    assert body["status"] == "Failure"
    return body


def test_malformed_json_and_yaml(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _assert_status(cluster.raw("POST", path, b"{not json"), 400)
    _assert_status(cluster.raw("POST", path, b"a: [unclosed", "application/yaml"), 400)
    _assert_status(cluster.raw("POST", path, b"[1, 2]"), 400)
    _assert_status(cluster.raw("POST", path, b""), 400)


def test_yaml_body_accepted(cluster: Cluster, namespace: str) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    status, obj = cluster.raw(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", body, "application/yaml"
    )
    assert status == 201 and obj["data"] == {"a": "b"}


def test_wrong_api_version_or_kind(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = _assert_status(
        cluster.raw(
            "POST", path, {"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}
        ),
        400,
    )
    assert "does not match the expected API version" in str(body["message"])
    _assert_status(
        cluster.raw(
            "POST", path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
        ),
        400,
    )


def test_unknown_resources_are_404(cluster: Cluster) -> None:
    _assert_status(cluster.raw("GET", "/api/v1/frobnicators"), 404)
    _assert_status(cluster.raw("GET", "/apis/nope.example.com/v1/things"), 404)
    _assert_status(cluster.raw("GET", "/apis/nope.example.com"), 404)
    _assert_status(cluster.raw("GET", "/api/v1/namespaces/default/pods/x/nosuchsub"), 404)
    _assert_status(cluster.raw("GET", "/api/v1/namespaces/default/configmaps/missing"), 404)


def test_method_not_allowed(cluster: Cluster, namespace: str) -> None:
    _assert_status(cluster.raw("PUT", f"/api/v1/namespaces/{namespace}/configmaps", {}), 405)
    _assert_status(cluster.raw("POST", f"/api/v1/namespaces/{namespace}/configmaps/x", {}), 405)


def test_unknown_patch_type_is_415(cluster: Cluster, namespace: str) -> None:
    cluster.raw("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "p"}})
    _assert_status(
        cluster.raw(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/p",
            {"data": {}},
            "application/x-unknown",
        ),
        415,
    )


def test_name_mismatch_and_invalid_name(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.raw("POST", path, {"metadata": {"name": "m"}})
    _assert_status(cluster.raw("PUT", f"{path}/m", {"metadata": {"name": "other"}}), 400)
    _assert_status(cluster.raw("POST", path, {"metadata": {"name": "UPPER"}}), 422)
    _assert_status(cluster.raw("POST", path, {"metadata": {}}), 422)


@pytest.mark.usefixtures("widgets")
def test_custom_resource_update_needs_resource_version(cluster: Cluster, namespace: str) -> None:
    base = f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets"
    cluster.raw(
        "POST",
        base,
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "r"},
            "spec": {"size": 1},
        },
    )
    _assert_status(
        cluster.raw(
            "PUT",
            f"{base}/r",
            {
                "apiVersion": f"{TEST_GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": "r"},
                "spec": {"size": 2},
            },
        ),
        422,
    )


def test_invalid_selectors_are_400(cluster: Cluster) -> None:
    _assert_status(cluster.raw("GET", "/api/v1/configmaps?labelSelector=a%20in%20b"), 400)
    _assert_status(cluster.raw("GET", "/api/v1/configmaps?limit=abc"), 400)
    _assert_status(cluster.raw("GET", "/api/v1/configmaps?limit=1&continue=%%%"), 400)


def test_secret_data_must_be_base64(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    _assert_status(
        cluster.raw("POST", path, {"metadata": {"name": "b"}, "data": {"k": "not base64!"}}), 400
    )


def test_job_name_fits_a_label(cluster: Cluster, namespace: str) -> None:
    body = {
        "metadata": {"name": "j" * 64},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
            }
        },
    }
    _assert_status(cluster.raw("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body), 422)


def test_deeply_nested_bodies_are_400(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.raw("POST", path, {"metadata": {"name": "deep"}})
    deep = b'{"a":' * 900 + b"1" + b"}" * 900
    for method, url, kind in (
        ("POST", path, "application/json"),
        ("PATCH", f"{path}/deep", "application/merge-patch+json"),
        ("DELETE", f"{path}/deep", "application/json"),
    ):
        status, body = cluster.raw(method, url, b"[" * 100000 if method == "DELETE" else deep, kind)
        assert status < 500, body


def test_event_must_live_in_its_objects_namespace(cluster: Cluster, namespace: str) -> None:
    body = {
        "metadata": {"generateName": "e-"},
        "reason": "R",
        "message": "m",
        "type": "Normal",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "elsewhere"},
    }
    _assert_status(cluster.raw("POST", f"/api/v1/namespaces/{namespace}/events", body), 422)
