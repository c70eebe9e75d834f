"""Arbitrary bodies and patches never get a 500 (or a hang): always a Status with a 4xx, or
success."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "spec",
                    "status",
                    "name",
                    "labels",
                    "finalizers",
                    "ownerReferences",
                    "size",
                    "data",
                    "kind",
                    "apiVersion",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
PATCH_TYPES = [
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/json",
]
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _ok(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict) and body.get("kind") == "Status" and body["code"] == status


@FUZZ
@given(body=JSON_VALUES)
def test_create_never_500(cluster: Cluster, body: Any) -> None:
    for path in (
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/pods",
        "/apis/batch/v1/namespaces/default/jobs",
    ):
        status, answer = cluster.raw("POST", path, json.dumps(body))
        _ok(status, answer)
        if status == 201:
            name = answer["metadata"]["name"]
            cluster.raw(
                "PATCH",
                f"{path}/{name}",
                {"metadata": {"finalizers": None}},
                "application/merge-patch+json",
            )
            cluster.raw("DELETE", f"{path}/{name}?gracePeriodSeconds=0")


@FUZZ
@given(patch=JSON_VALUES, kind=st.sampled_from(PATCH_TYPES))
def test_patch_never_500(cluster: Cluster, widgets: str, patch: Any, kind: str) -> None:
    cluster.raw("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "fz"}})
    cluster.raw(
        "POST",
        f"/apis/{TEST_GROUP}/v1/namespaces/default/widgets",
        {
            "apiVersion": f"{TEST_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "fz"},
            "spec": {"size": 1},
        },
    )
    for path in (
        "/api/v1/namespaces/default/configmaps/fz",
        f"/apis/{TEST_GROUP}/v1/namespaces/default/widgets/fz",
        f"/apis/{TEST_GROUP}/v1/namespaces/default/widgets/fz/status",
    ):
        status, answer = cluster.raw("PATCH", path, json.dumps(patch), kind)
        _ok(status, answer)
    for path in (
        "/api/v1/namespaces/default/configmaps/fz",
        f"/apis/{TEST_GROUP}/v1/namespaces/default/widgets/fz",
    ):
        cluster.raw(
            "PATCH", path, {"metadata": {"finalizers": None}}, "application/merge-patch+json"
        )
        cluster.raw("DELETE", path)
