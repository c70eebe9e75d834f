"""status, watch and results against a cluster (the sandbox, or LLMBATCH_E2E_KUBECONFIG).

No operator runs: the tests play its part by patching the BatchJob's status subresource, the
way the operator does, and check what the commands show and how they exit."""

from __future__ import annotations

import importlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmbatch.cli.cmd_status import Snapshot, WatchExit, follow
from llmbatch.cli.kube import BatchJobClient
from tests.cli.app import cli_app

pytestmark = pytest.mark.slow
runner = CliRunner()
WAIT = 30.0  # seconds any single step may take on a loaded 2-core machine


def _sandbox_built() -> bool:
    try:
        module = importlib.import_module("llmbatch_sandbox.apiserver")
    except ImportError:
        return False
    return hasattr(module, "ApiServer")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Any:
    import os

    if not os.environ.get("LLMBATCH_E2E_KUBECONFIG") and not _sandbox_built():
        pytest.skip("the sandbox (llmbatch_sandbox.apiserver.ApiServer) is not built yet")
    return request.getfixturevalue("sandbox")


@pytest.fixture(scope="module")
def client(cluster: Any) -> BatchJobClient:
    return BatchJobClient.connect(Path(cluster.kubeconfig), cluster.namespace)


@pytest.fixture
def batchjob(client: BatchJobClient, cluster: Any) -> Iterator[str]:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    prefix = f"s3://{cluster.bucket}/cli-tests/{name}"
    client.create(
        {
            "apiVersion": "llmbatch.io/v1alpha1",
            "kind": "BatchJob",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": "tiny-qwen", "source": "/models/tiny"},
                "input": f"{prefix}/input.jsonl",
                "output": f"{prefix}/out/",
                "storage": {
                    "endpoint": cluster.s3_endpoint or None,
                    "secretRef": {"name": "llmbatch-s3"},
                },
            },
        }
    )
    yield name
    client.delete(name)


def kube_args(cluster: Any) -> list[str]:
    return ["--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]


def running(total: int, completed: int, failed: int = 0, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "status": {
            "phase": "Running",
            "requestCounts": {"total": total, "completed": completed, "failed": failed},
            "progress": f"{completed + failed}/{total}",
            "throughput": 12.5,
            "eta": (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
            "deadline": (now + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
            **extra,
        }
    }


def terminal(phase: str, total: int = 10, failed: int = 0) -> dict[str, Any]:
    return {
        "status": {
            "phase": phase,
            "requestCounts": {"total": total, "completed": total - failed, "failed": failed},
            "progress": f"{total}/{total}",
            "message": f"batch {phase.lower()}",
        }
    }


def test_status_text_and_json(client: BatchJobClient, cluster: Any, batchjob: str) -> None:
    client.patch_status(batchjob, running(10, 4, 1))
    result = runner.invoke(cli_app(), ["status", batchjob, *kube_args(cluster), "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"]["phase"] == "Running"
    assert data["status"]["requestCounts"] == {"total": 10, "completed": 4, "failed": 1}
    result = runner.invoke(cli_app(), ["status", batchjob, *kube_args(cluster)])
    assert result.exit_code == 0, result.output
    assert "Running" in result.output
    assert "5/10" in result.output
    assert "12.5 tokens/s" in result.output


def test_status_of_a_missing_batchjob(cluster: Any) -> None:
    result = runner.invoke(cli_app(), ["status", "no-such-batch", *kube_args(cluster)])
    assert result.exit_code == WatchExit.NOT_FOUND
    assert "not found" in result.output


class Observed:
    """Every status the watcher fetched, so the test can wait until it has seen a step
    before making the next one (a condition, not a sleep)."""

    def __init__(self) -> None:
        self.seen: list[Snapshot] = []
        self.changed = threading.Condition()

    def record(self, obj: dict[str, Any]) -> None:
        with self.changed:
            self.seen.append(Snapshot.of(obj))
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[Snapshot], bool]) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: any(predicate(s) for s in self.seen), WAIT)
        assert ok, f"the watcher never saw the expected state; saw {self.seen[-3:]}"


STEPS = [(0, 0), (4, 1), (9, 1)]


def at_step(completed: int, failed: int) -> Callable[[Snapshot], bool]:
    return lambda snap: (
        snap.phase == "Running"
        and (snap.completed, snap.failed)
        == (
            completed,
            failed,
        )
    )


def play_operator(client: BatchJobClient, name: str, observed: Observed, final: str) -> None:
    """Move the batch through STEPS, each once the watcher has seen the previous one."""
    for completed, failed in STEPS:
        client.patch_status(name, running(10, completed, failed))
        observed.wait_for(at_step(completed, failed))
    client.patch_status(name, terminal(final, failed=1))


def test_follow_sees_every_step_and_returns_the_outcome(
    client: BatchJobClient, batchjob: str
) -> None:
    observed = Observed()

    def fetch() -> dict[str, Any]:
        obj = client.get(batchjob)
        observed.record(obj)
        return obj

    rendered: list[Snapshot] = []
    player = threading.Thread(target=play_operator, args=(client, batchjob, observed, "Succeeded"))
    player.start()
    try:
        outcome = follow(fetch, rendered.append, interval=0.05, timeout=WAIT * 4)
    finally:
        player.join(WAIT)
    assert outcome is WatchExit.SUCCEEDED
    done = [s.done for s in rendered if s.phase == "Running"]
    assert {0, 5, 10} <= set(done)
    assert done == sorted(done)
    assert rendered[-1].phase == "Succeeded"


@pytest.mark.parametrize(("final", "code"), [("Succeeded", 0), ("Failed", 1)])
def test_watch_command_prints_progress_and_exits_with_the_outcome(
    client: BatchJobClient,
    cluster: Any,
    batchjob: str,
    monkeypatch: pytest.MonkeyPatch,
    final: str,
    code: int,
) -> None:
    observed = Observed()
    original_get = BatchJobClient.get

    def get(self: BatchJobClient, name: str) -> dict[str, Any]:
        obj = original_get(self, name)
        observed.record(obj)
        return obj

    monkeypatch.setattr(BatchJobClient, "get", get)
    player = threading.Thread(target=play_operator, args=(client, batchjob, observed, final))
    player.start()
    try:
        result = runner.invoke(
            cli_app(),
            ["watch", batchjob, *kube_args(cluster), "--interval", "0.05", "--timeout", "120"],
        )
    finally:
        player.join(WAIT)
    # Progress lines are "NAME  PHASE  done/total ..."; the closing line is "NAME outcome".
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"{batchjob}  ")]
    assert result.exit_code == code, result.output
    progress = [line.split()[2] for line in lines if line.split()[1] == "Running"]
    assert progress == ["0/10", "5/10", "10/10"], result.stdout
    assert "12.5 tok/s" in lines[1]
    assert "eta in" in lines[1] and "deadline in" in lines[1]
    assert lines[-1].split()[1] == final
    assert result.stdout.rstrip().endswith(f"{batchjob} {final.lower()}: batch {final.lower()}")


