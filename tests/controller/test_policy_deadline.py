"""Deadline and expiry: the shards stop at the deadline and finalize records the rest."""

from __future__ import annotations

import pytest

from llmbatch.api.documents import Manifest
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateFinalizeJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import deadline
from tests.controller.factories import (
    MANIFEST,
    MANIFEST_COUNTS,
    OK,
    at,
    batchjob,
    condition,
    finalize_job,
    job,
    observed,
    pod,
    progress,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_deadline_stops_shards_and_finalizes_expired() -> None:
    stopping = decide(
        observed(batchjob(validated("Running")), at(61), job=job(active=2), pods=[pod(0), pod(1)])
    )
    assert stopping.phase == Phase.FINALIZING
    assert stopping.wire["reason"] == "DeadlineExceeded"
    assert stopping.actions == [SetRunJobSuspended(True)]
    finalize = decide(observed(batchjob(stopping.wire), at(62), job=job(suspend=True)))
    assert finalize.actions == [CreateFinalizeJob("expired")]
    assert finalize.wire["reason"] == "DeadlineExceeded"
    done = decide(
        observed(
            batchjob(finalize.wire),
            at(63),
            job=job(suspend=True),
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    assert done.phase == Phase.EXPIRED
    assert condition(done.wire, "Expired")["status"] == "True"
    assert done.events[0].type == "Warning"
    assert done.wire["timestamps"]["expiredAt"]


def test_runner_exit_43_expires_even_if_the_operator_clock_is_behind() -> None:
    failed = job(failed_reason="MaxFailedIndexesExceeded", failed_indexes="0")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(59),
            job=failed,
            pods=[pod(0, "Failed", exit_code=43), pod(1, "Succeeded", 0)],
        )
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


def test_suspended_batch_expires_too() -> None:
    decision = decide(
        observed(batchjob(validated("Suspended"), suspend=True), at(61), job=job(suspend=True))
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


def test_validated_after_the_deadline_finalizes_expired() -> None:
    decision = decide(observed(batchjob(), at(61), validation=OK))
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("expired")]


def test_all_shards_done_before_the_operator_saw_the_deadline_still_succeeds() -> None:
    decision = decide(
        observed(
            batchjob(validated("Running")), at(61), job=job(complete=True, completed_indexes="0-1")
        )
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == [CreateFinalizeJob("none")]


@pytest.mark.parametrize(
    ("unanswered", "phase", "reason", "condition_type"),
    [
        # finalize recorded no batch_expired line: every request has its result.
        (0, Phase.SUCCEEDED, "Finalized", "Complete"),
        (3, Phase.EXPIRED, "DeadlineExceeded", "Expired"),
        # A manifest of a runner that did not count them: the old outcome.
        (None, Phase.EXPIRED, "DeadlineExceeded", "Expired"),
    ],
)
def test_a_late_batch_is_expired_only_if_finalize_recorded_an_expired_line(
    unanswered: int | None, phase: Phase, reason: str, condition_type: str
) -> None:
    status = validated("Finalizing", reason="DeadlineExceeded", message="stopping")
    manifest = MANIFEST.model_copy(update={"reason": "expired", "unanswered": unanswered})
    done = decide(
        observed(
            batchjob(status),
            at(63),
            job=job(suspend=True),
            finalize=finalize_job(complete=True),
            manifest=manifest,
        )
    )
    assert (done.phase, done.wire["reason"]) == (phase, reason)
    assert condition(done.wire, condition_type)["status"] == "True"
    assert done.wire["requestCounts"] == MANIFEST_COUNTS
    assert done.wire["message"].endswith("18 of 20 requests completed, 2 failed")
    if phase == Phase.SUCCEEDED:
        assert done.wire["message"].startswith("every request has its result (the deadline")
        assert done.wire["timestamps"]["completedAt"]
        assert "expiredAt" not in done.wire["timestamps"]
        assert done.events[0].type == "Normal"
    else:
        assert done.wire["message"].startswith("the deadline passed; ")
        assert done.wire["timestamps"]["expiredAt"]


def test_finalized_late_reads_only_the_unanswered_count() -> None:
    assert deadline.finalized_late(None, "finalized").phase == Phase.EXPIRED
    answered = Manifest(reason="expired", unanswered=0)
    assert deadline.finalized_late(answered, "x").phase == Phase.SUCCEEDED
    assert deadline.finalized_late(Manifest(unanswered=1), "x").phase == Phase.EXPIRED


def test_at_the_deadline_shards_get_a_grace_to_stop_by_themselves() -> None:
    body = batchjob(validated("Running"))
    early = decide(observed(body, at(60.25), job=job(active=2), pods=[pod(0), pod(1)]))
    assert early.phase == Phase.FINALIZING and early.wire["reason"] == "DeadlineExceeded"
    assert early.actions == []
    assert "waiting for 2 shard pod(s) to stop" in early.wire["message"]
    late = decide(observed(batchjob(early.wire), at(61), job=job(active=2), pods=[pod(0)]))
    assert late.actions == [SetRunJobSuspended(True)]
    assert late.wire["message"].count("waiting") == 1


def test_a_shard_stopped_at_the_deadline_does_not_stop_the_others() -> None:
    running = job(active=1, failed_indexes="0")
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(59.9),
            job=running,
            pods=[pod(0, "Failed", exit_code=43), pod(1)],
        )
    )
    assert decision.phase == Phase.FINALIZING
    assert decision.actions == []


# --- The policy alone ---------------------------------------------------------------------------


def test_deadline_is_creation_plus_the_completion_window() -> None:
    obs = observed(batchjob(completionWindow="90m"), at(0))
    assert obs.deadline == at(90)
    assert deadline.seconds_to_deadline(observed(batchjob(), at(59))) == 60.0
    with pytest.raises(ValueError, match="creationTimestamp"):
        deadline.deadline_of({}, obs.checked_spec)


def test_no_expiry_before_the_deadline_without_a_shard_saying_so() -> None:
    assert deadline.expiry(observed(batchjob(validated("Running")), at(59))) is None
    expired_shard = observed(
        batchjob(validated("Running")), at(59), progress=[progress(0, state="expired")]
    )
    stop = deadline.expiry(expired_shard)
    assert stop is not None and stop.mode == "expired"
    assert stop.verdict.reason == "DeadlineExceeded"


def test_shards_get_the_grace_only_while_their_pods_live_and_only_when_expiring() -> None:
    live = observed(batchjob(validated("Running")), at(60.5), job=job(active=2), pods=[pod(0)])
    assert deadline.shards_stop_themselves(live, "expired")
    assert not deadline.shards_stop_themselves(live, "cancelled")
    late = observed(batchjob(validated("Running")), at(61), job=job(active=2), pods=[pod(0)])
    assert not deadline.shards_stop_themselves(late, "expired")
