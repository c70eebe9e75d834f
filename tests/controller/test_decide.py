"""The composed state machine: terminal phases, idempotence, the forward-only guard."""

from __future__ import annotations

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller.decide import decide
from tests.controller.factories import (
    MANIFEST,
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


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Expired", "Cancelled"])
def test_terminal_phases_never_change(phase: str) -> None:
    status = validated(phase, completionTime="2026-01-01T12:10:00Z")
    decision = decide(
        observed(
            batchjob(status, cancel=True, suspend=True),
            at(100),
            job=job(active=2),
            pods=[pod(0)],
            progress=[progress(0, completed=3)],
        )
    )
    assert decision.phase == Phase(phase)
    assert decision.actions == []
    assert set(decision.patch) <= {"deadline", "observedGeneration", "timestamps"}


def test_same_observation_twice_writes_nothing_the_second_time() -> None:
    pods = [pod(0), pod(1)]
    first = decide(observed(batchjob(validated("Queued")), at(1), job=job(active=2), pods=pods))
    second = decide(observed(batchjob(first.wire), at(1.5), job=job(active=2), pods=pods))
    assert first.patch
    assert second.patch == {}
    assert second.events == []


def test_condition_time_kept_when_only_message_changes() -> None:
    first = decide(observed(batchjob(validated("Queued")), at(1), job=job(active=2), pods=[pod(0)]))
    second = decide(observed(batchjob(first.wire), at(2), job=job(active=2), pods=[pod(0), pod(1)]))
    running_1 = condition(first.wire, "Running")
    running_2 = condition(second.wire, "Running")
    assert running_1["message"] != running_2["message"]
    assert running_1["lastTransitionTime"] == running_2["lastTransitionTime"]


def test_a_refused_transition_keeps_the_phase_and_runs_no_action() -> None:
    # Cancelling only leads to Cancelled or Failed: a completed run Job does not change that.
    status = validated("Cancelling", reason="CancelRequested")
    decision = decide(
        observed(
            batchjob(status),
            at(4),
            job=job(complete=True),
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    assert decision.phase == Phase.CANCELLED
