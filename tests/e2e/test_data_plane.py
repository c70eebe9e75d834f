"""The chunked data plane end to end on the sandbox (or LLMBATCH_E2E_KUBECONFIG): the plan pod
runs before the shards, the status shows the plan's total while the shards run, a bad input
fails the plan with its URI, and shards killed mid-chunk lose nothing and recompute at most
the chunk they held.

The module runs its own operator in its own namespace with short chunk leases, so that a
killed shard's chunk is taken over in seconds rather than a minute."""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.controller.jobview import pod_index
from llmbatch.storage import ObjectStore
from tests.e2e.cluster import Kubectl, OperatorProcess, operator_running, requests_jsonl, wait_for
from tests.e2e.conftest import SECRET
from tests.e2e.test_lifecycle import assert_exactly_once
from tests.fixtures.sandbox import SandboxInfo

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NAMESPACE = "e2e-dataplane"
LEASE_SECONDS = 10
CHUNK_LINES = 1000
# The issue's bar: above the 50,000 lines the gateway caps a file at.
LARGE = 60_000


@pytest.fixture(scope="module")
def dp_kubectl(sandbox: SandboxInfo) -> Kubectl:
    ctl = Kubectl(sandbox, NAMESPACE)
    ctl.prepare_namespace(SECRET)
    return ctl


@pytest.fixture(scope="module")
def dp_operator(
    sandbox: SandboxInfo, dp_kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("dp-operator") / "operator.log"
    with operator_running(
        sandbox,
        NAMESPACE,
        log,
        {
            "LLMBATCH_PROGRESS_SECONDS": "1",
            "LLMBATCH_LEASE_SECONDS": str(LEASE_SECONDS),
            "LLMBATCH_LEASE_RENEW_SECONDS": "2",
            "LLMBATCH_CHUNK_LINES": str(CHUNK_LINES),
        },
    ) as proc:
        yield proc


def batchjob(
    sandbox: SandboxInfo, model_uri: str, served: str, name: str, **spec: Any
) -> dict[str, Any]:
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    base = f"s3://{sandbox.bucket}/e2e-dataplane/{run}"
    return {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": run, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": served, "source": model_uri, "engineArgs": {"max_model_len": 256}},
            "input": f"{base}/input.jsonl",
            "output": f"{base}/out/",
            "parallelism": 3,
            # Every shard runs at once (the sandbox's node has two GPU slots; vLLM runs on the
            # CPU either way).
            "resources": {"gpu": 0},
            "storage": {"secretRef": {"name": SECRET}},
            **spec,
        },
    }


def upload(store: ObjectStore, body: dict[str, Any], lines: int, served: str, **kw: Any) -> None:
    data = requests_jsonl(lines, served, prefix=body["metadata"]["name"], **kw)
    store.write_bytes(body["spec"]["input"], data)


def test_a_batch_above_50000_lines_shows_its_total_while_running_and_runs_exactly_once(
    dp_operator: OperatorProcess,
    dp_kubectl: Kubectl,
    store: ObjectStore,
    sandbox: SandboxInfo,
    model_uri: str,
    tiny_served_name: str,
) -> None:
    body = batchjob(sandbox, model_uri, tiny_served_name, "large")
    upload(store, body, LARGE, tiny_served_name, max_tokens=1)
    name = body["metadata"]["name"]
    started = time.monotonic()
    assert dp_kubectl.apply(body).returncode == 0

    def running_with_total() -> dict[str, Any] | None:
        status = dp_kubectl.status(name)
        if status.get("phase") in ("Finalizing", "Succeeded"):
            raise AssertionError(f"never seen Running with its total: {status}")
        total = (status.get("requestCounts") or {}).get("total")
        return status if status.get("phase") == "Running" and total == LARGE else None

    running = wait_for("Running with requestCounts.total", running_with_total, timeout=300)
    seen_at = time.monotonic() - started
    # Before any shard finished: the total comes from the plan, not from the shards' ends.
    assert not [s for s in running.get("shards") or [] if s["state"] == "Succeeded"], running
    assert running["progress"].endswith(f"/{LARGE}")
    planned = {c["type"]: c for c in running["conditions"]}["Planned"]
    assert planned["status"] == "True" and f"{LARGE} request(s)" in planned["message"]
    assert running["plan"]["chunks"] >= LARGE // CHUNK_LINES
    status = dp_kubectl.wait_phase(name, "Succeeded", timeout=900)
    took = time.monotonic() - started
    out, errors = assert_exactly_once(store, body, status, LARGE)
    assert len(out) == LARGE and errors == []
    jobs = {j["metadata"]["name"] for j in dp_kubectl.items("jobs", f"llmbatch.io/batchjob={name}")}
    assert jobs == {f"{name}-plan", f"{name}-run", f"{name}-finalize"}
    print(
        f"{LARGE} lines, 3 shards: total shown after {seen_at:.0f} s, Succeeded after {took:.0f} s"
    )


