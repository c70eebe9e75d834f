"""Running: create the Job, wait for admission and pods, report them."""

from __future__ import annotations

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateRunJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import running
from tests.controller.factories import (
    PLAN,
    at,
    batchjob,
    condition,
    job,
    observed,
    pod,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_missing_job_is_created_again_idempotently() -> None:
    decision = decide(observed(batchjob(validated("Queued")), at(1), plan=PLAN))
    assert decision.actions == [CreateRunJob()]
    assert decision.phase == Phase.QUEUED


def test_a_job_deleted_while_running_is_created_again_and_the_batch_stays_running() -> None:
    decision = decide(observed(batchjob(validated("Running")), at(1), plan=PLAN))
    assert decision.actions == [CreateRunJob()]
    assert decision.phase == Phase.RUNNING and decision.rejected is None
    assert decision.wire["reason"] == "JobRecreated"
    warnings = [(e.reason, e.message) for e in decision.events if e.type == "Warning"]
    assert warnings == [("JobRecreated", decision.wire["message"])]
    assert "demo-run" in decision.wire["message"]
    # The next pass, the Job still missing (the create failed): created again, no new event.
    again = decide(observed(batchjob(decision.wire), at(2), plan=PLAN))
    assert again.actions == [CreateRunJob()]
    assert [e for e in again.events if e.type == "Warning"] == []


def test_pods_pending_stay_queued() -> None:
    decision = decide(
        observed(
            batchjob(validated("Queued")),
            at(1),
            job=job(active=2),
            pods=[pod(0, "Pending"), pod(1, "Pending")],
        )
    )
    assert decision.phase == Phase.QUEUED
    assert decision.wire["reason"] == "PodsPending"
    assert condition(decision.wire, "Running")["status"] == "False"


def test_a_running_pod_makes_it_running() -> None:
    decision = decide(
        observed(
            batchjob(validated("Queued")),
            at(1),
            job=job(active=2),
            pods=[pod(0), pod(1, "Pending")],
        )
    )
    assert decision.phase == Phase.RUNNING
    assert decision.transition == ("Queued", "Running")
    assert decision.wire["startTime"] == "2026-01-01T12:01:00Z"
    assert condition(decision.wire, "Running")["status"] == "True"
    assert decision.events and decision.events[0].type == "Normal"


def test_running_does_not_go_back_to_queued_between_retries() -> None:
    decision = decide(
        observed(batchjob(validated("Running")), at(2), job=job(active=1), pods=[pod(0, "Pending")])
    )
    assert decision.phase == Phase.RUNNING
    assert decision.transition is None


def test_kueue_job_waits_for_admission_instead_of_being_unsuspended() -> None:
    body = batchjob(validated("Queued"), queueName="gpu-queue")
    decision = decide(observed(body, at(1), job=job(suspend=True)))
    assert decision.phase == Phase.QUEUED
    assert decision.actions == []
    assert "Kueue" in decision.wire["message"]


def test_queued_says_why_pods_are_not_scheduled() -> None:
    pending = pod(0, "Pending")
    pending["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes: insufficient nvidia.com/gpu",
        }
    ]
    decision = decide(
        observed(batchjob(validated("Queued")), at(1), job=job(active=1), pods=[pending])
    )
    assert decision.phase == Phase.QUEUED
    assert decision.wire["message"].endswith("insufficient nvidia.com/gpu")


# --- The policy alone ---------------------------------------------------------------------------


def test_a_resumed_batch_without_a_job_says_resumed() -> None:
    fresh = running.run(observed(batchjob(validated("Queued")), at(1)))
    assert (fresh.phase, fresh.reason, fresh.actions) == (
        Phase.QUEUED,
        "JobCreated",
        (CreateRunJob(),),
    )
    resumed = running.run(observed(batchjob(validated("Suspended")), at(1)))
    assert resumed.reason == "Resumed" and resumed.actions == (CreateRunJob(),)


def test_a_suspended_job_without_kueue_is_unsuspended() -> None:
    verdict = running.run(observed(batchjob(validated("Queued")), at(1), job=job(suspend=True)))
    assert verdict.actions == (SetRunJobSuspended(False),)


def test_running_pods_are_counted_in_the_message() -> None:
    obs = observed(
        batchjob(validated("Queued")),
        at(1),
        job=job(active=2, completed_indexes="1"),
        pods=[pod(0)],
    )
    verdict = running.run(obs)
    assert verdict.phase == Phase.RUNNING
    assert verdict.message == "1 of 2 shard pod(s) running, 1 finished"