@pytest.mark.parametrize(("phase", "code"), [("Expired", 3), ("Cancelled", 4)])
def test_watch_exit_codes_for_terminal_phases(
    client: BatchJobClient, cluster: Any, batchjob: str, phase: str, code: int
) -> None:
    client.patch_status(batchjob, terminal(phase))
    result = runner.invoke(cli_app(), ["watch", batchjob, *kube_args(cluster), "--plain"])
    assert result.exit_code == code, result.output


def test_watch_times_out(client: BatchJobClient, cluster: Any, batchjob: str) -> None:
    client.patch_status(batchjob, running(10, 1))
    result = runner.invoke(
        cli_app(), ["watch", batchjob, *kube_args(cluster), "--interval", "0.1", "--timeout", "0.3"]
    )
    assert result.exit_code == WatchExit.TIMEOUT
    assert "timed out" in result.output


def test_results_downloads_and_joins(
    client: BatchJobClient,
    cluster: Any,
    batchjob: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmbatch.storage import StorageSettings, get_store

    for key, value in cluster.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    spec = client.get(batchjob)["spec"]
    store = get_store(spec["input"], StorageSettings.from_env())
    requests = [
        {
            "custom_id": c,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "tiny-qwen", "messages": [{"role": "user", "content": c}]},
        }
        for c in ("a", "b")
    ]
    store.write_bytes(spec["input"], b"".join(json.dumps(r).encode() + b"\n" for r in requests))
    output = {
        "id": "r1",
        "custom_id": "b",
        "error": None,
        "response": {"status_code": 200, "request_id": "q", "body": {"ok": True}},
    }
    store.write_bytes(spec["output"] + "output.jsonl", json.dumps(output).encode() + b"\n")
    client.patch_status(batchjob, terminal("Succeeded", total=2))
    result = runner.invoke(
        cli_app(),
        ["results", batchjob, *kube_args(cluster), "--dir", str(tmp_path), "--join", "-o", "json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["missing"] == ["errors.jsonl", "manifest.json"]
    rows = [json.loads(line) for line in (tmp_path / "joined.jsonl").read_text().splitlines()]
    assert [(r["custom_id"], r["status_code"]) for r in rows] == [("a", None), ("b", 200)]
    assert rows[0]["error"]["code"] == "missing"


def test_submit_uploads_and_creates_then_refuses_a_duplicate(
    client: BatchJobClient, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmbatch.storage import StorageSettings, get_store

    for key, value in cluster.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    requests = tmp_path / "batch.jsonl"
    requests.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "tiny-qwen",
                        "messages": [{"role": "user", "content": str(i)}],
                    },
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    name = f"cli-submit-{uuid.uuid4().hex[:6]}"
    output = f"s3://{cluster.bucket}/cli-tests/{name}/"
    args = [
        "submit",
        str(requests),
        "--model",
        "tiny-qwen",
        "--model-source",
        "/models/tiny",
        "--output",
        output,
        "--name",
        name,
        *kube_args(cluster),
        "-o",
        "json",
    ]
    result = runner.invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    try:
        created = json.loads(result.stdout)
        assert created["name"] == name and created["input"] == f"{output}input.jsonl"
        obj = client.get(name)
        assert obj["spec"]["input"] == created["input"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmbatch-cli"
        store = get_store(created["input"], StorageSettings.from_env())
        assert store.read_bytes(created["input"]) == requests.read_bytes()

        again = runner.invoke(cli_app(), args)
        assert again.exit_code == 1
        assert "already exists" in again.output
    finally:
        client.delete(name)
