"""The state machine, exhaustively, with no cluster: every phase transition of a BatchJob."""

from __future__ import annotations

from typing import Any

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateFinalizeJob,
    CreateRunJob,
    DeleteJobs,
    SetRunJobSuspended,
)
from llmbatch.controller.compute import compute_status
from llmbatch.controller.status_conditions import find_condition
from llmbatch.controller.validation import ValidationResult
from tests.controller.factories import (
    MANIFEST,
    at,
    batchjob,
    finalize_job,
    job,
    pod,
    progress,
    validated,
)

OK = ValidationResult.passed(input_size=1234)


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    found = find_condition(status.get("conditions") or [], ctype)
    assert found is not None, f"no {ctype} condition in {status.get('conditions')}"
    return dict(found)


# --- Validating -------------------------------------------------------------------------------


def test_new_batchjob_is_validating_until_checks_ran() -> None:
    decision = compute_status(batchjob(), None, None, [], [], at(0))
    assert decision.phase == Phase.VALIDATING
    assert decision.actions == []
    assert decision.transition == (None, "Validating")
    assert decision.status["deadline"] == "2026-01-01T13:00:00Z"
    assert decision.status["timestamps"]["createdAt"] == "2026-01-01T12:00:00Z"
    assert "jobName" not in decision.status


def test_validation_passed_writes_names_and_creates_the_job() -> None:
    decision = compute_status(batchjob(), None, None, [], [], at(0), validation=OK)
    assert decision.phase == Phase.QUEUED
    assert decision.status["jobName"] == "demo-run"
    assert decision.status["finalizeJobName"] == "demo-finalize"
    assert decision.actions == [CreateRunJob()]
    assert cond(decision.status, "Validated")["status"] == "True"
    assert decision.status["timestamps"]["inProgressAt"] == "2026-01-01T12:00:00Z"
    # Names are part of the same patch that precedes creation.
    assert decision.patch["jobName"] == "demo-run"


def test_validation_failed_is_terminal_with_a_message() -> None:
    failed = ValidationResult.failed("input object s3://llmbatch/in/demo.jsonl does not exist")
    decision = compute_status(batchjob(), None, None, [], [], at(0), validation=failed)
    assert decision.phase == Phase.FAILED
    assert decision.status["reason"] == "ValidationFailed"
    assert "does not exist" in decision.status["message"]
    assert cond(decision.status, "Validated")["status"] == "False"
    assert cond(decision.status, "Failed")["reason"] == "ValidationFailed"
    assert decision.actions == []
    assert decision.events[0].type == "Normal" or decision.events[0].reason == "ValidationFailed"
    assert decision.status["timestamps"]["failedAt"]


def test_transient_validation_problem_retries_without_failing() -> None:
    retry = ValidationResult.retry("S3 endpoint unreachable")
    decision = compute_status(batchjob(), None, None, [], [], at(0), validation=retry)
    assert decision.phase == Phase.VALIDATING
    assert cond(decision.status, "Validated")["status"] == "Unknown"
    assert decision.actions == []


def test_bad_model_source_fails_validation_without_io() -> None:
    body = batchjob(model={"name": "m", "source": "hf://"})
    decision = compute_status(body, None, None, [], [], at(0), validation=OK)
    assert decision.phase == Phase.FAILED
    assert "spec.model.source" in decision.status["message"]


def test_cancel_before_validation_is_cancelled_at_once() -> None:
    decision = compute_status(batchjob(cancel=True), None, None, [], [], at(0))
    assert decision.phase == Phase.CANCELLED
    assert decision.actions == []


def test_suspend_at_creation_goes_straight_to_suspended_with_a_suspended_job() -> None:
    decision = compute_status(batchjob(suspend=True), None, None, [], [], at(0), validation=OK)
    assert decision.phase == Phase.SUSPENDED
    assert decision.actions == [CreateRunJob()]
    assert cond(decision.status, "Suspended")["status"] == "True"
    # Then the Job exists, suspended: nothing else to write.
    again = compute_status(
        batchjob(decision.status, suspend=True), job(suspend=True), None, [], [], at(0.1)
    )
    assert again.patch == {}
    assert again.actions == []


# --- Queued and Running -------------------------------------------------------------------------


def test_missing_job_is_created_again_idempotently() -> None:
    decision = compute_status(batchjob(validated("Queued")), None, None, [], [], at(1))
    assert decision.actions == [CreateRunJob()]
    assert decision.phase == Phase.QUEUED


