"""The KubeRay form (``spec.ray.workers``) on the sandbox, with the test playing KubeRay: the
sandbox has no KubeRay, so the module registers a RayJob CRD (KubeRay's schema, trimmed:
tests/fixtures/kuberay/) and writes the RayJob's status as KubeRay would. The operator plans
the batch with a real plan pod, creates the RayJob (no run Job), reads KubeRay's status back
and maps it onto the BatchJob, suspends the RayJob on cancel, runs finalize, and the RayJob
goes with its BatchJob (ownerReference garbage collection). Nothing starts Ray or vLLM: what
the RayJob's pods would run is the one-pod form's runner, tested end to end in
test_ray_backend.py. A real KubeRay (the cluster, the submitter, the runner joining it) cannot
run here."""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from llmbatch.storage import ObjectStore
from tests.controller.test_build_rayjob import rayjob_schema
from tests.e2e.cluster import Kubectl, OperatorProcess, requests_jsonl, wait_for
from tests.e2e.conftest import SECRET
from tests.fixtures.sandbox import SandboxInfo

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.sandbox_only]

NAMESPACE = "e2e-rayjob"
REQUESTS = 6
CRD_NAME = "rayjobs.ray.io"


def rayjob_crd() -> dict[str, Any]:
    """A RayJob CRD with KubeRay's schema for the fields our builder writes, and a status
    subresource as KubeRay's has."""
    schema = rayjob_schema()
    del schema["properties"]["metadata"]  # the API server's own
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": "ray.io",
            "scope": "Namespaced",
            "names": {"plural": "rayjobs", "singular": "rayjob", "kind": "RayJob"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def ray_kubectl(sandbox: SandboxInfo) -> Iterator[Kubectl]:
    if not sandbox.is_sandbox:
        pytest.skip("plays KubeRay with a stand-in RayJob CRD: only on the sandbox")
    ctl = Kubectl(sandbox, NAMESPACE)
    ctl.prepare_namespace(SECRET)
    result = ctl.apply(rayjob_crd())
    assert result.returncode == 0, result.stderr
    wait_for("the RayJob API", lambda: ctl.run("get", "rayjobs", check=False).returncode == 0, 30)
    try:
        yield ctl
    finally:
        ctl.run("delete", "crd", CRD_NAME, "--wait=false", check=False)


@pytest.fixture(scope="module")
def rayjob_operator(
    sandbox: SandboxInfo, ray_kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        sandbox, NAMESPACE, tmp_path_factory.mktemp("rayjob-operator") / "operator.log"
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def submitted(
    rayjob_operator: OperatorProcess,
    ray_kubectl: Kubectl,
    sandbox: SandboxInfo,
    store: ObjectStore,
    model_uri: str,
    tiny_served_name: str,
) -> str:
    """A KubeRay-form batch of ``REQUESTS`` lines, applied with the operator running: its name."""
    name = f"rayform-{uuid.uuid4().hex[:6]}"
    base = f"s3://{sandbox.bucket}/e2e-rayjob/{name}"
    body: dict[str, Any] = {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": tiny_served_name, "source": model_uri},
            "input": f"{base}/input.jsonl",
            "output": f"{base}/out/",
            "backend": "ray",
            "ray": {"workers": 2, "workerResources": {"gpu": 1}},
            "parallelism": 1,
            "storage": {"secretRef": {"name": SECRET}},
        },
    }
    lines = requests_jsonl(REQUESTS, tiny_served_name, prefix=name)
    store.write_bytes(body["spec"]["input"], lines)
    result = ray_kubectl.apply(body)
    assert result.returncode == 0, result.stderr
    return name


def wait_rayjob(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return wait_for(f"the RayJob {name}-ray", lambda: kubectl.get("rayjob", f"{name}-ray"), 240)


def kuberay_says(kubectl: Kubectl, name: str, **status: Any) -> None:
    patch = json.dumps({"status": status})
    kubectl.run(
        "patch", "rayjob", f"{name}-ray", "--subresource=status", "--type=merge", "-p", patch
    )


def kuberay_runs(kubectl: Kubectl, name: str) -> None:
    """KubeRay says the RayJob runs; the operator maps that onto the BatchJob."""
    kuberay_says(kubectl, name, jobDeploymentStatus="Running", jobStatus="RUNNING")
    kubectl.wait_phase(name, "Running", timeout=60)


def test_the_operator_creates_the_rayjob_and_maps_kuberays_status(
    ray_kubectl: Kubectl, submitted: str
) -> None:
    name = submitted
    rayjob = wait_rayjob(ray_kubectl, name)
    owner = rayjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("BatchJob", name)
    entrypoint = shlex.split(rayjob["spec"]["entrypoint"])
    assert entrypoint[entrypoint.index("--ray-address") + 1] == "auto"
    assert entrypoint[entrypoint.index("--ray-gpus") + 1] == "2"
    # The plan ran first (its pod counted the lines); no run Job in this form.
    status = ray_kubectl.status(name)
    assert status["jobName"] == f"{name}-ray"
    assert status["requestCounts"]["total"] == REQUESTS
    assert ray_kubectl.get("job", f"{name}-run") is None

    kuberay_runs(ray_kubectl, name)
    message = "Job entrypoint command failed with exit code 1, last available logs:\nboom\n"
    kuberay_says(
        ray_kubectl,
        name,
        jobDeploymentStatus="Failed",
        jobStatus="FAILED",
        reason="AppFailed",
        message=message,
    )
    status = ray_kubectl.wait_phase(name, "Failed", timeout=60)
    assert status["reason"] == "BackoffLimitExceeded"
    assert "AppFailed" in status["message"] and "boom" in status["message"]
    events = ray_kubectl.items("events")
    assert any(
        e.get("reason") == "BackoffLimitExceeded" and e["involvedObject"]["name"] == name
        for e in events
    )

    ray_kubectl.run("delete", "batchjob", name, "--wait=false")
    wait_for(
        "the RayJob to go with its BatchJob",
        lambda: ray_kubectl.get("rayjob", f"{name}-ray") is None,
        60,
    )


def test_cancel_suspends_the_rayjob_then_finalize_records_every_line(
    ray_kubectl: Kubectl, submitted: str
) -> None:
    name = submitted
    wait_rayjob(ray_kubectl, name)
    kuberay_runs(ray_kubectl, name)
    ray_kubectl.patch_spec(name, {"cancel": True})
    wait_for(
        "the RayJob to be suspended",
        lambda: (ray_kubectl.get("rayjob", f"{name}-ray") or {}).get("spec", {}).get("suspend"),
        60,
    )
    # KubeRay is removing the cluster: finalize must not start yet.
    kuberay_says(ray_kubectl, name, jobDeploymentStatus="Suspending")
    assert ray_kubectl.status(name)["phase"] == "Cancelling"
    assert ray_kubectl.get("job", f"{name}-finalize") is None
    kuberay_says(ray_kubectl, name, jobDeploymentStatus="Suspended", jobStatus="")
    status = ray_kubectl.wait_phase(name, "Cancelled", timeout=240)
    # No Ray job ran a line: finalize records every one as cancelled.
    assert status["requestCounts"] == {"total": REQUESTS, "completed": 0, "failed": REQUESTS}
