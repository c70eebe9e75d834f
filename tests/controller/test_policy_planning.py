"""Planning: the plan Job runs before the shards; its outcome decides whether they start."""

from __future__ import annotations

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateFinalizeJob,
    CreatePlanJob,
    CreateRunJob,
    DeletePlanJob,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import planning
from tests.controller.factories import (
    PLAN,
    at,
    batchjob,
    condition,
    job,
    observed,
    plan_job,
    plan_pod,
    pod,
    validated,
)

QUEUED = validated("Queued", reason="Planning", planJobName="demo-plan")


def test_plan_not_started_creates_the_plan_job_and_says_so() -> None:
    decision = decide(observed(batchjob(QUEUED), at(1)))
    assert decision.phase == Phase.QUEUED
    assert decision.wire["reason"] == "Planning"
    assert decision.actions == [CreatePlanJob()]
    assert condition(decision.wire, "Planned")["status"] == "Unknown"
    assert [e.reason for e in decision.events] == ["PlanStarted"]
    assert decision.rejected is None


def test_while_planning_no_shard_starts() -> None:
    first = decide(observed(batchjob(QUEUED), at(1)))
    decision = decide(observed(batchjob(first.wire), at(2), plan_step=plan_job(active=1)))
    assert decision.phase == Phase.QUEUED
    assert decision.actions == []
    assert decision.events == []  # PlanStarted was posted once
    assert "s3://llmbatch/in/demo.jsonl" in decision.wire["message"]


def test_plan_done_starts_the_shards_with_the_totals_in_status() -> None:
    first = decide(observed(batchjob(QUEUED), at(1), plan_step=plan_job(active=1)))
    decision = decide(
        observed(batchjob(first.wire), at(2), plan_step=plan_job(complete=True), plan=PLAN)
    )
    assert decision.phase == Phase.QUEUED
    assert decision.actions == [CreateRunJob()]
    planned = condition(decision.wire, "Planned")
    assert planned["status"] == "True" and planned["reason"] == "Planned"
    assert "20 request(s) in 3 chunk(s), 2 invalid" in planned["message"]
    assert "900 prompt tokens (by the model's tokenizer)" in planned["message"]
    assert [e.reason for e in decision.events] == ["Planned"]
    assert decision.wire["plan"] == {
        "chunks": 3,
        "invalid": 2,
        "promptTokens": 900,
        "tokenCounter": "tokenizer",
    }
    assert decision.wire["requestCounts"] == {"total": 20, "completed": 0, "failed": 2}
    assert decision.wire["usage"]["promptTokens"] == 900


def test_bad_input_fails_at_once_with_the_uri_and_the_pods_last_words() -> None:
    decision = decide(
        observed(
            batchjob(QUEUED),
            at(2),
            plan_step=plan_job(failed_reason="PodFailurePolicy"),
            plan_pods=[plan_pod(42, "error: s3://llmbatch/in/demo.jsonl: NoSuchKey")],
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "PlanFailed"
    message = decision.wire["message"]
    assert "cannot use spec.input s3://llmbatch/in/demo.jsonl" in message
    assert "NoSuchKey" in message and "kubectl logs job/demo-plan" in message
    failed = condition(decision.wire, "Planned")
    assert failed["status"] == "False" and failed["reason"] == "PlanFailed"
    assert condition(decision.wire, "Failed")["reason"] == "PlanFailed"
    assert decision.actions == []
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "PlanFailed")]


def test_a_plan_out_of_retries_points_at_storage() -> None:
    decision = decide(
        observed(
            batchjob(QUEUED),
            at(2),
            plan_step=plan_job(failed_reason="BackoffLimitExceeded"),
            plan_pods=[plan_pod(1)],
        )
    )
    assert decision.wire["reason"] == "PlanFailed"
    assert "BackoffLimitExceeded" in decision.wire["message"]
    assert "object storage is reachable" in decision.wire["message"]


def test_a_finished_plan_job_without_plan_json_fails() -> None:
    decision = decide(observed(batchjob(QUEUED), at(2), plan_step=plan_job(complete=True)))
    assert decision.wire["reason"] == "PlanFailed"
    assert "s3://llmbatch/out/demo/plan/plan.json is not there" in decision.wire["message"]


def test_a_plan_of_another_input_is_never_run() -> None:
    foreign = PLAN.model_copy(update={"input": "s3://llmbatch/in/other.jsonl"})
    decision = decide(observed(batchjob(QUEUED), at(2), plan=foreign))
    assert decision.phase == Phase.FAILED
    assert "s3://llmbatch/in/other.jsonl" in decision.wire["message"]
    assert decision.actions == []


def test_cancel_while_planning_stops_the_plan_pod_then_cancels_without_finalize() -> None:
    body = batchjob(QUEUED, cancel=True, generation=2)
    decision = decide(observed(body, at(2), plan_step=plan_job(active=1)))
    assert decision.phase == Phase.CANCELLING
    assert decision.actions == [DeletePlanJob()]
    # The Job is gone (or its pod finished): nothing ran, nothing to merge.
    done = decide(observed(batchjob(decision.wire, cancel=True, generation=2), at(2.1)))
    assert done.phase == Phase.CANCELLED
    assert done.actions == []
    assert done.rejected is None


def test_suspend_while_planning_lets_the_plan_finish_and_starts_no_shard() -> None:
    body = batchjob(QUEUED, suspend=True, generation=2)
    decision = decide(observed(body, at(2), plan_step=plan_job(active=1)))
    assert decision.phase == Phase.SUSPENDED
    assert decision.actions == []
    assert "plan step may finish" in decision.wire["message"]
    # Planned while suspended: the run Job is created, suspended (the builder reads
    # spec.suspend), so that resuming only unsuspends it.
    planned = decide(
        observed(
            batchjob(decision.wire, suspend=True, generation=2),
            at(3),
            plan_step=plan_job(complete=True),
            plan=PLAN,
        )
    )
    assert planned.phase == Phase.SUSPENDED
    assert planned.actions == [CreateRunJob()]


def test_deadline_while_planning_stops_the_plan_pod_before_finalize() -> None:
    decision = decide(observed(batchjob(QUEUED), at(61), plan_step=plan_job(active=1)))
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [DeletePlanJob()]
    assert "waiting for the plan pod to stop" in decision.wire["message"]
    gone = decide(observed(batchjob(decision.wire), at(61.1)))
    assert gone.actions == [CreateFinalizeJob("expired")]


def test_a_batch_whose_run_job_exists_is_past_planning() -> None:
    # Started before plans existed (an upgraded operator): it runs on without one.
    decision = decide(
        observed(batchjob(validated("Running")), at(2), job=job(active=2), pods=[pod(0), pod(1)])
    )
    assert decision.phase == Phase.RUNNING
    assert decision.actions == []
    assert planning.plan(observed(batchjob(validated("Running")), at(2), job=job())) is None


def test_planned_condition_only_once_the_plan_was_read() -> None:
    assert planning.planned(observed(batchjob(QUEUED), at(1))) == []
    (update,) = planning.planned(observed(batchjob(QUEUED), at(1), plan=PLAN))
    assert update.status == "True"