def test_pods_pending_stay_queued() -> None:
    decision = compute_status(
        batchjob(validated("Queued")),
        job(active=2),
        None,
        [pod(0, "Pending"), pod(1, "Pending")],
        [],
        at(1),
    )
    assert decision.phase == Phase.QUEUED
    assert decision.status["reason"] == "PodsPending"
    assert cond(decision.status, "Running")["status"] == "False"


def test_a_running_pod_makes_it_running() -> None:
    decision = compute_status(
        batchjob(validated("Queued")), job(active=2), None, [pod(0), pod(1, "Pending")], [], at(1)
    )
    assert decision.phase == Phase.RUNNING
    assert decision.transition == ("Queued", "Running")
    assert decision.status["startTime"] == "2026-01-01T12:01:00Z"
    assert cond(decision.status, "Running")["status"] == "True"
    assert decision.events and decision.events[0].type == "Normal"


def test_running_does_not_go_back_to_queued_between_retries() -> None:
    decision = compute_status(
        batchjob(validated("Running")), job(active=1), None, [pod(0, "Pending")], [], at(2)
    )
    assert decision.phase == Phase.RUNNING
    assert decision.transition is None


def test_progress_is_aggregated_with_eta_and_throughput() -> None:
    objects = [progress(0, completed=4, failed=1, updated=2), progress(1, completed=5, updated=2)]
    decision = compute_status(
        batchjob(validated("Running")), job(active=2), None, [pod(0), pod(1)], objects, at(2)
    )
    status = decision.status
    assert status["requestCounts"] == {"total": 20, "completed": 9, "failed": 1}
    assert status["usage"] == {"promptTokens": 90, "completionTokens": 72}
    assert status["progress"] == "10/20"
    assert status["throughput"] == 10.0
    # 10 done in the minute since the first shard started: 10 left take one more minute.
    assert status["eta"] == "2026-01-01T12:03:00Z"
    assert cond(status, "SLAAtRisk")["status"] == "False"
    assert [s["state"] for s in status["shards"]] == ["Running", "Running"]
    assert decision.volatile_only is False  # the SLAAtRisk condition is new


def test_progress_only_changes_are_volatile() -> None:
    first = compute_status(
        batchjob(validated("Running")),
        job(active=2),
        None,
        [pod(0), pod(1)],
        [progress(0, completed=1), progress(1, completed=1)],
        at(2),
    )
    second = compute_status(
        batchjob(first.status),
        job(active=2),
        None,
        [pod(0), pod(1)],
        [progress(0, completed=2), progress(1, completed=1)],
        at(2),
    )
    assert second.patch and second.volatile_only


def test_sla_at_risk_turns_true_and_false_again_with_events() -> None:
    slow = [progress(0, completed=1, total=1000, started=1), progress(1, total=1000, started=1)]
    risky = compute_status(
        batchjob(validated("Running")), job(active=2), None, [pod(0), pod(1)], slow, at(10)
    )
    assert cond(risky.status, "SLAAtRisk")["status"] == "True"
    assert risky.sla_changed
    assert any(e.reason == "SLAAtRisk" and e.type == "Warning" for e in risky.events)
    fast = [
        progress(0, completed=995, total=1000, started=1),
        progress(1, completed=4, total=1000, started=1),
    ]
    fine = compute_status(
        batchjob(risky.status), job(active=2), None, [pod(0), pod(1)], fast, at(11)
    )
    assert cond(fine.status, "SLAAtRisk")["status"] == "False"
    assert any(e.reason == "SLAWithinDeadline" for e in fine.events)
    assert cond(fine.status, "SLAAtRisk")["lastTransitionTime"] == "2026-01-01T12:11:00Z"


def test_counters_never_go_backwards_after_a_shard_restart() -> None:
    status = validated("Running", requestCounts={"total": 20, "completed": 12, "failed": 0})
    decision = compute_status(
        batchjob(status),
        job(active=2),
        None,
        [pod(0)],
        [progress(0, completed=3), progress(1, completed=4)],
        at(3),
    )
    assert decision.status["requestCounts"]["completed"] == 12


# --- Suspend and resume -------------------------------------------------------------------------


def test_suspend_while_running_suspends_the_job() -> None:
    body = batchjob(validated("Running"), suspend=True, generation=2)
    decision = compute_status(body, job(active=2), None, [pod(0), pod(1)], [], at(3))
    assert decision.phase == Phase.SUSPENDED
    assert decision.actions == [SetRunJobSuspended(True)]
    assert decision.status["observedGeneration"] == 2
    assert cond(decision.status, "Running")["status"] == "False"


