"""What a pass reads, per phase: the one fetch plan the I/O layer follows."""

from __future__ import annotations

from typing import Any

from llmbatch.controller.jobview import view_job
from llmbatch.controller.policy.fetch import FetchPlan, fetch_plan
from llmbatch.controller.validation import ValidationResult
from tests.controller.factories import (
    OK,
    at,
    batchjob,
    finalize_job,
    job,
    observed,
    plan_job,
    validated,
)


def plan_for(status: dict[str, Any] | None = None, **spec: Any) -> FetchPlan:
    return fetch_plan(observed(batchjob(status, **spec), at(1)))


def test_a_new_batch_validates_and_reads_its_job_only_once_the_checks_passed() -> None:
    plan = plan_for()
    assert plan.validate and not plan.finalize_job
    assert not plan.wants_run_job(None)
    assert not plan.wants_run_job(ValidationResult.failed("no input"))
    assert not plan.wants_run_job(ValidationResult.retry("S3 down"))
    assert plan.wants_run_job(OK)


def test_no_validation_when_it_cannot_change_the_outcome() -> None:
    assert not plan_for(cancel=True).validate  # cancelled before it started
    assert not plan_for(input="s3://llmbatch/in/").validate  # the spec check already fails
    assert plan_for(parallelism=0) == FetchPlan()  # the spec does not parse: nothing to read


def test_a_running_batch_reads_its_job_pods_and_progress() -> None:
    plan = plan_for(validated("Running"))
    assert not plan.validate and plan.wants_run_job(None)
    assert not plan.finalize_job
    running = view_job(job(active=2))
    assert plan.wants_pods(running) and plan.wants_progress(running)
    # Nothing to list or read before the Job exists, no pods once it completed.
    assert not plan.wants_pods(view_job(None)) and not plan.wants_progress(view_job(None))
    assert not plan.wants_pods(view_job(job(complete=True)))


def test_an_idle_suspended_batch_lists_no_pods_and_reads_no_progress() -> None:
    plan = plan_for(validated("Suspended"), suspend=True)
    suspended = view_job(job(suspend=True))
    assert not plan.wants_pods(suspended) and not plan.wants_progress(suspended)
    # Still running (the suspend is on its way), or cancelled while suspended: list them.
    assert plan.wants_pods(view_job(job(active=1)))
    cancelling = plan_for(validated("Suspended"), suspend=True, cancel=True)
    assert cancelling.wants_pods(suspended)


def test_a_stopping_batch_reads_the_finalize_job_and_then_the_manifest() -> None:
    for phase in ("Finalizing", "Cancelling"):
        plan = plan_for(validated(phase))
        assert plan.finalize_job and plan.wants_progress(view_job(job(suspend=True)))
        assert not plan.wants_manifest(view_job(finalize_job()))
        assert plan.wants_manifest(view_job(finalize_job(complete=True)))


def test_a_finished_batch_reads_its_jobs_only_for_the_ttl() -> None:
    done = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    assert plan_for(done) == FetchPlan()
    plan = plan_for(done, ttlSecondsAfterFinished=60)
    assert plan.wants_run_job(None) and plan.finalize_job
    assert not plan.wants_pods(view_job(job(active=1)))
    assert not plan.wants_progress(view_job(job(active=1)))
    assert not plan.wants_manifest(view_job(finalize_job(complete=True)))


def test_the_plan_job_is_read_until_the_run_job_exists_and_plan_json_once() -> None:
    plan = plan_for(validated("Queued"))
    none, running = view_job(None), view_job(job(active=2))
    assert plan.wants_plan_job(none) and not plan.wants_plan_job(running)
    planning, planned = view_job(plan_job(active=1)), view_job(plan_job(complete=True))
    # plan.json is looked for before the plan Job exists (written already?), when it
    # completed, and after a restart (the run Job exists); never while it runs, never twice.
    assert plan.wants_plan(False, none, none)
    assert not plan.wants_plan(False, none, planning)
    assert plan.wants_plan(False, none, planned)
    assert plan.wants_plan(False, running, none)
    assert not plan.wants_plan(True, running, planned)
    # Only a failed plan pod is worth listing (its termination message).
    assert not plan.wants_plan_pods(planning)
    assert plan.wants_plan_pods(view_job(plan_job(failed_reason="PodFailurePolicy")))
    # Not named yet: nothing of the plan to read.
    assert not plan_for().wants_plan(False, none, none)
