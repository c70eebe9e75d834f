"""Backend ray end to end on the sandbox (or LLMBATCH_E2E_KUBECONFIG): a BatchJob with
``backend: ray`` runs its shard as a local Ray instance and Ray Data's LLM pipeline over real
vLLM, to Succeeded with every line once; a shard SIGKILLed after its first chunk is committed
loses nothing, and the next attempt finishes the rest.

The cluster form (``ray.workers``, a KubeRay RayJob) cannot run here: the sandbox has no
KubeRay. Its builder is tested against KubeRay's schema in tests/controller/test_build_rayjob.py,
and the operator's side of it on the sandbox, with the test playing KubeRay, in
test_rayjob_form.py.

The module runs its own operator in its own namespace with small chunks and short leases, so
a batch of a dozen lines has several chunks and a killed shard's chunk is taken over soon."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.storage import ObjectStore
from tests.e2e.cluster import Kubectl, OperatorProcess, operator_running, requests_jsonl, wait_for
from tests.e2e.conftest import SECRET
from tests.e2e.test_lifecycle import assert_exactly_once
from tests.fixtures.sandbox import SandboxInfo

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NAMESPACE = "e2e-ray"
CHUNK_LINES = 6
REQUESTS = 12


@pytest.fixture(scope="module")
def ray_kubectl(sandbox: SandboxInfo) -> Kubectl:
    pytest.importorskip("ray.data.llm", reason="the ray extra (pip install .[ray]) is missing")
    ctl = Kubectl(sandbox, NAMESPACE)
    ctl.prepare_namespace(SECRET)
    return ctl


@pytest.fixture(scope="module")
def ray_operator(
    sandbox: SandboxInfo, ray_kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("ray-operator") / "operator.log"
    with operator_running(
        sandbox,
        NAMESPACE,
        log,
        {
            "LLMBATCH_PROGRESS_SECONDS": "1",
            "LLMBATCH_LEASE_SECONDS": "10",
            "LLMBATCH_LEASE_RENEW_SECONDS": "2",
            "LLMBATCH_CHUNK_LINES": str(CHUNK_LINES),
        },
    ) as proc:
        yield proc


def ray_batchjob(
    sandbox: SandboxInfo, store: ObjectStore, model_uri: str, served: str, name: str, **spec: Any
) -> dict[str, Any]:
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    base = f"s3://{sandbox.bucket}/e2e-ray/{run}"
    body: dict[str, Any] = {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": run, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": served, "source": model_uri, "engineArgs": {"max_model_len": 256}},
            "input": f"{base}/input.jsonl",
            "output": f"{base}/out/",
            "backend": "ray",
            "parallelism": 1,
            # No GPU on the sandbox: the runner still gives its Ray instance one logical GPU,
            # and vLLM runs on the CPU.
            "resources": {"gpu": 0},
            "storage": {"secretRef": {"name": SECRET}},
            **spec,
        },
    }
    store.write_bytes(body["spec"]["input"], requests_jsonl(REQUESTS, served, prefix=name))
    return body


def test_a_backend_ray_batch_runs_to_succeeded_with_every_line_once(
    ray_operator: OperatorProcess,
    ray_kubectl: Kubectl,
    store: ObjectStore,
    sandbox: SandboxInfo,
    model_uri: str,
    tiny_served_name: str,
) -> None:
    body = ray_batchjob(sandbox, store, model_uri, tiny_served_name, "rayok")
    name = body["metadata"]["name"]
    started = time.monotonic()
    assert ray_kubectl.apply(body).returncode == 0
    status = ray_kubectl.wait_phase(name, "Succeeded", timeout=1500)
    out, errors = assert_exactly_once(store, body, status, REQUESTS)
    assert len(out) == REQUESTS and errors == []
    [pod] = ray_kubectl.items("pods", f"job-name={name}-run")
    command = pod["spec"]["containers"][0]["command"]
    assert command[command.index("--backend") + 1] == "ray"
    print(f"backend ray, {REQUESTS} lines: Succeeded after {time.monotonic() - started:.0f} s")


def test_a_killed_ray_shard_loses_nothing_and_the_next_attempt_finishes(
    ray_operator: OperatorProcess,
    ray_kubectl: Kubectl,
    store: ObjectStore,
    sandbox: SandboxInfo,
    model_uri: str,
    tiny_served_name: str,
) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("SIGKILL of a pod's process is the sandbox kubelet's annotation")
    body = ray_batchjob(sandbox, store, model_uri, tiny_served_name, "raykill", maxRetries=2)
    name, output = body["metadata"]["name"], body["spec"]["output"]
    assert ray_kubectl.apply(body).returncode == 0
    parts = OutputLayout(output).parts_dir + "chunk-"

    def running_pod_with_a_committed_chunk() -> dict[str, Any] | None:
        if not list(store.list(parts)):
            return None
        pods = ray_kubectl.items("pods", f"job-name={name}-run")
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running[0] if running else None

    victim = wait_for("a chunk committed", running_pod_with_a_committed_chunk, timeout=1200)
    ray_kubectl.run(
        "annotate", "pod", victim["metadata"]["name"], "sandbox.llmbatch.io/kill=SIGKILL"
    )
    status = ray_kubectl.wait_phase(name, "Succeeded", timeout=1500)
    out, errors = assert_exactly_once(store, body, status, REQUESTS)
    assert len(out) == REQUESTS and errors == []
    pods = ray_kubectl.items("pods", f"job-name={name}-run")
    assert len(pods) >= 2, "the killed shard was not replaced by a new attempt"
