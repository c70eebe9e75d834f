"""Custom resources against their CRD's openAPIV3Schema: pruning, defaults, structural
validation with Kubernetes' messages, CEL transition rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster

JSON = dict[str, Any]


def _create(cluster: Cluster, namespace: str, name: str, spec: JSON) -> tuple[int, JSON]:
    body = {
        "apiVersion": f"{TEST_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }
    return cluster.raw("POST", f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets", body)


def test_defaults_applied_and_unknown_fields_pruned(
    cluster: Cluster, namespace: str, widgets: str
) -> None:
    status, obj = _create(
        cluster,
        namespace,
        "d",
        {
            "size": 2,
            "bogus": True,
            "free": {"anything": {"goes": 1}},
            "status": "ignored",
        },
    )
    assert status == 201, obj
    spec = obj["spec"]
    assert spec["color"] == "red"  # default
    assert spec["nested"] == {"level": 3}  # default object, then its own defaults
    assert "bogus" not in spec and "status" not in spec  # pruned
    assert spec["free"] == {"anything": {"goes": 1}}  # x-kubernetes-preserve-unknown-fields


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"size": 0},
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"size": 11},
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        ),
        (
            {"size": "3"},
            'spec.size: Invalid value: "string": spec.size in body must be of type '
            'integer: "string"',
        ),
        ({}, "spec.size: Required value"),
        (
            {"size": 1, "color": "green"},
            'spec.color: Unsupported value: "green": supported values: "red", "blue"',
        ),
        (
            {"size": 1, "name": "a"},
            'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long',
        ),
        ({"size": 1, "name": "abcdefghij"}, "spec.name: Too long: may not be"),
        ({"size": 1, "name": "ABC"}, "spec.name in body should match '^[a-z]+$'"),
        ({"size": 1, "tags": ["a", "b", "c"]}, "spec.tags: Too many: 3: must have at most 2 items"),
        (
            {"size": 1, "labels": {"a": "1", "b": "2", "c": "3"}},
            "spec.labels: Too many: 3: must have at most 2 items",
        ),
    ],
)
def test_validation_errors_name_the_field(
    cluster: Cluster, namespace: str, widgets: str, spec: JSON, expected: str
) -> None:
    status, body = _create(cluster, namespace, "bad", spec)
    assert status == 422, body
    assert body["kind"] == "Status" and body["reason"] == "Invalid"
    assert body["message"].startswith(f'Widget.{TEST_GROUP} "bad" is invalid: ')
    assert expected in body["message"]
    assert body["details"]["causes"][0]["field"].startswith("spec.")


def test_several_errors_are_listed(cluster: Cluster, namespace: str, widgets: str) -> None:
    status, body = _create(cluster, namespace, "bad2", {"size": 0, "color": "green"})
    assert status == 422
    assert "is invalid: [" in body["message"] and len(body["details"]["causes"]) == 2


def test_cel_transition_rule(cluster: Cluster, namespace: str, widgets: str) -> None:
    status, _ = _create(cluster, namespace, "m", {"size": 1, "model": {"name": "a"}})
    assert status == 201
    path = f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets/m"
    status, body = cluster.raw(
        "PATCH", path, {"spec": {"model": {"name": "b"}}}, "application/merge-patch+json"
    )
    assert status == 422
    assert 'spec.model: Invalid value: "object": model is immutable' in body["message"]
    status, body = cluster.raw("PATCH", path, {"spec": {"size": 5}}, "application/merge-patch+json")
    assert status == 200 and body["spec"]["size"] == 5


def test_metadata_name_validated(cluster: Cluster, namespace: str, widgets: str) -> None:
    status, body = _create(cluster, namespace, "Not_Valid", {"size": 1})
    assert status == 422 and "metadata.name" in body["message"]


def test_unknown_fields_warn_by_default_and_fail_when_strict(
    cluster: Cluster, namespace: str, widgets: str
) -> None:
    base = f"/apis/{TEST_GROUP}/v1/namespaces/{namespace}/widgets"
    body = {
        "apiVersion": f"{TEST_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "u"},
        "spec": {"size": 1, "typo": 1},
    }
    status, answer = cluster.raw("POST", f"{base}?fieldValidation=Strict", body)
    assert status == 400 and 'unknown field "spec.typo"' in answer["message"]
    resp = cluster.request("POST", base, body)
    assert resp.status == 201
    assert 'unknown field \\"spec.typo\\"' in resp.headers.get("Warning", "")
