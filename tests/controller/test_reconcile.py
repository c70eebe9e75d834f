"""The reconcile pass against an in-memory API and a real (moto) S3: the order of writes,
idempotence across passes and restarts, validation failures, and credentials kept out."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import kopf
import pytest

from llmbatch.api.documents import Counts, Manifest
from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import PlanSummary
from llmbatch.api.timefmt import rfc3339
from llmbatch.controller import handle_reconcile
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.handle_reconcile import BatchJobMemory, reconcile_once
from llmbatch.controller.runtime import Runtime
from llmbatch.storage import get_store
from tests.controller.factories import PLAN, batchjob, finalize_job, job, plan_job, plan_pod
from tests.controller.fakeapi import FakeApi
from tests.fixtures.s3 import S3Server

SECRET_VALUE = "super-secret-value-123"


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    recorded: list[tuple[str, str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str = "") -> None:
        recorded.append((type, reason, message))

    monkeypatch.setattr(kopf, "event", event)
    return recorded


@pytest.fixture
def world(
    s3_server: S3Server, s3_bucket: str, events: list[tuple[str, str, str]]
) -> tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]]:
    api = FakeApi()
    api.secrets["llmbatch-s3"] = {
        "data": {
            "AWS_ACCESS_KEY_ID": base64.b64encode(s3_server.access_key_id.encode()).decode(),
            "AWS_SECRET_ACCESS_KEY": base64.b64encode(
                s3_server.secret_access_key.encode()
            ).decode(),
        }
    }
    config = OperatorConfig(default_s3_endpoint=s3_server.endpoint_url, runner_image="r:1")
    runtime = Runtime(api=api, config=config)  # type: ignore[arg-type]
    input_uri = f"s3://{s3_bucket}/in.jsonl"
    store = get_store(input_uri, s3_server.settings())
    store.write_bytes(input_uri, b'{"custom_id": "a"}\n')

    def make(**spec: Any) -> dict[str, Any]:
        spec.setdefault("input", input_uri)
        spec.setdefault("output", f"s3://{s3_bucket}/out/")
        body = batchjob(**spec)
        body["metadata"]["creationTimestamp"] = "2099-01-01T00:00:00Z"
        api.batchjobs[body["metadata"]["name"]] = body
        return body

    return api, runtime, make


def finish_plan(api: FakeApi, s3_server: S3Server, body: dict[str, Any]) -> PlanSummary:
    """What the plan pod leaves behind: plan.json under the output, its Job complete."""
    spec = body["spec"]
    plan = PLAN.model_copy(update={"input": spec["input"]})
    uri = OutputLayout(spec["output"]).plan_summary
    get_store(uri, s3_server.settings()).write_bytes(uri, plan.model_dump_json().encode())
    api.jobs["demo-plan"]["status"] = plan_job(complete=True)["status"]
    return plan


async def running_batch(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]], s3_server: S3Server, pods: int
) -> tuple[dict[str, Any], BatchJobMemory]:
    """A two-shard batch planned and Running, its run Job active with ``pods`` running pods."""
    api, runtime, make = world
    body = make(parallelism=2)
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    api.jobs["demo-run"]["status"] = {"active": 2}
    api.pods["demo-run"] = [{"metadata": {"labels": {}}, "status": {"phase": "Running"}}] * pods
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Running"
    return body, memory


async def test_first_pass_writes_names_then_events_then_creates_the_plan_job(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
    events: list[tuple[str, str, str]],
    s3_server: S3Server,
) -> None:
    api, runtime, make = world
    body = make()
    memory = BatchJobMemory()
    delay = await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Queued" and status["reason"] == "Planning"
    assert status["jobName"] == "demo-run" and status["planJobName"] == "demo-plan"
    # The status naming the Jobs is stored before the first is created.
    assert api.calls.index("patch_status") < api.calls.index("create_job demo-plan")
    assert [e[1] for e in events] == ["PlanStarted", "Planning"]
    assert delay == handle_reconcile.AFTER_ACTION_DELAY
    plan_pod_spec = api.jobs["demo-plan"]["spec"]["template"]["spec"]
    assert plan_pod_spec["containers"][0]["image"] == "r:1"
    assert "demo-run" not in api.jobs
    # The plan pod runs: nothing new.
    api.jobs["demo-plan"]["status"] = plan_job(active=1)["status"]
    await reconcile_once(body, memory, runtime)
    assert "demo-run" not in api.jobs
    # The plan is written: totals in the status, then the run Job.
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["requestCounts"] == {"total": 20, "completed": 0, "failed": 2}
    assert status["progress"] == "2/20"
    assert status["plan"]["chunks"] == 3
    assert "Planned" in [e[1] for e in events]
    assert api.jobs["demo-run"]["spec"]["template"]["spec"]["containers"][0]["image"] == "r:1"
    # The Job exists, its pods pending (a new reason); then nothing changed, nothing written.
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["reason"] == "PodsPending"
    patches = api.status_patches
    await reconcile_once(body, memory, runtime)
    assert api.status_patches == patches
    assert api.calls.count("create_job demo-run") == 1
    assert api.calls.count("create_job demo-plan") == 1


async def test_restart_reads_the_plan_again_and_makes_no_second_job(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]], s3_server: S3Server
) -> None:
    api, runtime, make = world
    body = make()
    await reconcile_once(body, BatchJobMemory(), runtime)
    finish_plan(api, s3_server, body)
    await reconcile_once(body, BatchJobMemory(), runtime)
    api.jobs["demo-run"]["status"] = {"active": 2}
    api.pods["demo-run"] = [{"metadata": {"labels": {}}, "status": {"phase": "Running"}}]
    # A new process: empty memory, the status as the watch delivers it.
    body["status"] = dict(api.batchjobs["demo"]["status"])
    await reconcile_once(body, BatchJobMemory(), runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running"
    assert status["requestCounts"]["total"] == 20
    assert api.calls.count("create_job demo-run") == 1
    assert api.calls.count("create_job demo-plan") == 1


async def test_a_run_job_deleted_while_running_is_created_again_without_leaving_running(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
    s3_server: S3Server,
    events: list[tuple[str, str, str]],
) -> None:
    api, runtime, _ = world
    body, memory = await running_batch(world, s3_server, pods=1)
    # Someone deletes the run Job (its pods go with it): the committed chunks are in the store
    # and the leases let new pods resume, so the operator makes the Job again and stays Running.
    del api.jobs["demo-run"], api.pods["demo-run"]
    events.clear()
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running" and status["reason"] == "JobRecreated"
    assert "demo-run" in status["message"] and "deleted" in status["message"]
    assert api.calls.count("create_job demo-run") == 2
    assert [e[:2] for e in events] == [("Warning", "JobRecreated")]
    assert api.jobs["demo-run"]["spec"]["completions"] == 2
    # The new Job's pods start: the batch goes on, one event only.
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running" and status["reason"] == "PodsPending"
    assert api.calls.count("create_job demo-run") == 2
    assert len(events) == 1


async def test_a_failed_plan_fails_the_batch_with_what_the_pod_said(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
    events: list[tuple[str, str, str]],
) -> None:
    api, runtime, make = world
    body = make()
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    api.jobs["demo-plan"]["status"] = plan_job(failed_reason="PodFailurePolicy")["status"]
    api.pods["demo-plan"] = [plan_pod(42, "cannot read s3://x/in.jsonl: NoSuchKey")]
    delay = await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "PlanFailed"
    assert "NoSuchKey" in status["message"]
    assert "kubectl logs job/demo-plan" in status["message"]
    assert ("Warning", "PlanFailed") in [(e[0], e[1]) for e in events]
    assert "demo-run" not in api.jobs
    assert delay is None


async def test_missing_secret_fails_validation_and_creates_nothing(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
) -> None:
    api, runtime, make = world
    body = make(storage={"secretRef": {"name": "nope"}})
    delay = await reconcile_once(body, BatchJobMemory(), runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ValidationFailed"
    assert "Secret default/nope does not exist" in status["message"]
    assert api.jobs == {}
    assert delay is None


async def test_missing_input_fails_validation_with_what_to_fix(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]], s3_bucket: str
) -> None:
    api, runtime, make = world
    body = make(input=f"s3://{s3_bucket}/absent.jsonl")
    await reconcile_once(body, BatchJobMemory(), runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Failed"
    assert "does not exist; upload the JSONL file or fix the URI" in status["message"]


async def test_no_size_limit_unless_the_operator_sets_one(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
) -> None:
    api, runtime, make = world
    body = make()
    await reconcile_once(body, BatchJobMemory(), runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Queued"
    limited = Runtime(api=api, config=replace(runtime.config, max_input_bytes=5))  # type: ignore[arg-type]
    body = make(name="big")
    await reconcile_once(body, BatchJobMemory(), limited)
    status = api.batchjobs["big"]["status"]
    assert status["phase"] == "Failed"
    assert "over the 5-byte limit" in status["message"]


async def test_unreachable_storage_keeps_validating(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
) -> None:
    api, runtime, make = world
    body = make(storage={"endpoint": "http://127.0.0.1:9", "secretRef": {"name": "llmbatch-s3"}})
    delay = await reconcile_once(body, BatchJobMemory(), runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Validating"
    assert delay == handle_reconcile.VALIDATION_RETRY_DELAY


async def test_credentials_never_leave_the_operator(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
    events: list[tuple[str, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, runtime, make = world
    api.secrets["llmbatch-s3"]["data"]["AWS_SECRET_ACCESS_KEY"] = base64.b64encode(
        SECRET_VALUE.encode()
    ).decode()
    body = make()
    caplog.set_level("DEBUG")
    await reconcile_once(body, BatchJobMemory(), runtime)
    written = json.dumps([api.jobs, api.batchjobs, events]) + caplog.text
    assert SECRET_VALUE not in written
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in written


async def test_suspend_then_cancel_through_the_loop(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]], s3_server: S3Server
) -> None:
    api, runtime, make = world
    body = make(suspend=True)
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Suspended"
    # Suspended while planning: the plan finishes, the run Job is created suspended.
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    assert api.jobs["demo-run"]["spec"]["suspend"] is True
    body["spec"]["cancel"] = True
    body["metadata"]["generation"] = 2
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Cancelling"
    assert "demo-finalize" in api.jobs
    assert api.jobs["demo-finalize"]["spec"]["template"]["spec"]["containers"][0]["command"][
        -1
    ] == ("cancelled")


async def test_cancel_while_planning_stops_the_plan_pod_and_runs_nothing(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
) -> None:
    api, runtime, make = world
    body = make()
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    api.jobs["demo-plan"]["status"] = plan_job(active=1)["status"]
    body["spec"]["cancel"] = True
    body["metadata"]["generation"] = 2
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Cancelling"
    assert "delete_job demo-plan" in api.calls
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Cancelled" and "no request ran" in status["message"]
    assert api.jobs == {}


def test_next_delay_per_phase_and_ttl() -> None:
    from llmbatch.controller.decide import decide
    from tests.controller.factories import at, job, observed, validated

    config = OperatorConfig(active_interval=2, idle_interval=30)
    next_delay = handle_reconcile.next_delay
    body = batchjob(validated("Running"))
    obs = observed(body, at(1), job=job(active=2))
    assert next_delay(config, obs, decide(obs)) == 2
    # Never sleep past the deadline (one hour after creation).
    obs = observed(body, at(59.99), job=job(active=2))
    assert next_delay(config, obs, decide(obs)) == pytest.approx(1.1)
    suspended_body = batchjob(validated("Suspended"), suspend=True)
    obs = observed(suspended_body, at(1), job=job(suspend=True))
    assert next_delay(config, obs, decide(obs)) == 30
    done = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    obs = observed(batchjob(done), at(11))
    assert next_delay(config, obs, decide(obs)) is None
    with_ttl = batchjob(done, ttlSecondsAfterFinished=120)
    obs = observed(with_ttl, at(11), job=job(complete=True))
    assert next_delay(config, obs, decide(obs)) == pytest.approx(60.5)
    obs = observed(with_ttl, at(13))
    assert next_delay(config, obs, decide(obs)) is None


def _stop(api: FakeApi, body: dict[str, Any], mode: str) -> None:
    """Make the running batch stop the ``mode`` way: every shard done, a cancel, or the
    deadline passed (creation moved back beyond the one-hour window)."""
    if mode == "none":
        api.jobs["demo-run"]["status"] = job(complete=True, completed_indexes="0-1")["status"]
        api.pods["demo-run"] = []
    elif mode == "cancelled":
        body["spec"]["cancel"] = True
        body["metadata"]["generation"] = 2
    else:
        body["metadata"]["creationTimestamp"] = rfc3339(time.time() - 7200)


async def _until_finalize_job(
    api: FakeApi, body: dict[str, Any], memory: BatchJobMemory, runtime: Runtime
) -> None:
    """Passes until the finalize Job exists; the shard pods stop once asked to."""
    for _ in range(4):
        await reconcile_once(body, memory, runtime)
        if "demo-finalize" in api.jobs:
            return
        api.pods["demo-run"] = []
        api.jobs["demo-run"]["status"]["active"] = 0
    raise AssertionError(f"no finalize Job; status {api.batchjobs['demo']['status']}")


def _write_manifest(s3_server: S3Server, body: dict[str, Any], manifest: Manifest) -> None:
    """What the finalize pod leaves behind: manifest.json under the output."""
    uri = OutputLayout(body["spec"]["output"]).manifest
    get_store(uri, s3_server.settings()).write_bytes(uri, manifest.to_json(indent=2))


@pytest.mark.parametrize(
    ("mode", "stopping", "reason", "unanswered", "final"),
    [
        ("none", "Finalizing", "ShardsComplete", 0, "Succeeded"),
        ("cancelled", "Cancelling", "CancelRequested", 5, "Cancelled"),
        ("cancelled", "Cancelling", "CancelRequested", 0, "Cancelled"),
        ("expired", "Finalizing", "DeadlineExceeded", 5, "Expired"),
        # Every line answered, the deadline passed before the operator saw the shards done.
        ("expired", "Finalizing", "DeadlineExceeded", 0, "Succeeded"),
    ],
)
async def test_a_finalize_job_deleted_while_stopping_is_created_again_and_the_batch_ends(
    world: tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]],
    s3_server: S3Server,
    mode: str,
    stopping: str,
    reason: str,
    unanswered: int,
    final: str,
) -> None:
    api, runtime, _ = world
    body, memory = await running_batch(world, s3_server, pods=2)
    _stop(api, body, mode)
    await _until_finalize_job(api, body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert (status["phase"], status["reason"]) == (stopping, reason)
    command = api.jobs["demo-finalize"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == mode
    api.jobs["demo-finalize"]["status"] = {"active": 1}
    await reconcile_once(body, memory, runtime)
    # Someone deletes the finalize Job while its pod merges: the stop goes on, and the next
    # pass creates it again under the same name and with the same reason (finalize is
    # idempotent: a pod that finds the manifest written answers with it).
    del api.jobs["demo-finalize"]
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert (status["phase"], status["reason"]) == (stopping, reason)
    assert api.calls.count("create_job demo-finalize") == 2
    command = api.jobs["demo-finalize"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == mode
    assert api.jobs["demo-finalize"]["metadata"]["annotations"] == {
        "llmbatch.io/finalize-reason": mode
    }
    # The new pod finalizes: the batch ends, and no third Job is made.
    counts = Counts(total=20, completed=20 - 2 - unanswered, failed=2 + unanswered)
    manifest = Manifest(reason=mode, request_counts=counts, unanswered=unanswered)  # type: ignore[arg-type]
    _write_manifest(s3_server, body, manifest)
    api.jobs["demo-finalize"]["status"] = finalize_job(complete=True)["status"]
    delay = await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == final
    assert status["requestCounts"] == counts.to_dict()
    assert api.calls.count("create_job demo-finalize") == 2
    assert delay is None
