"""Cancel and suspend: spec.cancel and spec.suspend, from creation to the end."""

from __future__ import annotations

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateFinalizeJob,
    CreatePlanJob,
    CreateRunJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import cancel_suspend
from tests.controller.factories import (
    MANIFEST,
    MANIFEST_COUNTS,
    OK,
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


def test_cancel_before_validation_is_cancelled_at_once() -> None:
    decision = decide(observed(batchjob(cancel=True), at(0)))
    assert decision.phase == Phase.CANCELLED
    assert decision.actions == []


def test_suspend_at_creation_goes_straight_to_suspended_with_a_suspended_job() -> None:
    decision = decide(observed(batchjob(suspend=True), at(0), validation=OK))
    assert decision.phase == Phase.SUSPENDED
    # The plan step still runs (a CPU pod): resuming later starts the shards at once.
    assert decision.actions == [CreatePlanJob()]
    assert condition(decision.wire, "Suspended")["status"] == "True"
    planned = decide(
        observed(batchjob(decision.wire, suspend=True), at(0.1), plan=PLAN, plan_step=plan_job())
    )
    assert planned.phase == Phase.SUSPENDED
    assert planned.actions == [CreateRunJob()]
    # Then the Job exists, suspended: its shards are listed as pending, nothing else to do.
    again = decide(
        observed(batchjob(planned.wire, suspend=True), at(0.2), job=job(suspend=True), plan=PLAN)
    )
    assert set(again.patch) == {"shards"}
    assert again.actions == []


def test_suspend_while_running_suspends_the_job() -> None:
    body = batchjob(validated("Running"), suspend=True, generation=2)
    decision = decide(observed(body, at(3), job=job(active=2), pods=[pod(0), pod(1)]))
    assert decision.phase == Phase.SUSPENDED
    assert decision.actions == [SetRunJobSuspended(True)]
    assert decision.wire["observedGeneration"] == 2
    assert condition(decision.wire, "Running")["status"] == "False"


def test_resume_unsuspends_the_job_and_queues() -> None:
    first = decide(
        observed(
            batchjob(validated("Running"), suspend=True), at(3), job=job(active=2), pods=[pod(0)]
        )
    )
    decision = decide(observed(batchjob(first.wire, suspend=False), at(4), job=job(suspend=True)))
    assert decision.phase == Phase.QUEUED
    assert decision.wire["reason"] == "Resumed"
    assert decision.actions == [SetRunJobSuspended(False)]
    assert condition(decision.wire, "Suspended")["status"] == "False"


def test_cancel_stops_shards_then_finalizes_then_cancelled() -> None:
    body = batchjob(validated("Running"), cancel=True, generation=2)
    stopping = decide(observed(body, at(3), job=job(active=2), pods=[pod(0), pod(1)]))
    assert stopping.phase == Phase.CANCELLING
    assert stopping.actions == [SetRunJobSuspended(True)]
    assert stopping.wire["timestamps"]["cancellingAt"] == "2026-01-01T12:03:00Z"
    # Pods still terminating (flushing their part): wait, do not finalize yet.
    waiting = decide(
        observed(
            batchjob(stopping.wire, cancel=True),
            at(3.1),
            job=job(suspend=True),
            pods=[pod(0, terminating=True)],
        )
    )
    assert waiting.actions == []
    assert "waiting for 1 shard pod" in waiting.wire["message"]
    # All pods gone: finalize with --reason cancelled.
    finalize = decide(observed(batchjob(waiting.wire, cancel=True), at(3.2), job=job(suspend=True)))
    assert finalize.actions == [CreateFinalizeJob("cancelled")]
    done = decide(
        observed(
            batchjob(finalize.wire, cancel=True),
            at(4),
            job=job(suspend=True),
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    assert done.phase == Phase.CANCELLED
    assert done.wire["requestCounts"] == MANIFEST_COUNTS
    assert done.wire["errorFile"] == "s3://llmbatch/out/demo/errors.jsonl"
    assert condition(done.wire, "Cancelled")["status"] == "True"
    assert done.wire["timestamps"]["cancelledAt"]


def test_cancel_of_a_queued_batch_without_a_run_job_ends_without_finalize() -> None:
    # Planned, the shards not created yet: no request ran, there is nothing to merge.
    decision = decide(observed(batchjob(validated("Queued"), cancel=True), at(1), plan=PLAN))
    assert decision.phase == Phase.CANCELLING
    assert decision.actions == []
    again = decide(observed(batchjob(decision.wire, cancel=True), at(1.1), plan=PLAN))
    assert again.phase == Phase.CANCELLED
    assert "no request ran" in again.wire["message"]
    assert again.actions == []


def test_cancel_is_ignored_once_finalizing_with_success() -> None:
    status = validated("Finalizing", reason="ShardsComplete")
    decision = decide(
        observed(
            batchjob(status, cancel=True), at(5), job=job(complete=True), finalize=finalize_job()
        )
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == []


# --- The policy alone ---------------------------------------------------------------------------


def test_no_cancel_no_verdict() -> None:
    obs = observed(batchjob(validated("Running")), at(1), job=job(active=2))
    assert cancel_suspend.cancel_before_start(obs) is None
    assert cancel_suspend.cancel(obs) is None
    assert cancel_suspend.suspend(obs) is None


def test_cancel_stops_with_the_cancelled_finalize_mode() -> None:
    obs = observed(batchjob(validated("Running"), cancel=True), at(1), job=job(active=2))
    stop = cancel_suspend.cancel(obs)
    assert stop is not None and stop.mode == "cancelled"
    assert stop.verdict.phase == Phase.CANCELLING and stop.verdict.actions == ()
    assert cancel_suspend.cancelled("3 of 4").phase == Phase.CANCELLED


@pytest.mark.parametrize(
    ("run", "actions"),
    [
        (None, (CreateRunJob(),)),
        (job(active=2), (SetRunJobSuspended(True),)),
        (job(suspend=True), ()),
    ],
)
def test_suspend_creates_or_suspends_the_job_as_needed(
    run: dict[str, object] | None, actions: tuple[object, ...]
) -> None:
    obs = observed(batchjob(validated("Running"), suspend=True), at(1), job=run)
    verdict = cancel_suspend.suspend(obs)
    assert verdict is not None and verdict.phase == Phase.SUSPENDED
    assert verdict.actions == actions
