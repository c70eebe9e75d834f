"""Stopping and finalizing: wait until no shard runs, finalize, conclude."""

from __future__ import annotations

import pytest

from llmbatch.api.documents import Manifest
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import format_time
from llmbatch.controller.actions import (
    CreateFinalizeJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import stopping
from llmbatch.controller.policy.verdict import Stop, Verdict
from tests.controller.factories import (
    MANIFEST,
    PLAN,
    at,
    batchjob,
    condition,
    finalize_job,
    job,
    observed,
    plan_job,
    pod,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_complete_job_finalizes_then_succeeds_with_manifest_counts() -> None:
    finalizing = decide(
        observed(
            batchjob(validated("Running")), at(5), job=job(complete=True, completed_indexes="0-1")
        )
    )
    assert finalizing.phase == Phase.FINALIZING
    assert finalizing.wire["reason"] == "ShardsComplete"
    assert finalizing.actions == [CreateFinalizeJob("none")]
    assert finalizing.wire["timestamps"]["finalizingAt"]
    running_fin = decide(
        observed(
            batchjob(finalizing.wire), at(5.5), job=job(complete=True), finalize=finalize_job()
        )
    )
    assert running_fin.actions == [] and running_fin.phase == Phase.FINALIZING
    done = decide(
        observed(
            batchjob(finalizing.wire),
            at(6),
            job=job(complete=True),
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    status = done.wire
    assert done.phase == Phase.SUCCEEDED
    assert status["requestCounts"] == {"total": 20, "completed": 18, "failed": 2}
    assert status["usage"] == {"promptTokens": 200, "completionTokens": 144}
    assert status["progress"] == "20/20"
    assert status["outputFile"] == "s3://llmbatch/out/demo/output.jsonl"
    assert status["manifest"] == "s3://llmbatch/out/demo/manifest.json"
    assert status["inputSha256"] == "ab" * 32
    assert status["completionTime"] == "2026-01-01T12:06:00Z"
    assert "throughput" not in status  # it never ran (no startTime): no average to show
    assert condition(status, "Complete")["status"] == "True"
    assert "eta" not in status


@pytest.mark.parametrize(
    ("phase", "reason", "mode", "spec"),
    [
        ("Finalizing", "ShardsComplete", "none", {}),
        ("Finalizing", "DeadlineExceeded", "expired", {}),
        ("Cancelling", "CancelRequested", "cancelled", {"cancel": True}),
    ],
)
def test_a_deleted_finalize_job_is_created_again_with_the_stop_s_reason(
    phase: str, reason: str, mode: str, spec: dict[str, bool]
) -> None:
    # The finalize Job ran (the message no longer waits for shards), then someone deleted it:
    # the same pass that would have created it first creates it again. Nothing refuses it
    # (the phase stays) and the reason, which chose the finalize mode, is kept.
    status = validated(phase, reason=reason, message="merging", startTime=format_time(at(1)))
    decision = decide(observed(batchjob(status, **spec), at(70), job=job(suspend=True)))
    assert decision.rejected is None
    assert (decision.phase, decision.wire["reason"]) == (Phase(phase), reason)
    assert decision.actions == [CreateFinalizeJob(mode)]  # type: ignore[arg-type]
    assert decision.events == []


def test_a_cancelling_batch_whose_jobs_were_deleted_still_finalizes_what_ran() -> None:
    # Shards ran (startTime), then the run Job and the finalize Job were deleted together:
    # their committed chunks are in the store, so finalize runs rather than "no request ran".
    status = validated("Cancelling", reason="CancelRequested", startTime=format_time(at(1)))
    body = batchjob(status, cancel=True)
    step = plan_job(complete=True)
    again = decide(observed(body, at(5), plan=PLAN, plan_step=step))
    assert again.phase == Phase.CANCELLING
    assert again.actions == [CreateFinalizeJob("cancelled")]
    done = decide(
        observed(
            batchjob(again.wire, cancel=True),
            at(6),
            plan=PLAN,
            plan_step=step,
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    assert done.phase == Phase.CANCELLED
    assert done.wire["message"] == "cancelled; 18 of 20 requests completed, 2 failed"


# --- The policy alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reason", "mode"),
    [
        ("Cancelling", "CancelRequested", "cancelled"),
        ("Finalizing", "DeadlineExceeded", "expired"),
        ("Finalizing", "ShardsComplete", "none"),
    ],
)
def test_a_stop_in_progress_keeps_its_mode_and_message(phase: str, reason: str, mode: str) -> None:
    status = validated(phase, reason=reason, message="stopping")
    stop = stopping.stop_in_progress(observed(batchjob(status), at(5)))
    assert stop is not None and stop.mode == mode
    assert (stop.verdict.phase, stop.verdict.message) == (Phase(phase), "stopping")


def test_no_stop_while_running() -> None:
    assert stopping.stop_in_progress(observed(batchjob(validated("Running")), at(5))) is None
    assert stopping.shards_complete(observed(batchjob(validated("Running")), at(5))) is None


def test_proceed_waits_then_finalizes_then_concludes() -> None:
    stop = Stop("none", Verdict(Phase.FINALIZING, "ShardsComplete", "merging"))
    body = batchjob(validated("Finalizing"))
    waiting = stopping.proceed(observed(body, at(5), job=job(active=1), pods=[pod(0)]), stop)
    assert waiting.actions == (SetRunJobSuspended(True),)
    assert waiting.message == "merging (waiting for 1 shard pod(s) to stop)"
    create = stopping.proceed(observed(body, at(5), job=job(complete=True)), stop)
    assert create.actions == (CreateFinalizeJob("none"),)
    running_finalize = observed(body, at(5), job=job(complete=True), finalize=finalize_job())
    assert stopping.proceed(running_finalize, stop) == stop.verdict
    done = observed(
        body, at(6), job=job(complete=True), finalize=finalize_job(complete=True), manifest=MANIFEST
    )
    outcome = stopping.proceed(done, stop)
    assert outcome.phase == Phase.SUCCEEDED
    assert outcome.message == "18 of 20 requests completed, 2 failed"


def test_a_cancel_stays_cancelled_even_with_nothing_left_to_cancel() -> None:
    # Unlike a late batch: the user asked for the cancel, so finding every request answered
    # does not turn it into a success.
    stop = Stop("cancelled", Verdict(Phase.CANCELLING, "CancelRequested", "stopping"))
    nothing_cancelled = MANIFEST.model_copy(update={"reason": "cancelled", "unanswered": 0})
    assert stopping.outcome(stop, nothing_cancelled).phase == Phase.CANCELLED
    assert stopping.outcome(stop, None).phase == Phase.CANCELLED
    # Shards that finished everything end Succeeded whatever the count says.
    done = Stop("none", Verdict(Phase.FINALIZING, "ShardsComplete", "merging"))
    assert stopping.outcome(done, MANIFEST).phase == Phase.SUCCEEDED


def test_summary_without_counts_says_finalized() -> None:
    assert stopping.summary(None) == "finalized"
    assert stopping.summary(Manifest()) == "finalized"