def test_resume_unsuspends_the_job_and_queues() -> None:
    first = compute_status(
        batchjob(validated("Running"), suspend=True), job(active=2), None, [pod(0)], [], at(3)
    )
    decision = compute_status(
        batchjob(first.status, suspend=False), job(suspend=True), None, [], [], at(4)
    )
    assert decision.phase == Phase.QUEUED
    assert decision.status["reason"] == "Resumed"
    assert decision.actions == [SetRunJobSuspended(False)]
    assert cond(decision.status, "Suspended")["status"] == "False"


def test_kueue_job_waits_for_admission_instead_of_being_unsuspended() -> None:
    body = batchjob(validated("Queued"), queueName="gpu-queue")
    decision = compute_status(body, job(suspend=True), None, [], [], at(1))
    assert decision.phase == Phase.QUEUED
    assert decision.actions == []
    assert "Kueue" in decision.status["message"]


# --- Cancel -------------------------------------------------------------------------------------


def test_cancel_stops_shards_then_finalizes_then_cancelled() -> None:
    body = batchjob(validated("Running"), cancel=True, generation=2)
    stopping = compute_status(body, job(active=2), None, [pod(0), pod(1)], [], at(3))
    assert stopping.phase == Phase.CANCELLING
    assert stopping.actions == [SetRunJobSuspended(True)]
    assert stopping.status["timestamps"]["cancellingAt"] == "2026-01-01T12:03:00Z"
    # Pods still terminating (flushing their part): wait, do not finalize yet.
    waiting = compute_status(
        batchjob(stopping.status, cancel=True),
        job(suspend=True),
        None,
        [pod(0, terminating=True)],
        [],
        at(3.1),
    )
    assert waiting.actions == []
    assert "waiting for 1 shard pod" in waiting.status["message"]
    # All pods gone: finalize with --reason cancelled.
    finalize = compute_status(
        batchjob(waiting.status, cancel=True), job(suspend=True), None, [], [], at(3.2)
    )
    assert finalize.actions == [CreateFinalizeJob("cancelled")]
    done = compute_status(
        batchjob(finalize.status, cancel=True),
        job(suspend=True),
        finalize_job(complete=True),
        [],
        [],
        at(4),
        manifest=MANIFEST,
    )
    assert done.phase == Phase.CANCELLED
    assert done.status["requestCounts"] == MANIFEST["requestCounts"]
    assert done.status["errorFile"] == "s3://llmbatch/out/demo/errors.jsonl"
    assert cond(done.status, "Cancelled")["status"] == "True"
    assert done.status["timestamps"]["cancelledAt"]


def test_cancel_of_a_queued_batch_without_a_job_finalizes_directly() -> None:
    decision = compute_status(batchjob(validated("Queued"), cancel=True), None, None, [], [], at(1))
    assert decision.phase == Phase.CANCELLING
    assert decision.actions == [CreateFinalizeJob("cancelled")]


