"""TTL after finished: the Jobs are deleted, the BatchJob and results stay."""

from __future__ import annotations

from llmbatch.controller.actions import (
    DeleteJobs,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import ttl
from tests.controller.factories import (
    at,
    batchjob,
    finalize_job,
    job,
    observed,
    plan_job,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_ttl_after_finished_deletes_jobs() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, ttlSecondsAfterFinished=60)
    assert decide(observed(body, at(10.5), job=job(complete=True))).actions == []
    assert decide(observed(body, at(11), job=job(complete=True))).actions == [DeleteJobs()]
    assert decide(observed(body, at(12))).actions == []


def test_ttl_deletes_the_plan_job_of_a_batch_that_failed_planning() -> None:
    status = validated("Failed", reason="PlanFailed", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, ttlSecondsAfterFinished=60)
    failed = plan_job(failed_reason="PodFailurePolicy")
    assert decide(observed(body, at(11), plan_step=failed)).actions == [DeleteJobs()]


# --- The policy alone ---------------------------------------------------------------------------


def test_seconds_to_expiry_counts_from_completion_time() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    obs = observed(batchjob(status, ttlSecondsAfterFinished=60), at(10.5))
    assert ttl.seconds_to_expiry(obs, obs.status) == 30.0
    assert ttl.seconds_to_expiry(observed(batchjob(status), at(10.5)), obs.status) is None


def test_only_existing_jobs_are_deleted() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, ttlSecondsAfterFinished=0)
    assert ttl.expired_jobs(observed(body, at(11))) == ()
    assert ttl.expired_jobs(observed(body, at(11), finalize=finalize_job())) == (DeleteJobs(),)
