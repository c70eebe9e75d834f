"""kubectl as a user runs it: apply -f (client-side, validation on), get with printer
columns, -o wide, -o yaml, describe, delete, logs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.sandbox.apiserver.conftest import TEST_GROUP, Cluster, wait_for
from tests.sandbox.apiserver.kubectl import kubectl

WIDGET = f"""
apiVersion: {TEST_GROUP}/v1
kind: Widget
metadata:
  name: kw
spec:
  size: 3
  model: {{name: m1}}
"""


def _apply(cluster: Cluster, tmp_path: Path, text: str, namespace: str) -> str:
    path = tmp_path / "obj.yaml"
    path.write_text(text)
    return kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", str(path)).stdout


def test_apply_get_describe_delete_custom_resource(
    cluster: Cluster, namespace: str, widgets: str, tmp_path: Path
) -> None:
    assert "created" in _apply(cluster, tmp_path, WIDGET, namespace)
    client.CustomObjectsApi(cluster.api).patch_namespaced_custom_object_status(
        TEST_GROUP, "v1", namespace, "widgets", "kw", {"status": {"phase": "Running"}}
    )
    out = kubectl(cluster.kubeconfig, "get", "widgets", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "SIZE", "AGE"]
    cells = row.split()
    assert cells[:3] == ["kw", "Running", "3"] and re.fullmatch(r"\d+s", cells[3]), out
    wide = kubectl(cluster.kubeconfig, "get", "widgets", "-n", namespace, "-o", "wide").stdout
    # Columns keep the CRD's order; priority 1 ones only show with -o wide.
    assert wide.splitlines()[0].split() == ["NAME", "PHASE", "SIZE", "MODEL", "AGE"]
    assert wide.splitlines()[1].split()[3] == "m1"
    # Second apply: a three-way merge patch, generation moves.
    changed = WIDGET.replace("size: 3", "size: 4")
    assert "configured" in _apply(cluster, tmp_path, changed, namespace)
    doc = yaml.safe_load(
        kubectl(cluster.kubeconfig, "get", "widget", "kw", "-n", namespace, "-o", "yaml").stdout
    )
    assert doc["spec"]["size"] == 4 and doc["metadata"]["generation"] == 2
    assert doc["spec"]["color"] == "red"  # schema default
    assert "kubectl.kubernetes.io/last-applied-configuration" in doc["metadata"]["annotations"]
    assert "unchanged" in _apply(cluster, tmp_path, changed, namespace)
    # Invalid: the server's 422 reaches the user.
    bad = kubectl(
        cluster.kubeconfig,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        stdin=WIDGET.replace("size: 3", "size: 0"),
    )
    assert bad.returncode != 0 and "spec.size" in bad.stderr
    described = kubectl(cluster.kubeconfig, "describe", "widget", "kw", "-n", namespace).stdout
    assert "Name:" in described and "kw" in described and "Size:" in described
    assert (
        "deleted" in kubectl(cluster.kubeconfig, "delete", "widget", "kw", "-n", namespace).stdout
    )
    gone = kubectl(cluster.kubeconfig, "get", "widget", "kw", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_apply_builtin_twice_uses_strategic_merge(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    service = """
apiVersion: v1
kind: Service
metadata: {name: ks, labels: {app: k}}
spec:
  selector: {app: k}
  ports:
  - {name: http, port: 80}
"""
    assert "created" in _apply(cluster, tmp_path, service, namespace)
    grown = service + "  - {name: metrics, port: 9090}\n"
    assert "configured" in _apply(cluster, tmp_path, grown, namespace)
    got = client.CoreV1Api(cluster.api).read_namespaced_service("ks", namespace)
    assert [(p.name, p.port) for p in got.spec.ports] == [("http", 80), ("metrics", 9090)]
    assert got.spec.cluster_ip  # kept from the server's defaults across the patch
    assert "configured" in _apply(cluster, tmp_path, service, namespace)
    got = client.CoreV1Api(cluster.api).read_namespaced_service("ks", namespace)
    assert [p.name for p in got.spec.ports] == ["http"]
    kubectl(cluster.kubeconfig, "delete", "service", "ks", "-n", namespace)


def test_get_and_describe_pod(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    pod = """
apiVersion: v1
kind: Pod
metadata: {name: kp}
spec:
  containers:
  - {name: main, image: busybox:1}
