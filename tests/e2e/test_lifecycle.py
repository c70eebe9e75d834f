"""End to end on the sandbox (or LLMBATCH_E2E_KUBECONFIG): BatchJobs applied with kubectl run
through the real operator, Job controller, runner and vLLM on the tiny model."""

from __future__ import annotations

import collections
import json
import signal
from typing import Any

import pytest

from llmbatch.storage import ObjectStore
from tests.e2e.cluster import Kubectl, OperatorProcess, jsonl, wait_for
from tests.e2e.conftest import BatchJobFactory

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(400)]


def read_results(
    store: ObjectStore, output: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    prefix = output.rstrip("/")
    out = list(jsonl(store.read_bytes(f"{prefix}/output.jsonl")))
    errors = list(jsonl(store.read_bytes(f"{prefix}/errors.jsonl")))
    manifest = json.loads(store.read_bytes(f"{prefix}/manifest.json"))
    return out, errors, manifest


def assert_exactly_once(
    store: ObjectStore, body: dict[str, Any], status: dict[str, Any], requests: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every input line in exactly one of output.jsonl and errors.jsonl, and status counts
    equal to the files."""
    out, errors, manifest = read_results(store, body["spec"]["output"])
    ids = collections.Counter(line["custom_id"] for line in out + errors)
    assert len(ids) == requests, f"{requests - len(ids)} line(s) missing"
    assert max(ids.values()) == 1, f"duplicates: {[k for k, v in ids.items() if v > 1]}"
    counts = status["requestCounts"]
    assert counts == {"total": requests, "completed": len(out), "failed": len(errors)}
    assert manifest["requestCounts"] == counts
    assert status["usage"]["completionTokens"] == sum(
        line["response"]["body"]["usage"]["completion_tokens"] for line in out
    )
    return out, errors


def progress_done(store: ObjectStore, body: dict[str, Any]) -> int:
    total = 0
    for info in store.list(body["spec"]["output"].rstrip("/") + "/progress/"):
        total += int(json.loads(store.read_bytes(info.uri)).get("completed") or 0)
    return total


def test_example_runs_to_succeeded_and_status_matches_files(
    operator: OperatorProcess, kubectl: Kubectl, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    body = new_batchjob("ok", requests=12)
    assert kubectl.apply(body).returncode == 0
    name = body["metadata"]["name"]
    status = kubectl.wait_phase(name, "Succeeded")
    out, errors = assert_exactly_once(store, body, status, 12)
    assert len(out) == 12 and errors == []
    assert all(line["response"]["status_code"] == 200 for line in out)
    assert status["progress"] == "12/12"
    assert status["outputFile"].endswith("/out/output.jsonl")
    timestamps = status["timestamps"]
    for key in ("createdAt", "inProgressAt", "finalizingAt", "completedAt"):
        assert key in timestamps
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["Validated"]["status"] == "True"
    jobs = kubectl.items("jobs", f"llmbatch.io/batchjob={name}")
    run = next(j for j in jobs if j["metadata"]["name"] == f"{name}-run")
    assert run["spec"]["completions"] == 2 and run["spec"]["completionMode"] == "Indexed"
    env = run["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("value" not in e for e in env if e["name"].startswith("AWS_SECRET"))
    table = kubectl.run("get", "batchjobs", name).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "DEADLINE", "AGE"]
    assert "Succeeded" in table and "12/12" in table
    wide = kubectl.run("get", "batchjobs", name, "-o", "wide").stdout.splitlines()[0].split()
    assert {"MODEL", "THROUGHPUT", "ETA"} <= set(wide)
    events = kubectl.run("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert "ShardsComplete" in events and "Finalized" in events
    metrics = operator.metrics()
    assert 'llmbatch_phase_transitions_total{from="Finalizing",to="Succeeded"}' in metrics
    assert "llmbatch_reconcile_duration_seconds_count" in metrics


def test_invalid_spec_is_rejected_by_the_api(
    kubectl: Kubectl, new_batchjob: BatchJobFactory
) -> None:
    body = new_batchjob("bad", upload=False, parallelism=0)
    result = kubectl.apply(body)
    assert result.returncode != 0
    # kubectl's wording of a 422 Invalid answer, naming the field.
    assert "is invalid" in result.stderr and "parallelism" in result.stderr
    body = new_batchjob("bad", upload=False, input="ftp://nowhere/x.jsonl")
    assert "spec.input" in kubectl.apply(body).stderr


def test_missing_input_and_missing_secret_fail_validation(
    operator: OperatorProcess, kubectl: Kubectl, new_batchjob: BatchJobFactory
) -> None:
    missing_input = new_batchjob("noinput", upload=False)
    missing_secret = new_batchjob("nosecret", storage={"secretRef": {"name": "not-there"}})
    for body in (missing_input, missing_secret):
        assert kubectl.apply(body).returncode == 0
    status = kubectl.wait_phase(missing_input["metadata"]["name"], "Failed", timeout=60)
    assert status["reason"] == "ValidationFailed"
    assert "does not exist" in status["message"] and "upload" in status["message"]
    status = kubectl.wait_phase(missing_secret["metadata"]["name"], "Failed", timeout=60)
    assert status["reason"] == "ValidationFailed"
    assert "Secret e2e-operator/not-there does not exist" in status["message"]
    # Nothing was started for them.
    assert kubectl.items("jobs", f"llmbatch.io/batchjob={missing_input['metadata']['name']}") == []


def test_suspend_then_resume(
    kubectl: Kubectl, operator: OperatorProcess, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    body = new_batchjob("susp", requests=8, suspend=True)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    kubectl.wait_phase(name, "Suspended", timeout=60)
    job = wait_for("the suspended Job", lambda: kubectl.get("job", f"{name}-run"), timeout=30)
    assert job["spec"]["suspend"] is True
    assert kubectl.items("pods", f"job-name={name}-run") == []
    kubectl.patch_spec(name, {"suspend": False})
    status = kubectl.wait_phase(name, "Succeeded")
    assert_exactly_once(store, body, status, 8)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "False"


def test_cancel_mid_run_keeps_partial_results_and_loses_no_line(
    operator: OperatorProcess, kubectl: Kubectl, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    # Big enough that it cannot finish between the first progress object and the cancel.
    requests = 20000
    body = new_batchjob("cancel", requests=requests, parallelism=1, max_tokens=16)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    wait_for("a first finished request", lambda: progress_done(store, body) > 0, timeout=180)
    kubectl.patch_spec(name, {"cancel": True})
    status = kubectl.wait_phase(name, "Cancelled", timeout=180)
    out, errors = assert_exactly_once(store, body, status, requests)
    codes = collections.Counter(line["error"]["code"] for line in errors)
    assert codes["batch_cancelled"] > 0
    assert len(out) > 0
    assert "cancellingAt" in status["timestamps"] and "cancelledAt" in status["timestamps"]


def test_deadline_expires_with_batch_expired_errors(
    operator: OperatorProcess, kubectl: Kubectl, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    # The tiny model answers a few hundred requests a second: this cannot finish in time.
    requests = 20000
    body = new_batchjob(
        "expire", requests=requests, parallelism=1, max_tokens=48, completionWindow="20s"
    )
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    status = kubectl.wait_phase(name, "Expired", timeout=180)
    out, errors = assert_exactly_once(store, body, status, requests)
    codes = collections.Counter(line["error"]["code"] for line in errors)
    assert codes["batch_expired"] > 0, (len(out), codes, status)
    # Shards stopped by the deadline, not by the operator: nothing reads "cancelled".
    assert codes["batch_cancelled"] == 0, codes
    assert status["reason"] == "DeadlineExceeded"
    assert "expiredAt" in status["timestamps"]


def test_killed_runner_pod_is_retried_with_exactly_once_output(
    operator: OperatorProcess,
    kubectl: Kubectl,
    store: ObjectStore,
    new_batchjob: BatchJobFactory,
    sandbox: Any,
) -> None:
    requests = 3000
    body = new_batchjob("kill", requests=requests, parallelism=1, max_tokens=16)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    wait_for("a first finished request", lambda: progress_done(store, body) > 0, timeout=180)
    pods = [
        p
        for p in kubectl.items("pods", f"job-name={name}-run")
        if p["status"].get("phase") == "Running"
    ]
    assert pods, "no running shard pod to kill"
    victim = pods[0]["metadata"]["name"]
    if sandbox.is_sandbox:
        kubectl.run("annotate", "pod", victim, "sandbox.llmbatch.io/kill=SIGKILL")
    else:
        kubectl.run("delete", "pod", victim, "--grace-period=0", "--force")
    status = kubectl.wait_phase(name, "Succeeded", timeout=300)
    _out, errors = assert_exactly_once(store, body, status, requests)
    assert errors == []
    shard = status["shards"][0]
    assert shard["restarts"] >= 1 or sandbox.is_sandbox is False


def test_operator_restart_mid_run_continues_without_duplicates(
    operator: OperatorProcess, kubectl: Kubectl, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    requests = 200
    body = new_batchjob("restart", requests=requests)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    kubectl.wait_phase(name, ("Running",), timeout=120)
    operator.stop(signal.SIGKILL)
    operator.start()
    status = kubectl.wait_phase(name, "Succeeded", timeout=300)
    assert_exactly_once(store, body, status, requests)
    jobs = kubectl.items("jobs", f"llmbatch.io/batchjob={name}")
    assert sorted(j["metadata"]["name"] for j in jobs) == [
        f"{name}-finalize",
        f"{name}-plan",
        f"{name}-run",
    ]


def test_deleting_a_running_batchjob_removes_jobs_and_pods_but_not_results(
    operator: OperatorProcess, kubectl: Kubectl, store: ObjectStore, new_batchjob: BatchJobFactory
) -> None:
    requests = 20000
    body = new_batchjob("delete", requests=requests, parallelism=1, max_tokens=16)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    wait_for("a first finished request", lambda: progress_done(store, body) > 0, timeout=180)
    prefix = body["spec"]["output"].rstrip("/")
    written = {info.uri for info in store.list(prefix + "/")}
    assert written
    kubectl.run("delete", "batchjob", name, "--wait=false")
    wait_for("the BatchJob to go", lambda: kubectl.get("batchjob", name) is None, timeout=60)
    wait_for(
        "its Jobs to go",
        lambda: kubectl.items("jobs", f"llmbatch.io/batchjob={name}") == [],
        timeout=60,
    )
    wait_for(
        "its pods to go", lambda: kubectl.items("pods", f"job-name={name}-run") == [], timeout=90
    )
    remaining = {info.uri for info in store.list(prefix + "/")}
    assert store.exists(body["spec"]["input"])
    # Parts and checkpoints already written stay; nothing the batch wrote was deleted.
    assert {u for u in written if "/parts/" in u or "/checkpoints/" in u} <= remaining


def test_missing_model_is_a_permanent_error_without_retries(
    operator: OperatorProcess, kubectl: Kubectl, sandbox: Any, new_batchjob: BatchJobFactory
) -> None:
    body = new_batchjob("nomodel", requests=4, maxRetries=3)
    body["spec"]["model"]["source"] = f"s3://{sandbox.bucket}/e2e/models/not-there/"
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    status = kubectl.wait_phase(name, "Failed", timeout=180)
    assert status["reason"] == "PermanentError"
    pods = kubectl.items("pods", f"job-name={name}-run")
    # Exit 42 fails the index at once: no pod was retried although maxRetries is 3.
    assert len(pods) <= 2


def test_shard_failing_past_max_retries_fails_with_backoff_limit_exceeded(
    operator: OperatorProcess,
    kubectl: Kubectl,
    store: ObjectStore,
    new_batchjob: BatchJobFactory,
    sandbox: Any,
) -> None:
    body = new_batchjob("backoff", requests=3000, parallelism=1, maxRetries=0, max_tokens=16)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    pod = wait_for(
        "a running shard pod",
        lambda: next(
            (
                p
                for p in kubectl.items("pods", f"job-name={name}-run")
                if p["status"].get("phase") == "Running"
            ),
            None,
        ),
        timeout=120,
    )
    victim = pod["metadata"]["name"]
    if sandbox.is_sandbox:
        kubectl.run("annotate", "pod", victim, "sandbox.llmbatch.io/kill=SIGKILL")
    else:
        kubectl.run("delete", "pod", victim, "--grace-period=0", "--force")
    status = kubectl.wait_phase(name, "Failed", timeout=120)
    assert status["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 0" in status["message"] and "maxRetries=0" in status["message"]
    assert "failedAt" in status["timestamps"]


@pytest.mark.sandbox_only
def test_preempted_shard_is_rescheduled_without_spending_a_retry(
    operator: OperatorProcess,
    kubectl: Kubectl,
    store: ObjectStore,
    new_batchjob: BatchJobFactory,
    sandbox: Any,
) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("preemption is injected with a sandbox-only pod annotation")
    # Big enough that the preemption lands mid-run (else the test proves nothing).
    requests = 3000
    body = new_batchjob("preempt", requests=requests, parallelism=1, maxRetries=0, max_tokens=16)
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    wait_for("a first finished request", lambda: progress_done(store, body) > 0, timeout=180)
    pod = next(
        p
        for p in kubectl.items("pods", f"job-name={name}-run")
        if p["status"].get("phase") == "Running"
    )
    kubectl.run("annotate", "pod", pod["metadata"]["name"], "sandbox.llmbatch.io/preempt=true")
    status = kubectl.wait_phase(name, "Succeeded", timeout=300)
    _out, errors = assert_exactly_once(store, body, status, requests)
    assert errors == [], collections.Counter(line["error"]["code"] for line in errors)


@pytest.mark.sandbox_only
def test_no_free_gpu_keeps_it_queued_with_the_reason(
    operator: OperatorProcess, kubectl: Kubectl, new_batchjob: BatchJobFactory, sandbox: Any
) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("relies on the sandbox node's fixed number of GPU slots")
    body = new_batchjob("nogpu", requests=2, parallelism=1, resources={"gpu": 64})
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0

    def queued_with_reason() -> dict[str, Any] | None:
        status = kubectl.status(name)
        # Past planning (whose message names the input, here ".../nogpu-..."): the shards wait.
        pending = status.get("phase") == "Queued" and status.get("reason") == "PodsPending"
        ok = pending and "gpu" in str(status.get("message", "")).lower()
        return status if ok else None

    status = wait_for("Queued with a scheduling reason", queued_with_reason, timeout=60)
    assert status["reason"] == "PodsPending"
    kubectl.run("delete", "batchjob", name, "--wait=false")


def test_sla_at_risk_when_the_eta_passes_the_deadline(
    operator: OperatorProcess, kubectl: Kubectl, new_batchjob: BatchJobFactory
) -> None:
    # Far more work than fits in the window even at the tiny model's best pace here (about
    # 150 requests/s); the risk shows long before the deadline.
    body = new_batchjob("sla", requests=30000, parallelism=1, max_tokens=48, completionWindow="90s")
    name = body["metadata"]["name"]
    assert kubectl.apply(body).returncode == 0
    try:
        _expect_sla_at_risk(operator, kubectl, name)
    finally:
        # Never leave 6000 requests running for the tests that follow.
        kubectl.run("delete", "batchjob", name, "--wait=false", check=False)


def _expect_sla_at_risk(operator: OperatorProcess, kubectl: Kubectl, name: str) -> None:
    def at_risk() -> dict[str, Any] | None:
        status = kubectl.status(name)
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        risk = conditions.get("SLAAtRisk")
        return status if risk and risk["status"] == "True" else None

    wait_for(
        "shards to be well under way",
        lambda: int((kubectl.status(name).get("requestCounts") or {}).get("completed", 0)) >= 300,
        timeout=80,
    )
    status = wait_for("SLAAtRisk=True", at_risk, timeout=30, every=1.0)
    assert status["phase"] == "Running"
    assert status["eta"] > status["deadline"]
    assert status["throughput"] > 0
    events = kubectl.run("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert "SLAAtRisk" in events
    assert "llmbatch_sla_at_risk 1.0" in operator.metrics()
