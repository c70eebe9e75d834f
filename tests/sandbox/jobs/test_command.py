"""`llmbatch sandbox` itself: its printed lines, start time, what it installs, kubectl against
it, its help text, and a clean stop that takes the pod processes with it."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.fixtures.sandbox import SandboxInfo, start_sandbox, stop_sandbox
from tests.sandbox.jobs.kube import Kube, container, phase, unique, wait_for

REPO = Path(__file__).resolve().parents[3]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def test_help_says_what_it_is() -> None:
    from llmbatch.cli.main import app

    result = CliRunner().invoke(app, ["sandbox", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "not a production cluster" in text.lower()
    for option in ("--port", "--kubeconfig", "--gpu-slots", "--operator"):
        assert option in text


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_ready_lines_and_what_is_installed(sandbox: SandboxInfo, kube_api_client: Any) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("checks the sandbox's own start-up")
    assert sandbox.startup_seconds < 5.0, f"ready after {sandbox.startup_seconds:.1f} s"
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == sandbox.api_url
    assert sandbox.s3_endpoint.startswith("http://127.0.0.1:")

    kube = Kube(kube_api_client)
    namespaces = {n.metadata.name for n in kube.core.list_namespace().items}
    assert {"default", "kube-system"} <= namespaces
    secret = kube.core.read_namespaced_secret("llmbatch-s3", "default")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    assert decoded == {
        "AWS_ACCESS_KEY_ID": sandbox.access_key_id,
        "AWS_SECRET_ACCESS_KEY": sandbox.secret_access_key,
    }
    from kubernetes import client

    crd = client.ApiextensionsV1Api(kube_api_client).read_custom_resource_definition(
        "batchjobs.llmbatch.io"
    )
    assert crd.spec.group == "llmbatch.io"
    client.CustomObjectsApi(kube_api_client).list_namespaced_custom_object(
        "llmbatch.io", "v1alpha1", "default", "batchjobs"
    )

    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=sandbox.s3_endpoint,
        region_name=sandbox.region,
        aws_access_key_id=sandbox.access_key_id,
        aws_secret_access_key=sandbox.secret_access_key,
    )
    s3.head_bucket(Bucket=sandbox.bucket)


def kubectl(sandbox: SandboxInfo, *args: str) -> str:
    result = subprocess.run(
        [KUBECTL, *args],
        env=dict(os.environ, KUBECONFIG=str(sandbox.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_kubectl_get_batchjobs_shows_printer_columns(
    sandbox: SandboxInfo, kube_api_client: Any
) -> None:
    example = REPO / "examples" / "batchjob.yaml"
    if not example.is_file():
        pytest.skip("examples/batchjob.yaml is not written yet")
    namespace = unique("kubectl")
    # Its own namespace: e2e tests elsewhere may run an operator on `default`.
    Kube(kube_api_client).core.create_namespace({"metadata": {"name": namespace}})
    try:
        kubectl(sandbox, "apply", "-n", namespace, "-f", str(example))
        name = yaml.safe_load(example.read_text())["metadata"]["name"]
        header, *rows = kubectl(sandbox, "get", "batchjobs", "-n", namespace).splitlines()
        assert header.split() == ["NAME", "PHASE", "PROGRESS", "DEADLINE", "AGE"]
        assert rows and rows[0].split()[0] == name
        wide = kubectl(sandbox, "get", "batchjobs", "-n", namespace, "-o", "wide").splitlines()
        for column in ("MODEL", "THROUGHPUT", "ETA"):
            assert column in wide[0].split()
    finally:
        kubectl(sandbox, "delete", "namespace", namespace, "--wait=false")


@pytest.mark.slow
@pytest.mark.sandbox_only
@pytest.mark.timeout(120)
def test_stop_ends_pods_and_operator(tmp_path: Path) -> None:
    info = start_sandbox(tmp_path, ["--gpu-slots", "1", "--operator"])
    assert info.process is not None
    try:
        assert info.startup_seconds < 5.0, f"ready after {info.startup_seconds:.1f} s"
        from kubernetes import config

        with config.new_client_from_config(config_file=str(info.kubeconfig)) as api_client:
            kube = Kube(api_client)
            node = kube.core.read_node("sandbox")
            assert node.status.capacity["nvidia.com/gpu"] == "1"
            name = unique("orphan")
            code = "import os, time; print(os.getpid(), flush=True); time.sleep(300)"
            kube.create_pod(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {"restartPolicy": "Never", "containers": [container(code)]},
                }
            )
            wait_for(lambda: phase(kube.pod(name)) == "Running", "pod running")
            pid = int(wait_for(lambda: kube.logs(name).strip(), "the pod's pid"))
            operator_seen = _operator_reconciles(api_client)
        children = _children(info.process.pid)
        assert pid in children and len(children) >= 2, children  # the pod and the operator
        os.kill(pid, 0)  # alive now
        started = time.monotonic()
        info.process.send_signal(signal.SIGTERM)
        assert info.process.wait(30) == 0
        assert time.monotonic() - started < 15
    finally:
        stop_sandbox(info.process)
    log = (info.log_path or Path()).read_text(errors="replace")
    assert "the operator exited" not in log, log[-3000:]

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the pod process to be stopped with the sandbox", timeout=10)
    for child in children:
        assert not Path(f"/proc/{child}").exists() or _is_zombie(child), f"{child} survived"
    if operator_seen is not None:
        assert operator_seen, "the operator never reconciled the example BatchJob"


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _operator_reconciles(api_client: Any) -> bool | None:
    """With --operator, the example BatchJob gets a phase (whatever it is: its input is not
    uploaded here). None when the example does not exist."""
    from kubernetes import client

    example = REPO / "examples" / "batchjob.yaml"
    if not example.is_file():
        return None
    custom = client.CustomObjectsApi(api_client)
    body = yaml.safe_load(example.read_text())
    custom.create_namespaced_custom_object("llmbatch.io", "v1alpha1", "default", "batchjobs", body)
    name = body["metadata"]["name"]

    def phased() -> str | None:
        obj = custom.get_namespaced_custom_object(
            "llmbatch.io", "v1alpha1", "default", "batchjobs", name
        )
        return (obj.get("status") or {}).get("phase")

    try:
        wait_for(phased, "a phase from the operator", timeout=45)
    except AssertionError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_a_taken_port_is_a_clear_error(sandbox: SandboxInfo, tmp_path: Path) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("needs the sandbox's port")
    port = sandbox.api_url.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "llmbatch.cli.main", "sandbox", "--port", port]
    command += ["--kubeconfig", str(tmp_path / "kubeconfig")]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "address already in use" in result.stderr
    assert "KUBECONFIG=" not in result.stdout