"""
    assert "created" in _apply(cluster, tmp_path, pod, namespace)
    assert "configured" in _apply(
        cluster, tmp_path, pod.replace("busybox:1", "busybox:2"), namespace
    )
    out = kubectl(cluster.kubeconfig, "get", "pods", "-n", namespace).stdout
    assert out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out.splitlines()[1].split()[:3] == ["kp", "0/1", "Pending"]
    described = kubectl(cluster.kubeconfig, "describe", "pod", "kp", "-n", namespace).stdout
    assert "busybox:2" in described
    kubectl(cluster.kubeconfig, "delete", "pod", "kp", "-n", namespace)


def test_get_namespaces_and_crds(cluster: Cluster, widgets: str) -> None:
    out = kubectl(cluster.kubeconfig, "get", "ns").stdout
    assert re.search(r"^default\s+Active\s+\S+$", out, re.M), out
    crds = kubectl(cluster.kubeconfig, "get", "crd").stdout
    assert f"widgets.{TEST_GROUP}" in crds


@pytest.mark.sandbox_only
def test_logs(sandbox: object, cluster: Cluster, namespace: str) -> None:
    from llmbatch_sandbox.apiserver import ThreadedApiServer

    assert isinstance(sandbox, ThreadedApiServer)
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "lp"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
    )
    sandbox.run(sandbox.server.append_pod_log, namespace, "lp", b"line one\nline two\n")
    out = kubectl(cluster.kubeconfig, "logs", "lp", "-n", namespace).stdout
    assert out == "line one\nline two\n"
    assert kubectl(cluster.kubeconfig, "logs", "lp", "-n", namespace, "--tail=1").stdout == (
        "line two\n"
    )
    assert core.read_namespaced_pod_log("lp", namespace, container="main") == out


@pytest.mark.sandbox_only
def test_logs_follow_until_pod_ends(sandbox: object, cluster: Cluster, namespace: str) -> None:
    import subprocess

    from llmbatch_sandbox.apiserver import ThreadedApiServer
    from tests.sandbox.apiserver.kubectl import kubectl_binary

    assert isinstance(sandbox, ThreadedApiServer)
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "fp"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
    )
    sandbox.run(sandbox.server.append_pod_log, namespace, "fp", b"first\n")
    proc = subprocess.Popen(
        [kubectl_binary(), "logs", "-f", "fp", "-n", namespace],
        stdout=subprocess.PIPE,
        text=True,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        sandbox.run(sandbox.server.append_pod_log, namespace, "fp", b"second\n")
        assert proc.stdout.readline() == "second\n"
        core.patch_namespaced_pod_status("fp", namespace, {"status": {"phase": "Succeeded"}})
        started = time.monotonic()
        assert proc.wait(timeout=10) == 0 and time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_events_for_describe(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "ev"}})
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"generateName": "ev-"},
            "involvedObject": {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "name": "ev",
                "namespace": namespace,
                "uid": cm.metadata.uid,
            },
            "reason": "Tested",
            "message": "hello from the test",
            "type": "Normal",
            "source": {"component": "pytest"},
        },
    )
    found = wait_for(
        lambda: (
            core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.name=ev,involvedObject.uid={cm.metadata.uid}",
            ).items
        ),
        what="event listed",
    )
    assert found[0].reason == "Tested"
    out = kubectl(cluster.kubeconfig, "describe", "configmap", "ev", "-n", namespace).stdout
    assert "hello from the test" in out
    # The same event through events.k8s.io/v1 (raw: legacy events may lack eventTime there).
    status, events_v1 = cluster.raw("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    assert status == 200 and events_v1["items"][0]["note"] == "hello from the test"
    assert events_v1["items"][0]["regarding"]["name"] == "ev"


def test_explain_custom_resource(cluster: Cluster, widgets: str) -> None:
    out = kubectl(cluster.kubeconfig, "explain", "widgets.spec.size").stdout
    assert "KIND:       Widget" in out and "FIELD: size <integer>" in out


def test_imperative_create_commands(cluster: Cluster, namespace: str) -> None:
    """kubectl create sends protobuf for built-in kinds; the common ones must work."""
    kc = cluster.kubeconfig
    kubectl(kc, "create", "configmap", "cc", "-n", namespace, "--from-literal=a=b")
    kubectl(kc, "create", "secret", "generic", "cs", "-n", namespace, "--from-literal=K=v")
    kubectl(kc, "create", "serviceaccount", "robot", "-n", namespace)
    core = client.CoreV1Api(cluster.api)
    assert core.read_namespaced_config_map("cc", namespace).data == {"a": "b"}
    secret = core.read_namespaced_secret("cs", namespace)
    assert secret.data == {"K": "dg=="} and secret.type == "Opaque"
    assert core.read_namespaced_service_account("robot", namespace).metadata.name == "robot"
    kubectl(kc, "create", "namespace", f"{namespace}-extra")
    assert core.read_namespace(f"{namespace}-extra").status.phase == "Active"
    kubectl(kc, "delete", "namespace", f"{namespace}-extra")


def test_apply_rejects_unknown_fields(cluster: Cluster, namespace: str, widgets: str) -> None:
    """kubectl asks for fieldValidation=Strict: a typo is an error, not silently pruned."""
    typo = WIDGET.replace("size: 3", "size: 3\n  colour: red")
    result = kubectl(
        cluster.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=typo, check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.colour"' in result.stderr


@pytest.mark.sandbox_only
def test_auth_reviews(sandbox: object, cluster: Cluster) -> None:
    """No authorization in the emulator: every can-i is yes; whoami names the sandbox admin."""
    assert kubectl(cluster.kubeconfig, "auth", "can-i", "create", "pods").stdout.strip() == "yes"
    assert "sandbox-admin" in kubectl(cluster.kubeconfig, "auth", "whoami").stdout


def test_create_job_imperatively(cluster: Cluster, namespace: str) -> None:
    kubectl(
        cluster.kubeconfig,
        "create",
        "job",
        "cj",
        "-n",
        namespace,
        "--image=img:1",
        "--",
        "python",
        "-c",
        "print(1)",
    )
    job = client.BatchV1Api(cluster.api).read_namespaced_job("cj", namespace)
    container = job.spec.template.spec.containers[0]
    assert (container.name, container.image) == ("cj", "img:1")
    assert container.command == ["python", "-c", "print(1)"]
    assert job.spec.template.spec.restart_policy == "Never" and job.spec.completions == 1
