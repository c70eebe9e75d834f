"""What the status says about the phase a verdict put the batch in: phase, reason and
message, the OpenAI timestamps, start and completion times, and the phase's conditions."""

from __future__ import annotations

from datetime import datetime

from llmbatch.api.batchjob import BatchJobStatus, Timestamps
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.policy.verdict import Verdict
from llmbatch.controller.status_conditions import (
    ConditionStatus,
    ConditionUpdate,
    find_condition,
)

_TERMINAL_CONDITION = {
    Phase.SUCCEEDED: ConditionType.COMPLETE,
    Phase.FAILED: ConditionType.FAILED,
    Phase.EXPIRED: ConditionType.EXPIRED,
    Phase.CANCELLED: ConditionType.CANCELLED,
}
# OpenAI batch timestamps (status.timestamps, by field), set once on entering the phase.
TIMESTAMP_OF = {
    Phase.QUEUED: "in_progress_at",
    Phase.RUNNING: "in_progress_at",
    Phase.SUSPENDED: "in_progress_at",
    Phase.FINALIZING: "finalizing_at",
    Phase.SUCCEEDED: "completed_at",
    Phase.FAILED: "failed_at",
    Phase.EXPIRED: "expired_at",
    Phase.CANCELLING: "cancelling_at",
    Phase.CANCELLED: "cancelled_at",
}


def stamp_once(timestamps: Timestamps, field: str, now: datetime) -> None:
    if getattr(timestamps, field) is None:
        setattr(timestamps, field, now)


def record_phase(status: BatchJobStatus, verdict: Verdict, now: datetime) -> None:
    status.phase = verdict.phase
    status.reason = str(verdict.reason)
    status.message = verdict.message
    status.timestamps = status.timestamps or Timestamps()
    field = TIMESTAMP_OF.get(verdict.phase)
    if field is not None:
        stamp_once(status.timestamps, field, now)
    if verdict.phase == Phase.RUNNING and status.start_time is None:
        status.start_time = now
    if verdict.phase.is_terminal():
        status.completion_time = status.completion_time or now
        status.eta = None


def phase_conditions(status: BatchJobStatus, verdict: Verdict) -> list[ConditionUpdate]:
    """Running (once the Jobs are named), Suspended (once it ever was), and the terminal
    outcome's condition."""
    updates: list[ConditionUpdate] = []
    reason, message = str(verdict.reason), verdict.message
    if status.job_name:
        running: ConditionStatus = "True" if verdict.phase == Phase.RUNNING else "False"
        updates.append(ConditionUpdate(ConditionType.RUNNING, running, reason, message))
    if verdict.phase == Phase.SUSPENDED:
        updates.append(ConditionUpdate(ConditionType.SUSPENDED, "True", reason, message))
    elif find_condition(status.conditions, ConditionType.SUSPENDED) is not None:
        updates.append(
            ConditionUpdate(
                ConditionType.SUSPENDED, "False", Reason.RESUMED, "spec.suspend is false"
            )
        )
    terminal = _TERMINAL_CONDITION.get(verdict.phase)
    if terminal is not None:
        updates.append(ConditionUpdate(terminal, "True", reason, message))
    return updates
