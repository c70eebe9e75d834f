"""The user's path through the CLI with the real operator and real vLLM: validate, estimate,
submit, watch until Succeeded, results --join; and the estimate's prompt tokens equal what
vLLM counted."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.app import cli_app
from tests.cli.test_cluster_commands import _sandbox_built

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NAMESPACE = "cli-e2e"
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Any:
    import os

    if not os.environ.get("LLMBATCH_E2E_KUBECONFIG") and not _sandbox_built():
        pytest.skip("the sandbox (llmbatch_sandbox.apiserver.ApiServer) is not built yet")
    return request.getfixturevalue("sandbox")


@pytest.fixture(scope="module")
def namespace(cluster: Any) -> str:
    from tests.e2e.cluster import Kubectl

    ctl = Kubectl(cluster, NAMESPACE)
    assert (
        ctl.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        ).returncode
        == 0
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "llmbatch-s3"},
        "data": {
            "AWS_ACCESS_KEY_ID": base64.b64encode(cluster.access_key_id.encode()).decode(),
            "AWS_SECRET_ACCESS_KEY": base64.b64encode(cluster.secret_access_key.encode()).decode(),
        },
    }
    result = ctl.apply(secret)
    assert result.returncode == 0, result.stderr
    return NAMESPACE


@pytest.fixture(scope="module")
def operator(
    cluster: Any, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """On the sandbox, an operator for this module's namespace; a real cluster has its own."""
    if not cluster.is_sandbox:
        yield None
        return
    from tests.e2e.cluster import OperatorProcess

    proc = OperatorProcess(cluster, namespace, tmp_path_factory.mktemp("cli-op") / "operator.log")
    proc.start()
    try:
        yield None
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def aws_env(cluster: Any) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cluster.env().items():
            if key.startswith("AWS_"):
                patch.setenv(key, value)
        yield None


@pytest.fixture(scope="module")
def model_uri(cluster: Any, aws_env: None, tiny_model: Path) -> str:
    from llmbatch.storage import StorageSettings, get_store

    prefix = f"s3://{cluster.bucket}/cli-e2e/models/tiny-qwen/"
    store = get_store(prefix, StorageSettings.from_env())
    for path in sorted(p for p in tiny_model.rglob("*") if p.is_file()):
        store.upload_file(path, prefix + path.relative_to(tiny_model).as_posix())
    return prefix


def test_validate_estimate_submit_watch_results(
    cluster: Any,
    namespace: str,
    operator: None,
    aws_env: None,
    model_uri: str,
    tiny_model: Path,
    tiny_served_name: str,
    tmp_path: Path,
) -> None:
    from tests.e2e.cluster import requests_jsonl

    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(requests_jsonl(6, tiny_served_name, prefix="cli", max_tokens=8))
    kube = ["--kubeconfig", str(cluster.kubeconfig), "-n", namespace]

    checked = runner.invoke(cli_app(), ["validate", str(requests)])
    assert checked.exit_code == 0, checked.output
    estimated = runner.invoke(
        cli_app(), ["estimate", str(requests), "--model-source", str(tiny_model), "-o", "json"]
    )
    assert estimated.exit_code == 0, estimated.output
    estimate = json.loads(estimated.stdout)

    name = f"cli-e2e-{uuid.uuid4().hex[:6]}"
    output = f"s3://{cluster.bucket}/cli-e2e/{name}/"
    submitted = runner.invoke(
        cli_app(),
        [
            "submit",
            str(requests),
            "--model",
            tiny_served_name,
            "--model-source",
            model_uri,
            "--output",
            output,
            "--name",
            name,
            *kube,
        ],
    )
    assert submitted.exit_code == 0, submitted.output

    watched = runner.invoke(
        cli_app(), ["watch", name, *kube, "--interval", "0.5", "--timeout", "420"]
    )
    assert watched.exit_code == 0, watched.output
    assert f"{name} succeeded" in watched.stdout

    status = json.loads(runner.invoke(cli_app(), ["status", name, *kube, "-o", "json"]).stdout)
    assert status["status"]["requestCounts"] == {"total": 6, "completed": 6, "failed": 0}
    # The tokenizer count of `estimate` is the one vLLM used: same tokenizer, same template.
    assert estimate["promptTokens"] == status["status"]["usage"]["promptTokens"]
    assert status["status"]["usage"]["completionTokens"] <= estimate["completionTokensUpperBound"]

    fetched = runner.invoke(
        cli_app(), ["results", name, *kube, "--dir", str(tmp_path / "out"), "--join", "-o", "json"]
    )
    assert fetched.exit_code == 0, fetched.output
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "joined.jsonl").read_text().splitlines()
    ]
    assert [r["custom_id"] for r in rows] == [f"cli-{i}" for i in range(6)]
    assert all(r["status_code"] == 200 and r["response"]["choices"] for r in rows)
