"""The examples are valid: each BatchJob passes the generated CRD schema and the models, the
full example sets every spec field, and every JSONL line passes the input file rules."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llmbatch.api import BatchJob, Endpoint, FileValidator, LineError, ValidLine, iter_validated
from llmbatch.api.crd import openapi_schema
from llmbatch.api.schema import PRESERVE_UNKNOWN, to_jsonschema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# BatchJob manifests; other YAML here (e.g. gateway-config.yaml) is checked by its own tests.
MANIFESTS = sorted(EXAMPLES.glob("batchjob*.yaml"))
JSONL = sorted(EXAMPLES.glob("*.jsonl"))


def batchjobs(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return [doc for doc in docs if doc.get("kind") == "BatchJob"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(to_jsonschema(openapi_schema()))


def test_the_examples_exist() -> None:
    names = {p.name for p in MANIFESTS + JSONL}
    assert {"batchjob.yaml", "batchjob-full.yaml", "requests.jsonl", "embeddings.jsonl"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_batchjob_matches_the_crd_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    jobs = batchjobs(path)
    assert jobs, f"{path.name} holds no BatchJob"
    for job in jobs:
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(job)]
        assert errors == [], f"{path.name}: {errors}"
        assert job["apiVersion"] == "llmbatch.io/v1alpha1"
        # The models agree with the schema (they apply the checks the schema cannot express).
        BatchJob.model_validate(job)


def declared_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every field the schema declares (free-form subtrees count as one)."""
    fields = set()
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        fields.add(path)
        if not child.get(PRESERVE_UNKNOWN):
            fields |= declared_fields(child, f"{path}.")
    return fields


def set_fields(value: Any, prefix: str = "") -> set[str]:
    fields = set()
    if isinstance(value, dict):
        for name, child in value.items():
            path = f"{prefix}{name}"
            fields.add(path)
            fields |= set_fields(child, f"{path}.")
    return fields


def test_full_example_sets_every_spec_field() -> None:
    [job] = batchjobs(EXAMPLES / "batchjob-full.yaml")
    spec_schema = openapi_schema()["properties"]["spec"]
    # spec.ray (the KubeRay cluster form) excludes maxParallelism, which the full example
    # shows: batchjob-kuberay.yaml shows it.
    declared = {f for f in declared_fields(spec_schema) if f.split(".")[0] != "ray"}
    missing = declared - set_fields(job["spec"])
    assert missing == set(), f"batchjob-full.yaml does not show {sorted(missing)}"
    [ray_job] = batchjobs(EXAMPLES / "batchjob-kuberay.yaml")
    ray_declared = {f for f in declared_fields(spec_schema) if f.split(".")[0] == "ray"}
    missing = ray_declared - set_fields(ray_job["spec"])
    assert missing == set(), f"batchjob-kuberay.yaml does not show {sorted(missing)}"


def test_minimal_example_is_minimal_and_runs_on_the_sandbox() -> None:
    [job] = batchjobs(EXAMPLES / "batchjob.yaml")
    spec = job["spec"]
    assert set(spec) == {"model", "input", "output", "storage"}
    # The operator supplies the sandbox's S3 endpoint, whose port changes on every start.
    assert spec["storage"] == {"secretRef": {"name": "llmbatch-s3"}}
    assert spec["input"] == "s3://llmbatch/examples/requests.jsonl"
    assert spec["output"] == "s3://llmbatch/examples/out/"
    # Its input is this directory's requests.jsonl, and the lines ask for its model.
    lines = (EXAMPLES / "requests.jsonl").read_bytes().splitlines()
    results = list(iter_validated(lines, FileValidator(endpoint=Endpoint.CHAT_COMPLETIONS)))
    assert {r.request.body["model"] for r in results if isinstance(r, ValidLine)} == {
        spec["model"]["name"]
    }


@pytest.mark.parametrize("path", JSONL, ids=lambda p: p.name)
def test_every_jsonl_line_is_valid(path: Path) -> None:
    lines = path.read_bytes().splitlines()
    results = list(iter_validated(lines))
    errors = [
        f"line {r.line}: {r.rule.value}: {r.message}" for r in results if isinstance(r, LineError)
    ]
    assert errors == [], f"{path.name}: {errors}"
    assert len(results) == len(lines), "no blank lines in the examples"


def test_requests_are_small_chat_requests() -> None:
    lines = (EXAMPLES / "requests.jsonl").read_bytes().splitlines()
    results = [r for r in iter_validated(lines) if isinstance(r, ValidLine)]
    assert len(results) >= 20
    for result in results:
        assert result.request.url is Endpoint.CHAT_COMPLETIONS
        assert result.request.body["messages"][-1]["role"] == "user"
        # Small outputs keep the CPU demo quick.
        assert 1 <= result.request.body["max_tokens"] <= 32


def test_embeddings_example() -> None:
    lines = (EXAMPLES / "embeddings.jsonl").read_bytes().splitlines()
    results = [r for r in iter_validated(lines) if isinstance(r, ValidLine)]
    assert len(results) >= 10
    assert {r.request.url for r in results} == {Endpoint.EMBEDDINGS}
    assert all(isinstance(r.request.body["input"], str) for r in results)


# --- the examples against an API server -------------------------------------------------------


def kubectl(sandbox: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
    return subprocess.run(
        [binary, "--namespace", sandbox.namespace, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=sandbox.env(),
        timeout=60,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_examples_pass_server_side_validation(sandbox: Any, path: Path) -> None:
    # Server-side dry run: the API server applies the installed CRD's schema, defaults and CEL
    # rules, and nothing is created.
    result = kubectl(sandbox, "apply", "--dry-run=server", "-f", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_server_rejects_a_bad_batchjob_naming_each_field(sandbox: Any) -> None:
    [job] = batchjobs(EXAMPLES / "batchjob.yaml")
    job["metadata"] = {"name": f"bad-{uuid.uuid4().hex[:8]}"}
    job["spec"] |= {"parallelism": 0, "endpoint": "/v1/foo", "completionWindow": "24 hours"}
    result = kubectl(sandbox, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(job))
    assert result.returncode != 0
    for field in ("spec.parallelism", "spec.endpoint", "spec.completionWindow"):
        assert field in result.stderr, result.stderr


@pytest.mark.slow
def test_server_enforces_immutability(sandbox: Any) -> None:
    [job] = batchjobs(EXAMPLES / "batchjob.yaml")
    name = f"immutable-{uuid.uuid4().hex[:8]}"
    job["metadata"] = {"name": name}
    # Suspended: an operator running in the same cluster leaves it alone.
    job["spec"]["suspend"] = True
    created = kubectl(sandbox, "create", "-f", "-", stdin=yaml.safe_dump(job))
    assert created.returncode == 0, created.stderr
    try:
        changed = kubectl(
            sandbox, "patch", "batchjob", name, "--dry-run=server", "--type=merge",
            "-p", '{"spec": {"parallelism": 3}}',
        )  # fmt: skip
        assert changed.returncode != 0
        assert "spec.parallelism is immutable" in changed.stderr
        resumed = kubectl(
            sandbox, "patch", "batchjob", name, "--dry-run=server", "--type=merge",
            "-p", '{"spec": {"suspend": false, "cancel": true}}',
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
    finally:
        kubectl(sandbox, "delete", "batchjob", name, "--wait=false")