def test_a_missing_input_fails_the_plan_with_its_uri(
    dp_operator: OperatorProcess,
    dp_kubectl: Kubectl,
    sandbox: SandboxInfo,
    model_uri: str,
    tiny_served_name: str,
    tmp_path: Path,
) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("a file:// input names a path of the sandbox's machine, where pods run")
    # Validation heads s3:// inputs itself; a file:// input is only read by the plan pod.
    missing = f"file://{tmp_path}/absent.jsonl"
    body = batchjob(sandbox, model_uri, tiny_served_name, "noplan", input=missing)
    name = body["metadata"]["name"]
    assert dp_kubectl.apply(body).returncode == 0
    status = dp_kubectl.wait_phase(name, "Failed", timeout=240)
    assert status["reason"] == "PlanFailed"
    assert missing in status["message"]
    assert f"kubectl logs job/{name}-plan" in status["message"]
    planned = {c["type"]: c for c in status["conditions"]}["Planned"]
    assert planned["status"] == "False"
    # No shard was started for it.
    jobs = {j["metadata"]["name"] for j in dp_kubectl.items("jobs", f"llmbatch.io/batchjob={name}")}
    assert jobs == {f"{name}-plan"}
    events = dp_kubectl.run("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "PlanStarted" in events.stdout and "PlanFailed" in events.stdout


def progress_of(store: ObjectStore, output: str) -> dict[int, int]:
    """Lines each shard reports done (its progress document)."""
    done = {}
    for info in store.list(OutputLayout(output).progress_dir):
        doc = json.loads(store.read_bytes(info.uri))
        done[int(doc["shard"])] = int(doc.get("completed") or 0) + int(doc.get("failed") or 0)
    return done


def chunk_writers(store: ObjectStore, output: str) -> dict[int, collections.Counter[str]]:
    """Per chunk, the lines each writer (one shard attempt) committed, from the parts."""
    layout = OutputLayout(output)
    found: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for info in store.list(layout.parts_dir + "chunk-"):
        chunk_dir, part = info.uri[len(layout.parts_dir) :].split("/", 1)
        writer = part.rsplit(".", 1)[0].split("-", 2)[-1]
        lines = sum(1 for line in store.read_bytes(info.uri).splitlines() if line.strip())
        found[int(chunk_dir.split("-", 1)[1])][writer] += lines
    return found


def shards_mid_chunk(
    kubectl: Kubectl, store: ObjectStore, name: str, output: str, count: int
) -> list[dict[str, Any]] | None:
    """``count`` running shard pods that are mid-chunk (answered requests, and not a whole
    number of chunks), or None while fewer are (bench_kill.py uses it too)."""
    done = progress_of(store, output)
    pods = [
        p
        for p in kubectl.items("pods", f"job-name={name}-run")
        if p["status"].get("phase") == "Running"
    ]
    working = [p for p in pods if done.get(pod_index(p) or 0, 0) % CHUNK_LINES > 50]
    return working[:count] if len(working) >= count else None


def test_two_shards_killed_mid_chunk_lose_nothing_and_recompute_at_most_their_chunks(
    dp_operator: OperatorProcess,
    dp_kubectl: Kubectl,
    store: ObjectStore,
    sandbox: SandboxInfo,
    model_uri: str,
    tiny_served_name: str,
) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("SIGKILL of a pod's process is the sandbox kubelet's annotation")
    requests = 12_000
    body = batchjob(sandbox, model_uri, tiny_served_name, "kill2", maxRetries=3)
    upload(store, body, requests, tiny_served_name, max_tokens=16)
    name, output = body["metadata"]["name"], body["spec"]["output"]
    assert dp_kubectl.apply(body).returncode == 0
    victims: list[str] = []
    two = wait_for(
        "two shards mid-chunk",
        lambda: shards_mid_chunk(dp_kubectl, store, name, output, 2),
        timeout=300,
    )
    for pod in two:
        victim = pod["metadata"]["name"]
        dp_kubectl.run("annotate", "pod", victim, "sandbox.llmbatch.io/kill=SIGKILL")
        victims.append(victim)
    status = dp_kubectl.wait_phase(name, "Succeeded", timeout=600)
    _out, errors = assert_exactly_once(store, body, status, requests)
    assert errors == []
    # Recomputed lines: answered by a killed attempt, never committed, answered again. A
    # shard's progress counters go on across its attempts, so the shards' final counters
    # minus the lines in the parts (each line once: nothing was written twice) count them, up
    # to what a killed attempt answered after its last progress write (one second).
    writers = chunk_writers(store, output)
    committed = sum(sum(by.values()) for by in writers.values())
    assert committed == requests
    recomputed = sum(progress_of(store, output).values()) - committed
    assert 0 <= recomputed <= len(victims) * CHUNK_LINES, recomputed
    leases = [
        json.loads(store.read_bytes(info.uri))
        for info in store.list(OutputLayout(output).leases_dir)
        if info.uri.endswith(".json")
    ]
    taken_over = sorted(int(lease["chunk"]) for lease in leases if lease.get("takeovers"))
    assert all(lease["state"] == "done" for lease in leases)
    print(f"kills {victims}: chunks taken over {taken_over}, {recomputed} lines recomputed")
