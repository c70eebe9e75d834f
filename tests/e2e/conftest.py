"""Fixtures of the operator's end-to-end tests: one sandbox (the shared session fixture), one
namespace with the storage Secret, the tiny model in S3, and one operator process that tests
may kill and restart."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbatch.storage import ObjectStore
from tests.e2e.cluster import Kubectl, OperatorProcess, requests_jsonl
from tests.fixtures.sandbox import SandboxInfo

NAMESPACE = "e2e-operator"
SECRET = "llmbatch-s3"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "batchjob.yaml"


@pytest.fixture(scope="session")
def kubectl(sandbox: SandboxInfo) -> Kubectl:
    """kubectl in the tests' own namespace (other suites' BatchJobs are not ours)."""
    ctl = Kubectl(sandbox, NAMESPACE)
    ctl.prepare_namespace(SECRET)
    return ctl


@pytest.fixture(scope="session")
def store(sandbox: SandboxInfo) -> ObjectStore:
    return sandbox.store()


@pytest.fixture(scope="session")
def model_uri(sandbox: SandboxInfo, store: ObjectStore, tiny_model: Path) -> str:
    """The tiny model in the bucket, so the same spec works on the sandbox and a real cluster."""
    prefix = f"s3://{sandbox.bucket}/e2e/models/tiny-qwen/"
    for path in sorted(p for p in tiny_model.rglob("*") if p.is_file()):
        store.upload_file(path, prefix + path.relative_to(tiny_model).as_posix())
    return prefix


@pytest.fixture(scope="session")
def operator(
    sandbox: SandboxInfo, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        sandbox,
        NAMESPACE,
        tmp_path_factory.mktemp("operator") / "operator.log",
        # Progress every second, so tests that act "mid-run" see the first finished request
        # long before a shard could be done (the tiny model is fast).
        extra_env={
            "LLMBATCH_RUNNER_ENV_LLMBATCH_PROGRESS_SECONDS": "1",
            # spec.notify tests receive webhooks on 127.0.0.1 (test_notify.py).
            "LLMBATCH_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        },
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


BatchJobFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def new_batchjob(
    sandbox: SandboxInfo, store: ObjectStore, model_uri: str, tiny_served_name: str
) -> BatchJobFactory:
    """examples/batchjob.yaml with a fresh name, input and output, and the given overrides."""

    def make(
        name: str, requests: int = 12, upload: bool = True, max_tokens: int = 8, **spec: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        run = f"{name}-{uuid.uuid4().hex[:6]}"
        base = f"s3://{sandbox.bucket}/e2e/{run}"
        body["metadata"] = {"name": run, "namespace": NAMESPACE}
        # The example serves a real model; these tests run the tiny one (fast, any answer).
        body["spec"]["model"] = {"name": tiny_served_name, "source": model_uri}
        body["spec"]["input"] = f"{base}/input.jsonl"
        body["spec"]["output"] = f"{base}/out/"
        body["spec"]["parallelism"] = 2
        body["spec"].update(spec)
        if upload:
            data = requests_jsonl(requests, tiny_served_name, prefix=name, max_tokens=max_tokens)
            store.write_bytes(body["spec"]["input"], data)
        return body

    return make
