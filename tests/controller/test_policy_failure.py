"""Failure and retries: a shard out of retries or with a permanent error fails the batch."""

from __future__ import annotations

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    SetRunJobSuspended,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import failure
from tests.controller.factories import (
    at,
    batchjob,
    finalize_job,
    job,
    observed,
    pod,
    progress,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_backoff_limit_exceeded() -> None:
    failed = job(failed_reason="FailedIndexes", failed_indexes="1")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(5),
            job=failed,
            pods=[pod(1, "Failed", exit_code=1)] * 4,
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 1" in decision.wire["message"]
    assert decision.actions == []


def test_permanent_error_from_exit_code_42() -> None:
    failed = job(failed_reason="MaxFailedIndexesExceeded", failed_indexes="0")
    decision = decide(
        observed(
            batchjob(validated("Running")), at(5), job=failed, pods=[pod(0, "Failed", exit_code=42)]
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "PermanentError"


def test_a_failed_progress_document_is_not_a_permanent_error() -> None:
    # The runner writes state "failed" on any exception, retryable ones too: only the exit
    # code 42 in a pod's terminated state says permanent. With the pods gone, the Job's own
    # words stand (out of retries).
    failed = job(failed_reason="FailedIndexes", failed_indexes="0")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(5),
            job=failed,
            progress=[progress(0, state="failed")],
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "BackoffLimitExceeded"


def test_retryable_failures_out_of_retries_are_not_permanent_whatever_progress_says() -> None:
    # Shard 1 spent its retries (exit 1, each attempt wrote "failed"); an extra shard's
    # document (shard 2) says "failed" too: still BackoffLimitExceeded.
    failed = job(failed_reason="FailedIndexes", failed_indexes="1", completed_indexes="0")
    decision = decide(
        observed(
            batchjob(validated("Running"), parallelism=2, maxParallelism=4),
            at(5),
            job=failed,
            pods=[pod(1, "Failed", exit_code=1)] * 4,
            progress=[progress(i, state="failed" if i else "done") for i in range(3)],
        )
    )
    assert decision.wire["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 1" in decision.wire["message"]


def test_finalize_failure() -> None:
    status = validated("Finalizing", reason="ShardsComplete")
    decision = decide(
        observed(
            batchjob(status), at(7), job=job(complete=True), finalize=finalize_job(failed=True)
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "FinalizeFailed"
    assert "parts are kept" in decision.wire["message"]


def test_a_permanent_error_on_one_shard_fails_the_batch_and_stops_the_others() -> None:
    running = job(active=1, failed_indexes="1")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(5),
            job=running,
            pods=[pod(0), pod(1, "Failed", exit_code=42)],
        )
    )
    assert decision.phase == Phase.FAILED
    assert decision.wire["reason"] == "PermanentError"
    assert decision.actions == [SetRunJobSuspended(True)]


def test_an_index_out_of_retries_fails_the_batch_while_others_run() -> None:
    running = job(active=1, failed_indexes="1")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(5),
            job=running,
            pods=[pod(0), pod(1, "Failed", exit_code=137)],
        )
    )
    assert decision.wire["reason"] == "BackoffLimitExceeded"
    assert "shard(s) 1" in decision.wire["message"]
    assert decision.actions == [SetRunJobSuspended(True)]


# --- The policy alone ---------------------------------------------------------------------------


def test_no_failed_index_no_verdict() -> None:
    obs = observed(batchjob(validated("Running")), at(5), job=job(active=2), pods=[pod(0)])
    assert failure.shard_failure(obs) is None


def test_a_finished_failed_job_is_not_suspended_again() -> None:
    failed = job(failed_reason="FailedIndexes", failed_indexes="0-11")
    verdict = failure.shard_failure(observed(batchjob(validated("Running")), at(5), job=failed))
    assert verdict is not None and verdict.actions == ()
    assert "shard(s) 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more failed" in verdict.message
    assert "spec.maxRetries=3 times (FailedIndexes)" in verdict.message


def test_finalize_failure_names_the_parts_and_the_job() -> None:
    obs = observed(batchjob(validated("Finalizing")), at(7), finalize=finalize_job(failed=True))
    verdict = failure.finalize_failed(obs)
    assert "parts are kept under s3://llmbatch/out/demo/parts/" in verdict.message
    assert verdict.message.endswith("see kubectl logs job/demo-finalize")