def test_cancel_is_ignored_once_finalizing_with_success() -> None:
    status = validated("Finalizing", reason="ShardsComplete")
    decision = compute_status(
        batchjob(status, cancel=True), job(complete=True), finalize_job(), [], [], at(5)
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == []


# --- Expire -------------------------------------------------------------------------------------


def test_deadline_stops_shards_and_finalizes_expired() -> None:
    stopping = compute_status(
        batchjob(validated("Running")), job(active=2), None, [pod(0), pod(1)], [], at(61)
    )
    assert stopping.phase == Phase.FINALIZING
    assert stopping.status["reason"] == "DeadlineExceeded"
    assert stopping.actions == [SetRunJobSuspended(True)]
    finalize = compute_status(batchjob(stopping.status), job(suspend=True), None, [], [], at(62))
    assert finalize.actions == [CreateFinalizeJob("expired")]
    assert finalize.status["reason"] == "DeadlineExceeded"
    done = compute_status(
        batchjob(finalize.status),
        job(suspend=True),
        finalize_job(complete=True),
        [],
        [],
        at(63),
        manifest=MANIFEST,
    )
    assert done.phase == Phase.EXPIRED
    assert cond(done.status, "Expired")["status"] == "True"
    assert done.events[0].type == "Warning"
    assert done.status["timestamps"]["expiredAt"]


def test_runner_exit_43_expires_even_if_the_operator_clock_is_behind() -> None:
    failed = job(failed_reason="MaxFailedIndexesExceeded", failed_indexes="0")
    decision = compute_status(
        batchjob(validated("Running")),
        failed,
        None,
        [pod(0, "Failed", exit_code=43), pod(1, "Succeeded", 0)],
        [],
        at(59),
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


def test_suspended_batch_expires_too() -> None:
    decision = compute_status(
        batchjob(validated("Suspended"), suspend=True), job(suspend=True), None, [], [], at(61)
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


def test_validated_after_the_deadline_finalizes_expired() -> None:
    decision = compute_status(batchjob(), None, None, [], [], at(61), validation=OK)
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


# --- Success and failures -----------------------------------------------------------------------


def test_complete_job_finalizes_then_succeeds_with_manifest_counts() -> None:
    finalizing = compute_status(
        batchjob(validated("Running")),
        job(complete=True, completed_indexes="0-1"),
        None,
        [],
        [],
        at(5),
    )
    assert finalizing.phase == Phase.FINALIZING
    assert finalizing.status["reason"] == "ShardsComplete"
    assert finalizing.actions == [CreateFinalizeJob("none")]
    assert finalizing.status["timestamps"]["finalizingAt"]
    running_fin = compute_status(
        batchjob(finalizing.status), job(complete=True), finalize_job(), [], [], at(5.5)
    )
    assert running_fin.actions == [] and running_fin.phase == Phase.FINALIZING
    done = compute_status(
        batchjob(finalizing.status),
        job(complete=True),
        finalize_job(complete=True),
        [],
        [],
        at(6),
        manifest=MANIFEST,
    )
    status = done.status
    assert done.phase == Phase.SUCCEEDED
    assert status["requestCounts"] == {"total": 20, "completed": 18, "failed": 2}
    assert status["usage"] == {"promptTokens": 200, "completionTokens": 144}
    assert status["progress"] == "20/20"
    assert status["outputFile"] == "s3://llmbatch/out/demo/output.jsonl"
    assert status["manifest"] == "s3://llmbatch/out/demo/manifest.json"
    assert status["inputSha256"] == "ab" * 32
    assert status["completionTime"] == "2026-01-01T12:06:00Z"
    assert "throughput" not in status  # it never ran (no startTime): no average to show
    assert cond(status, "Complete")["status"] == "True"
    assert "eta" not in status


def test_backoff_limit_exceeded() -> None:
    failed = job(failed_reason="FailedIndexes", failed_indexes="1")
    decision = compute_status(
        batchjob(validated("Running")), failed, None, [pod(1, "Failed", exit_code=1)] * 4, [], at(5)
    )
    assert decision.phase == Phase.FAILED
    assert decision.status["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 1" in decision.status["message"]
    assert decision.actions == []


def test_permanent_error_from_exit_code_42() -> None:
    failed = job(failed_reason="MaxFailedIndexesExceeded", failed_indexes="0")
    decision = compute_status(
        batchjob(validated("Running")), failed, None, [pod(0, "Failed", exit_code=42)], [], at(5)
    )
    assert decision.phase == Phase.FAILED
    assert decision.status["reason"] == "PermanentError"


def test_permanent_error_from_progress_state_when_pods_are_gone() -> None:
    failed = job(failed_reason="FailedIndexes", failed_indexes="0")
    decision = compute_status(
        batchjob(validated("Running")), failed, None, [], [progress(0, state="failed")], at(5)
    )
    assert decision.status["reason"] == "PermanentError"


def test_finalize_failure() -> None:
    status = validated("Finalizing", reason="ShardsComplete")
    decision = compute_status(
        batchjob(status), job(complete=True), finalize_job(failed=True), [], [], at(7)
    )
    assert decision.phase == Phase.FAILED
    assert decision.status["reason"] == "FinalizeFailed"
    assert "parts are kept" in decision.status["message"]


# --- Terminal, idempotence, ttl -----------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Expired", "Cancelled"])
def test_terminal_phases_never_change(phase: str) -> None:
    status = validated(phase, completionTime="2026-01-01T12:10:00Z")
    decision = compute_status(
        batchjob(status, cancel=True, suspend=True),
        job(active=2),
        None,
        [pod(0)],
        [progress(0, completed=3)],
        at(100),
    )
    assert decision.phase == Phase(phase)
    assert decision.actions == []
    assert set(decision.patch) <= {"deadline", "observedGeneration", "timestamps"}


def test_ttl_after_finished_deletes_jobs() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, ttlSecondsAfterFinished=60)
    assert compute_status(body, job(complete=True), None, [], [], at(10.5)).actions == []
    assert compute_status(body, job(complete=True), None, [], [], at(11)).actions == [DeleteJobs()]
    assert compute_status(body, None, None, [], [], at(12)).actions == []


def test_same_observation_twice_writes_nothing_the_second_time() -> None:
    pods = [pod(0), pod(1)]
    first = compute_status(batchjob(validated("Queued")), job(active=2), None, pods, [], at(1))
    second = compute_status(batchjob(first.status), job(active=2), None, pods, [], at(1.5))
    assert first.patch
    assert second.patch == {}
    assert second.events == []


def test_condition_time_kept_when_only_message_changes() -> None:
    first = compute_status(batchjob(validated("Queued")), job(active=2), None, [pod(0)], [], at(1))
    second = compute_status(
        batchjob(first.status), job(active=2), None, [pod(0), pod(1)], [], at(2)
    )
    running_1 = cond(first.status, "Running")
    running_2 = cond(second.status, "Running")
    assert running_1["message"] != running_2["message"]
    assert running_1["lastTransitionTime"] == running_2["lastTransitionTime"]


def test_a_refused_transition_keeps_the_phase_and_runs_no_action() -> None:
    # Cancelling only leads to Cancelled or Failed: a completed run Job does not change that.
    status = validated("Cancelling", reason="CancelRequested")
    decision = compute_status(
        batchjob(status),
        job(complete=True),
        finalize_job(complete=True),
        [],
        [],
        at(4),
        manifest=MANIFEST,
    )
    assert decision.phase == Phase.CANCELLED


def test_unknown_total_is_shown_as_unknown_not_as_the_crd_default_zero() -> None:
    status = validated("Running", requestCounts={"total": 0, "completed": 0, "failed": 0})
    decision = compute_status(
        batchjob(status),
        job(active=2),
        None,
        [pod(0), pod(1)],
        [progress(0, total=None, completed=2), progress(1, total=None)],
        at(2),
    )
    assert decision.status["progress"] == "2/?"
    assert "total" not in decision.status["requestCounts"]
    assert "eta" not in decision.status


def test_all_shards_done_before_the_operator_saw_the_deadline_still_succeeds() -> None:
    decision = compute_status(
        batchjob(validated("Running")),
        job(complete=True, completed_indexes="0-1"),
        None,
        [],
        [],
        at(61),
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("none")]


def test_at_the_deadline_shards_get_a_grace_to_stop_by_themselves() -> None:
    body = batchjob(validated("Running"))
    early = compute_status(body, job(active=2), None, [pod(0), pod(1)], [], at(60.25))
    assert early.phase == Phase.FINALIZING and early.status["reason"] == "DeadlineExceeded"
    assert early.actions == []
    assert "waiting for 2 shard pod(s) to stop" in early.status["message"]
    late = compute_status(batchjob(early.status), job(active=2), None, [pod(0)], [], at(61))
    assert late.actions == [SetRunJobSuspended(True)]
    assert late.status["message"].count("waiting") == 1


def test_a_shard_stopped_at_the_deadline_does_not_stop_the_others() -> None:
    running = job(active=1, failed_indexes="0")
    decision = compute_status(
        batchjob(validated("Running")),
        running,
        None,
        [pod(0, "Failed", exit_code=43), pod(1)],
        [],
        at(59.9),
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == []


def test_a_permanent_error_on_one_shard_fails_the_batch_and_stops_the_others() -> None:
    running = job(active=1, failed_indexes="1")
    decision = compute_status(
        batchjob(validated("Running")),
        running,
        None,
        [pod(0), pod(1, "Failed", exit_code=42)],
        [],
        at(5),
    )
    assert decision.phase == Phase.FAILED
    assert decision.status["reason"] == "PermanentError"
    assert decision.actions == [SetRunJobSuspended(True)]


def test_an_index_out_of_retries_fails_the_batch_while_others_run() -> None:
    running = job(active=1, failed_indexes="1")
    decision = compute_status(
        batchjob(validated("Running")),
        running,
        None,
        [pod(0), pod(1, "Failed", exit_code=137)],
        [],
        at(5),
    )
    assert decision.status["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 1" in decision.status["message"]
    assert decision.actions == [SetRunJobSuspended(True)]


def test_finished_batch_shows_its_average_throughput() -> None:
    status = validated("Finalizing", reason="ShardsComplete", startTime="2026-01-01T12:01:00Z")
    done = compute_status(
        batchjob(status),
        job(complete=True),
        finalize_job(complete=True),
        [],
        [],
        at(2),
        manifest=MANIFEST,
    )
    assert done.status["throughput"] == round(344 / 60, 1)


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
    decision = compute_status(
        batchjob(validated("Queued")), job(active=1), None, [pending], [], at(1)
    )
    assert decision.phase == Phase.QUEUED
    assert decision.status["message"].endswith("insufficient nvidia.com/gpu")
