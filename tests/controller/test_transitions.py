"""The allowed-transitions table: forward only, terminal phases are final."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller.status_conditions import ConditionUpdate, set_condition
from llmbatch.controller.transitions import ALLOWED, is_allowed

ORDER = {
    Phase.VALIDATING: 0,
    Phase.QUEUED: 1,
    Phase.SUSPENDED: 1,
    Phase.RUNNING: 2,
    Phase.CANCELLING: 3,
    Phase.FINALIZING: 3,
    Phase.SUCCEEDED: 4,
    Phase.FAILED: 4,
    Phase.EXPIRED: 4,
    Phase.CANCELLED: 4,
}


def test_every_phase_has_a_row() -> None:
    assert set(ALLOWED) == set(Phase)


@pytest.mark.parametrize("phase", [p for p in Phase if p.is_terminal()])
def test_terminal_phases_allow_nothing(phase: Phase) -> None:
    assert all(not is_allowed(phase, other) for other in Phase if other != phase)


@pytest.mark.parametrize(("src", "dst"), [(s, d) for s, row in ALLOWED.items() for d in row])
def test_moves_go_forward_except_suspend_and_resume(src: Phase, dst: Phase) -> None:
    if {src, dst} <= {Phase.QUEUED, Phase.RUNNING, Phase.SUSPENDED}:
        return  # suspend/resume moves sideways between the running phases
    assert ORDER[dst] > ORDER[src]


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (Phase.RUNNING, Phase.QUEUED),
        (Phase.FINALIZING, Phase.RUNNING),
        (Phase.CANCELLING, Phase.RUNNING),
        (Phase.FINALIZING, Phase.CANCELLING),
        (Phase.QUEUED, Phase.VALIDATING),
        (Phase.SUCCEEDED, Phase.FAILED),
    ],
)
def test_backward_moves_are_refused(src: Phase, dst: Phase) -> None:
    assert not is_allowed(src, dst)


def test_set_condition_keeps_transition_time_unless_status_flips() -> None:
    t1, t2, t3, t4 = (datetime(2026, 1, 1, 12, minute, tzinfo=UTC) for minute in range(1, 5))
    first = set_condition([], ConditionUpdate("Running", "False", "PodsPending", "a"), t1)
    second = set_condition(first, ConditionUpdate("Running", "False", "PodsPending", "b"), t2)
    third = set_condition(second, ConditionUpdate("Running", "True", "PodsRunning", "c"), t3)
    assert second[0].last_transition_time == t1 and second[0].message == "b"
    assert third[0].last_transition_time == t3
    other = set_condition(
        third, ConditionUpdate("Validated", "True", "ValidationPassed", ""), t4, 3
    )
    assert [c.type for c in other] == ["Running", "Validated"]
    assert other[1].observed_generation == 3
