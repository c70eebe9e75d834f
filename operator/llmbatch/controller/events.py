"""The Events a pass posts once its status write succeeded: a phase transition, the ETA
crossing the deadline either way, the plan step starting and finishing, and a deleted run Job
being created again."""

from __future__ import annotations

from collections.abc import Sequence

from llmbatch.api.batchjob import BatchJobStatus, Condition
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import format_time
from llmbatch.controller.actions import EventSpec
from llmbatch.controller.status_conditions import find_condition

# The Planned condition's moves that get an Event: the plan step started, and it finished.
# Its failure is the transition to Failed (reason PlanFailed), an Event already.
_PLAN_EVENTS = {"Unknown": "PlanStarted", "True": "Planned"}


def transition_event(before: Phase | None, status: BatchJobStatus) -> EventSpec | None:
    phase = status.phase
    if phase is None or phase == before:
        return None
    warn = phase in (Phase.FAILED, Phase.EXPIRED)
    return EventSpec(
        "Warning" if warn else "Normal",
        status.reason or phase,
        f"{phase.value}: {status.message}",
    )


def recreated_event(before: BatchJobStatus, after: BatchJobStatus) -> EventSpec | None:
    """A Warning when the run Job (or RayJob) was found deleted under a running batch: once, on
    the pass that creates it again (the phase stays Running, so no transition says so)."""
    if after.reason != Reason.JOB_RECREATED or before.reason == Reason.JOB_RECREATED:
        return None
    return EventSpec("Warning", Reason.JOB_RECREATED, after.message or "")


def sla_event(at_risk: bool, status: BatchJobStatus) -> EventSpec:
    sla = find_condition(status.conditions, ConditionType.SLA_AT_RISK)
    eta = format_time(status.eta) if status.eta is not None else "unknown"
    return EventSpec(
        "Warning" if at_risk else "Normal",
        "SLAAtRisk" if at_risk else "SLAWithinDeadline",
        f"ETA {eta}: {sla.message if sla is not None else ''}",
    )


def plan_event(before: Sequence[Condition], after: BatchJobStatus) -> EventSpec | None:
    new = find_condition(after.conditions, ConditionType.PLANNED)
    if new is None or new.status not in _PLAN_EVENTS:
        return None
    old = find_condition(before, ConditionType.PLANNED)
    if old is not None and old.status == new.status:
        return None
    return EventSpec("Normal", _PLAN_EVENTS[new.status], new.message)
