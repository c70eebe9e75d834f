"""Chaos on the sandbox with the real operator, Job controller, runner and vLLM on the tiny model:
runner pods SIGKILLed repeatedly, the operator killed and restarted during concurrent
BatchJobs, S3 faults behind a proxy, API server faults, and deadline/cancel/suspend races.

After every run: each input line exactly once in output.jsonl or errors.jsonl, counts in the
status and manifest equal to the files, the manifest's sha256 those of the files, one Job per
role never recreated, phases only moving forward and a terminal phase that stays. The short
form runs in ``make test``; ``LLMBATCH_CHAOS=full`` (``make test-chaos``) runs the full sizes.

Sandbox only: the kills use the sandbox kubelet's kill annotation and the API faults its
``/sandbox/faults`` endpoint.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.storage import ObjectStore
from tests.chaos.harness import (
    NAMESPACE,
    SECRET,
    TERMINAL,
    Batch,
    Recorder,
    backwards_moves,
    check_ledger,
    make_batch,
    read_parts,
    uncommitted_answers,
)
from tests.chaos.profiles import FULL, scaled
from tests.e2e.cluster import Kubectl, OperatorProcess, wait_for
from tests.fixtures.sandbox import SandboxInfo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.chaos,
    pytest.mark.timeout(1200 if FULL else 600),
]

# Small chunks and a bounded engine window, so kills land between commits and what a kill may
# cost is known: the lines of the chunk being finished plus those in the engine.
CHUNK_LINES = 100
MAX_IN_FLIGHT = 32
SEED = 20261122


@pytest.fixture(scope="module")
def cluster(sandbox: SandboxInfo) -> SandboxInfo:
    if not sandbox.is_sandbox:
        pytest.skip("chaos injection needs the sandbox (kill annotations, /sandbox/faults)")
    return sandbox


@pytest.fixture(scope="module")
def kubectl(cluster: SandboxInfo) -> Kubectl:
    ctl = Kubectl(cluster, NAMESPACE)
    ctl.prepare_namespace(SECRET)
    return ctl


@pytest.fixture(scope="module")
def store(cluster: SandboxInfo) -> ObjectStore:
    return cluster.store()


@pytest.fixture(scope="module")
def operator(
    cluster: SandboxInfo, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # Frequent progress, so kills are measured; short leases, so a killed shard's chunk is
    # taken over within seconds, not the default minute.
    runner_env = {
        "LLMBATCH_CHUNK_LINES": str(CHUNK_LINES),
        "LLMBATCH_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "LLMBATCH_LEASE_SECONDS": "10",
        "LLMBATCH_LEASE_RENEW_SECONDS": "2",
        "LLMBATCH_PROGRESS_SECONDS": "0.5",
        "LLMBATCH_GRACE_SECONDS": "6",
        "LLMBATCH_RUNNER_METRICS_PORT": "0",
    }
    proc = OperatorProcess(
        cluster,
        NAMESPACE,
        tmp_path_factory.mktemp("chaos-operator") / "operator.log",
        extra_env={f"LLMBATCH_RUNNER_ENV_{k}": v for k, v in runner_env.items()},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def recorder(cluster: SandboxInfo, kubectl: Kubectl) -> Iterator[Recorder]:
    rec = Recorder(cluster)
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def apply(kubectl: Kubectl, batch: Batch) -> None:
    result = kubectl.apply(batch.body)
    assert result.returncode == 0, result.stderr


def wait_terminal(kubectl: Kubectl, batch: Batch, timeout: float = 420) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = kubectl.status(batch.name)
        return status if status.get("phase") in TERMINAL else None

    return wait_for(f"{batch.name} to finish", check, timeout, every=1.0)


def read_json(store: ObjectStore, uri: str) -> dict[str, Any] | None:
    from llmbatch.storage import ObjectNotFound

    try:
        data: dict[str, Any] = json.loads(store.read_bytes(uri))
    except ObjectNotFound:
        return None
    return data


def running_pod(kubectl: Kubectl, batch: Batch, exclude: set[str]) -> str | None:
    for pod in kubectl.items("pods", f"job-name={batch.name}-run"):
        name = str(pod["metadata"]["name"])
        if pod["status"].get("phase") == "Running" and name not in exclude:
            return name
    return None


def pod_gone(kubectl: Kubectl, pod: str) -> bool:
    body = kubectl.get("pod", pod)
    return body is None or (body.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def kill_pod(kubectl: Kubectl, pod: str, sig: str = "SIGKILL") -> None:
    kubectl.run("annotate", "--overwrite", "pod", pod, f"sandbox.llmbatch.io/kill={sig}")


# --- 1. runner pods SIGKILLed repeatedly ------------------------------------------------------


def test_runner_sigkilled_repeatedly_loses_and_duplicates_nothing(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    kills = scaled(2, 5)
    batch = make_batch(
        operator.sandbox,
        store,
        tiny_model,
        "kills",
        requests=scaled(900, 3000),
        max_tokens=16,
        maxRetries=kills + 3,
    )
    apply(kubectl, batch)
    progress = OutputLayout(batch.body["spec"]["output"]).progress(0)
    killed: set[str] = set()
    recomputed: list[int] = []
    committed_before = lost_before = 0
    for _ in range(kills):
        # A fresh attempt that has committed a chunk of its own and holds answers it has not
        # committed yet: the kill costs something, and the bound is put to the test.
        def ready(committed: int = committed_before, lost: int = lost_before) -> str | None:
            pod = running_pod(kubectl, batch, killed)
            record = read_json(store, progress)
            if pod is None or record is None or record.get("state") != "running":
                return None
            done = read_parts(store, batch.output).committed
            busy = uncommitted_answers(store, batch.output) > lost
            return pod if committed < done < batch.requests and busy else None

        pod = wait_for("a busy shard to kill", ready, timeout=300, every=0.3)
        kill_pod(kubectl, pod)
        killed.add(pod)
        # The killed process commits nothing more and its successor starts after a back-off
        # and a model load: parts and progress now hold the killed attempt's last word.
        wait_for(
            "the killed shard to exit",
            lambda victim=pod: pod_gone(kubectl, victim),
            timeout=60,
            every=0.1,
        )
        committed_before = read_parts(store, batch.output).committed
        lost = uncommitted_answers(store, batch.output)
        recomputed.append(max(0, lost - lost_before))
        lost_before = lost
    status = wait_terminal(kubectl, batch)
    assert status["phase"] == "Succeeded", status
    ledger = check_ledger(store, batch, status)
    assert ledger.errors == [], ledger.error_codes()
    assert len(killed) == kills
    parts = read_parts(store, batch.output)
    # One shard at a time: a resumed chunk skips its committed lines, none is committed twice.
    assert parts.recomputed == 0, parts.recomputed
    # Work lost per kill: at most the chunk being finished plus the engine's window (its
    # commit is a local PUT of milliseconds, so the next chunk has no time to fill up).
    bound = CHUNK_LINES + MAX_IN_FLIGHT
    assert all(r <= bound for r in recomputed), (recomputed, bound)
    total = uncommitted_answers(store, batch.output)
    assert total <= kills * bound, (total, recomputed)
    print(f"\nkills={kills} recomputed per kill (observed)={recomputed} in all={total}")


# --- 2. the operator killed and restarted during concurrent BatchJobs --------------------------


@contextlib.contextmanager
def operator_chaos(operator: OperatorProcess, rng: random.Random) -> Iterator[list[float]]:
    """SIGKILL and restart the operator at random moments until the block ends."""
    stop = threading.Event()
    kills: list[float] = []

    def restart() -> None:
        # A loaded machine can take more than the start timeout: kill and try again.
        for _ in range(3):
            try:
                operator.start()
                return
            except AssertionError:
                operator.stop(signal.SIGKILL)
        operator.start()

    def loop() -> None:
        while not stop.wait(rng.uniform(2.0, 9.0)):
            operator.stop(signal.SIGKILL)
            kills.append(time.monotonic())
            restart()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield kills
    finally:
        stop.set()
        thread.join(timeout=120)
        if operator.process is None or operator.process.poll() is not None:
            restart()


def test_operator_killed_during_concurrent_batchjobs(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    rng = random.Random(SEED)
    count = scaled(4, 20)
    model = tiny_model
    batches = [
        make_batch(
            operator.sandbox, store, model, f"op{i}", requests=rng.randint(5, 25), parallelism=1
        )
        for i in range(count)
    ]
    with operator_chaos(operator, rng) as kills:
        for batch in batches:
            apply(kubectl, batch)
        statuses = {b.name: wait_terminal(kubectl, b, timeout=scaled(420, 900)) for b in batches}
    assert kills, "the operator was never killed: the run proves nothing"
    for batch in batches:
        status = statuses[batch.name]
        assert status["phase"] == "Succeeded", (batch.name, status.get("message"))
        check_ledger(store, batch, status)
        jobs = kubectl.items("jobs", f"llmbatch.io/batchjob={batch.name}")
        assert sorted(j["metadata"]["name"] for j in jobs) == [
            f"{batch.name}-finalize",
            f"{batch.name}-plan",
            f"{batch.name}-run",
        ]
        for job in jobs:
            uids = recorder.job_uids[job["metadata"]["name"]]
            assert uids == {job["metadata"]["uid"]}, f"{job['metadata']['name']} was recreated"
        assert backwards_moves(recorder.history(batch.name)) == [], recorder.history(batch.name)
    print(f"\noperator kills={len(kills)} batchjobs={count}")


# --- 3. S3 faults ------------------------------------------------------------------------------


def test_s3_faults_retry_without_loss_or_corruption(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    from llmbatch_sandbox.s3faults import FaultConfig, running_proxy

    config = FaultConfig.uniform(scaled(10, 15) / 100, seed=SEED)
    with running_proxy(operator.sandbox.s3_endpoint, config) as proxy:
        batch = make_batch(
            operator.sandbox,
            store,
            tiny_model,
            "s3faults",
            requests=scaled(150, 600),
            parallelism=2,
            storage={"secretRef": {"name": "llmbatch-s3"}, "endpoint": proxy.url},
        )
        apply(kubectl, batch)
        status = wait_terminal(kubectl, batch)
        injected = dict(proxy.counts)
        total = proxy.proxy.injected
    assert status["phase"] == "Succeeded", status
    ledger = check_ledger(store, batch, status)
    assert ledger.errors == []
    assert total > 0, injected
    print(f"\nS3 faults injected: {injected}")


# --- 4. API server faults ----------------------------------------------------------------------


def admin(cluster: SandboxInfo, method: str, path: str, body: Any = None) -> int:
    request = urllib.request.Request(
        cluster.api_url.rstrip("/") + "/sandbox/" + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_operator_recovers_from_api_server_faults(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
    cluster: SandboxInfo,
) -> None:
    batch = make_batch(
        cluster, store, tiny_model, "apifaults", requests=scaled(40, 200), parallelism=2
    )
    # Each failed pass backs the operator off exponentially (capped), so the short form keeps
    # the fault count low; the full form repeats each fault.
    times = scaled(1, 3)
    faults = [
        {"code": 409, "verb": "patch", "resource": "batchjobs", "times": times + 1},
        {"code": 429, "verb": "create", "resource": "jobs", "times": times, "retry_after": 1},
        {"code": 500, "verb": "get", "resource": "jobs", "times": times},
        {"code": 500, "verb": "list", "resource": "pods", "times": times},
        {"code": 410, "verb": "watch", "resource": "batchjobs", "times": times},
        {"code": 410, "verb": "watch", "resource": "jobs", "times": times},
    ]
    for fault in faults:
        fault["namespace"] = NAMESPACE
    for fault in faults:
        assert admin(cluster, "POST", "faults", fault) == 201
    try:
        apply(kubectl, batch)
        rounds = 0
        deadline = time.monotonic() + scaled(420, 900)
        while kubectl.status(batch.name).get("phase") not in TERMINAL:
            assert time.monotonic() < deadline, f"{batch.name} did not finish"
            # Dropped watches and compacted history (the next watch from an old version: 410).
            if rounds < scaled(4, 10):
                admin(cluster, "POST", "close-watches")
                admin(cluster, "POST", "expire-history")
                rounds += 1
            time.sleep(2.0)
    finally:
        admin(cluster, "DELETE", "faults")
    status = kubectl.status(batch.name)
    assert status["phase"] == "Succeeded", status
    check_ledger(store, batch, status)
    assert backwards_moves(recorder.history(batch.name)) == []
    assert "injected fault" in operator.log_path.read_text(errors="replace")


# --- 5. deadline, cancel and suspend races ------------------------------------------------------


def _deadline(status: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(status["deadline"]).replace("Z", "+00:00"))


def test_cancel_at_the_deadline_ends_once_without_loss(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    batch = make_batch(
        operator.sandbox,
        store,
        tiny_model,
        "cancel-deadline",
        # Enough work to outlast the window on a quiet machine too (4,000 x 32 tokens took
        # 17 s in CI, finishing before the deadline it was meant to race).
        requests=12000,
        max_tokens=64,
        completionWindow="30s",
    )
    apply(kubectl, batch)
    status = wait_for(
        "a deadline", lambda: (s := kubectl.status(batch.name)).get("deadline") and s, timeout=60
    )
    deadline = _deadline(status)
    # The cancel arrives at the deadline itself (a condition on the clock, not a guess).
    wait_for(
        "the deadline",
        lambda: datetime.now(UTC) >= deadline,
        timeout=120,
        every=0.05,
    )
    kubectl.patch_spec(batch.name, {"cancel": True})
    status = wait_terminal(kubectl, batch)
    assert status["phase"] in ("Expired", "Cancelled"), status
    ledger = check_ledger(store, batch, status)
    assert set(ledger.error_codes()) <= {"batch_expired", "batch_cancelled"}, ledger.error_codes()
    _assert_one_terminal(recorder, kubectl, batch)


def test_cancel_during_finalize_is_ignored_and_loses_nothing(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    batch = make_batch(operator.sandbox, store, tiny_model, "cancel-finalize", requests=30)
    apply(kubectl, batch)
    wait_for(
        "Finalizing",
        lambda: (
            "Finalizing" in recorder.history(batch.name)
            or kubectl.status(batch.name).get("phase") in TERMINAL
        ),
        timeout=300,
        every=0.05,
    )
    kubectl.patch_spec(batch.name, {"cancel": True})
    status = wait_terminal(kubectl, batch)
    history = recorder.history(batch.name)
    assert "Finalizing" in history, f"finalize was not observed: {history}"
    # Finalizing moves only to Succeeded, Expired or Failed: the merge is not interrupted.
    assert status["phase"] == "Succeeded", status
    ledger = check_ledger(store, batch, status)
    assert ledger.errors == []
    _assert_one_terminal(recorder, kubectl, batch)


def test_suspend_during_retry_then_resume(
    operator: OperatorProcess,
    tiny_model: Path,
    kubectl: Kubectl,
    store: ObjectStore,
    recorder: Recorder,
) -> None:
    batch = make_batch(
        operator.sandbox,
        store,
        tiny_model,
        "suspend-retry",
        requests=scaled(1200, 3000),
        max_tokens=16,
        maxRetries=4,
    )
    apply(kubectl, batch)
    progress = OutputLayout(batch.body["spec"]["output"]).progress(0)
    pod = wait_for(
        "a shard with finished requests",
        lambda: (
            running_pod(kubectl, batch, set())
            if int((read_json(store, progress) or {}).get("completed") or 0) > 0
            else None
        ),
        timeout=300,
        every=0.2,
    )
    kill_pod(kubectl, pod)
    # The Job is now retrying the shard: suspend it right then.
    kubectl.patch_spec(batch.name, {"suspend": True})
    wait_for(
        "Suspended", lambda: kubectl.status(batch.name).get("phase") == "Suspended", timeout=120
    )
    wait_for(
        "no shard pod running",
        lambda: running_pod(kubectl, batch, set()) is None,
        timeout=120,
    )
    kubectl.patch_spec(batch.name, {"suspend": False})
    status = wait_terminal(kubectl, batch)
    assert status["phase"] == "Succeeded", status
    ledger = check_ledger(store, batch, status)
    assert ledger.errors == [], ledger.error_codes()
    _assert_one_terminal(recorder, kubectl, batch)


def _assert_one_terminal(recorder: Recorder, kubectl: Kubectl, batch: Batch) -> None:
    final = kubectl.status(batch.name)["phase"]
    # Watch events after the terminal write arrive within a second or two: look again then.
    wait_for(
        "the recorder to see the terminal phase",
        lambda: recorder.history(batch.name)[-1:] == [final],
        timeout=30,
    )
    history = recorder.history(batch.name)
    terminal = [p for p in history if p in TERMINAL]
    assert terminal == [final], f"{batch.name}: {history}"
    assert backwards_moves(history) == [], history


# --- after everything: no backwards move anywhere, no credential anywhere ----------------------


def test_zz_no_phase_moved_backwards_and_no_credentials_leaked(
    operator: OperatorProcess, kubectl: Kubectl, recorder: Recorder, cluster: SandboxInfo
) -> None:
    histories = {name: recorder.history(name) for name in list(recorder.phases)}
    assert histories, "nothing was recorded"
    for name, history in histories.items():
        assert backwards_moves(history) == [], (name, history)
        terminal = [p for p in history if p in TERMINAL]
        assert len(terminal) <= 1, (name, history)
    secrets = [cluster.secret_access_key]
    places = {
        "operator log": operator.log_path.read_text(errors="replace"),
        "events": kubectl.run("get", "events", "-o", "json").stdout,
        "batchjobs": kubectl.run("get", "batchjobs", "-o", "json").stdout,
        "jobs": kubectl.run("get", "jobs", "-o", "json").stdout,
    }
    for pod in kubectl.items("pods")[:40]:
        name = pod["metadata"]["name"]
        places[f"log of {name}"] = kubectl.run("logs", name, check=False).stdout
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"the S3 secret key appears in {where}"
