"""kopf runs against the emulator as against a cluster: watches, status patches, its
finalizer on deletion, events."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmbatch_sandbox.apiserver import ThreadedApiServer
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


@pytest.fixture(scope="module")
def kopf_operator(
    cluster: Cluster, widgets: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """kopf running the operator above against the cluster; yields its log file."""
    workdir = tmp_path_factory.mktemp("kopf")
    source = workdir / "operator.py"
    source.write_text(OPERATOR)
    log = workdir / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-A", str(source)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text


def _phase(custom: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    obj = custom.get_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", name)
    return (obj.get("status") or {}).get("phase")


def _widget(name: str) -> dict[str, object]:
    return {
        "apiVersion": f"{TEST_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1},
    }


@pytest.mark.slow
def test_kopf_operator_round_trip(cluster: Cluster, kopf_operator: Path, namespace: str) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", _widget("k"))
    wait_for(
        lambda: _phase(custom, namespace, "k") == "Seen",
        timeout=30,
        what=f"kopf create handler ({kopf_operator})",
    )
    obj = custom.get_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", "k")
    assert f"{TEST_GROUP}/kopf-finalizer" in obj["metadata"]["finalizers"]
    custom.patch_namespaced_custom_object(
        TEST_GROUP, "v1", namespace, "widgets", "k", {"spec": {"size": 4}}
    )
    wait_for(
        lambda: _phase(custom, namespace, "k") == "Resized", timeout=30, what="kopf update handler"
    )
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


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_kopf_survives_closed_watches_and_410(
    sandbox: ThreadedApiServer, cluster: Cluster, kopf_operator: Path, namespace: str
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", _widget("a"))
    wait_for(lambda: _phase(custom, namespace, "a") == "Seen", timeout=30, what="first handled")
    sandbox.run(lambda: sandbox.server.faults.inject(410, verb="watch", resource="widgets"))
    sandbox.run(sandbox.server.close_watches, "widgets")
    custom.create_namespaced_custom_object(TEST_GROUP, "v1", namespace, "widgets", _widget("b"))
    wait_for(
        lambda: _phase(custom, namespace, "b") == "Seen",
        timeout=60,
        what=f"handled after the watch broke ({kopf_operator})",
    )
    assert sandbox.run(lambda: list(sandbox.server.faults.rules)) == []  # the 410 was served
