"""kopf runs against the emulator as against a cluster: watches, status patches, its
finalizer on deletion, events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster, wait_for

OPERATOR = f"""
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.persistence.finalizer = "{TEST_GROUP}/kopf-finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="{TEST_GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="{TEST_GROUP}")
    settings.watching.server_timeout = 10

@kopf.on.create("{TEST_GROUP}", "v1", "widgets")
def created(body, patch, **_):
    kopf.info(body, reason="Seen", message="seen by kopf")
    patch.status["phase"] = "Seen"

@kopf.on.update("{TEST_GROUP}", "v1", "widgets", field="spec.size")
def resized(new, patch, **_):
    patch.status["phase"] = "Resized"
    patch.status["count"] = new

@kopf.on.delete("{TEST_GROUP}", "v1", "widgets")
def deleted(body, **_):
    pass
"""


@pytest.mark.slow
def test_kopf_operator_round_trip(
    cluster: Cluster, widgets: str, namespace: str, tmp_path: Path
) -> None:
    source = tmp_path / "operator.py"
    source.write_text(OPERATOR)
    log = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-A", str(source)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    custom = client.CustomObjectsApi(cluster.api)
    try:
        custom.create_namespaced_custom_object(
            TEST_GROUP,
            "v1",
            namespace,
            "widgets",
            {
                "apiVersion": f"{TEST_GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": "k"},
                "spec": {"size": 1},
            },
        )

        def phase() -> str | None:
            obj = custom.get_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", "k")
            return (obj.get("status") or {}).get("phase")

        wait_for(lambda: phase() == "Seen", timeout=30, what=f"kopf create handler ({log})")
        obj = custom.get_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", "k")
        assert f"{TEST_GROUP}/kopf-finalizer" in obj["metadata"]["finalizers"]
        custom.patch_namespaced_custom_object(
            TEST_GROUP, "v1", namespace, "widgets", "k", {"spec": {"size": 4}}
        )
        wait_for(lambda: phase() == "Resized", timeout=30, what="kopf update handler")
        events = (
            client.CoreV1Api(cluster.api)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=k,reason=Seen")
            .items
        )
        assert events and events[0].message == "seen by kopf"
        custom.delete_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", "k")

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", "k")
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, timeout=30, what="kopf removed its finalizer")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
