"""Validation: the spec checks and the I/O checks decide whether the batch may run."""

from __future__ import annotations

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreatePlanJob,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import validation
from llmbatch.controller.validation import ValidationResult
from tests.controller.factories import (
    OK,
    at,
    batchjob,
    condition,
    observed,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_new_batchjob_is_validating_until_checks_ran() -> None:
    decision = decide(observed(batchjob(), at(0)))
    assert decision.phase == Phase.VALIDATING
    assert decision.actions == []
    assert decision.transition == (None, "Validating")
    assert decision.wire["deadline"] == "2026-01-01T13:00:00Z"
    assert decision.wire["timestamps"]["createdAt"] == "2026-01-01T12:00:00Z"
    assert "jobName" not in decision.wire


def test_validation_passed_writes_names_and_creates_the_job() -> None:
    decision = decide(observed(batchjob(), at(0), validation=OK))
    assert decision.phase == Phase.QUEUED
    assert decision.wire["jobName"] == "demo-run"
    assert decision.wire["finalizeJobName"] == "demo-finalize"
    assert decision.wire["planJobName"] == "demo-plan"
    # The plan step comes first; the run Job waits for its plan.
    assert decision.actions == [CreatePlanJob()]
    assert condition(decision.wire, "Validated")["status"] == "True"
    assert decision.wire["timestamps"]["inProgressAt"] == "2026-01-01T12:00:00Z"
    # Names are part of the same patch that precedes creation.
    assert decision.patch["jobName"] == "demo-run"


def test_validation_failed_is_terminal_with_a_message() -> None:
    failed = ValidationResult.failed("input object s3://llmbatch/in/demo.jsonl does not exist")
    decision = decide(observed(batchjob(), at(0), validation=failed))
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "ValidationFailed"
    assert "does not exist" in decision.wire["message"]
    assert condition(decision.wire, "Validated")["status"] == "False"
    assert condition(decision.wire, "Failed")["reason"] == "ValidationFailed"
    assert decision.actions == []
    assert decision.events[0].type == "Normal" or decision.events[0].reason == "ValidationFailed"
    assert decision.wire["timestamps"]["failedAt"]


def test_transient_validation_problem_retries_without_failing() -> None:
    retry = ValidationResult.retry("S3 endpoint unreachable")
    decision = decide(observed(batchjob(), at(0), validation=retry))
    assert decision.phase == Phase.VALIDATING
    assert condition(decision.wire, "Validated")["status"] == "Unknown"
    assert decision.actions == []


def test_bad_model_source_fails_validation_without_io() -> None:
    body = batchjob(model={"name": "m", "source": "hf://"})
    decision = decide(observed(body, at(0), validation=OK))
    assert decision.phase == Phase.FAILED
    assert "spec.model.source" in decision.wire["message"]


# --- The policy alone ---------------------------------------------------------------------------


def test_verdict_is_none_once_the_checks_passed() -> None:
    assert validation.verdict(observed(batchjob(), at(0), validation=OK)) is None


def test_pending_checks_keep_validating_without_a_condition() -> None:
    verdict = validation.verdict(observed(batchjob(), at(0)))
    assert verdict is not None and verdict.phase == Phase.VALIDATING
    assert verdict.conditions == () and verdict.actions == ()


def test_a_transient_problem_sets_validated_unknown() -> None:
    retry = ValidationResult.retry("S3 endpoint unreachable")
    verdict = validation.verdict(observed(batchjob(), at(0), validation=retry))
    assert verdict is not None and verdict.phase == Phase.VALIDATING
    assert verdict.message == "will retry: S3 endpoint unreachable"
    assert [(c.type, c.status, c.reason) for c in verdict.conditions] == [
        ("Validated", "Unknown", "CheckPending")
    ]


def test_spec_problems_fail_even_when_the_io_checks_passed() -> None:
    body = batchjob(input="s3://llmbatch/in/")
    verdict = validation.verdict(observed(body, at(0), validation=OK))
    assert verdict is not None and verdict.phase == Phase.FAILED
    assert "names a prefix" in verdict.message
    assert [(c.type, c.status, c.message) for c in verdict.conditions] == [
        ("Validated", "False", verdict.message)
    ]


def test_a_spec_that_does_not_parse_fails_without_a_validated_condition() -> None:
    obs = observed(batchjob(parallelism=0), at(0))
    assert obs.spec is None
    verdict = validation.invalid_spec(obs)
    assert verdict.phase == Phase.FAILED and "spec.parallelism" in verdict.message
    assert verdict.conditions == ()
    assert decide(obs).wire["reason"] == "ValidationFailed"


def test_passed_condition_carries_the_checks_message() -> None:
    update = validation.passed(observed(batchjob(), at(0), validation=OK))
    assert (update.type, update.status, update.message) == ("Validated", "True", OK.message)
