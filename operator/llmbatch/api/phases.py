"""The BatchJob lifecycle: phases and their OpenAI batch status names."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    VALIDATING = "Validating"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    EXPIRED = "Expired"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    SUSPENDED = "Suspended"

    def is_terminal(self) -> bool:
        """True for phases a BatchJob never leaves."""
        return self in _TERMINAL

    def openai_status(self) -> str:
        """The status name the OpenAI Batch API uses for this phase."""
        return _OPENAI_STATUS[self]


_TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.EXPIRED, Phase.CANCELLED})

_OPENAI_STATUS: dict[Phase, str] = {
    Phase.VALIDATING: "validating",
    Phase.QUEUED: "in_progress",
    Phase.RUNNING: "in_progress",
    Phase.SUSPENDED: "in_progress",
    Phase.FINALIZING: "finalizing",
    Phase.SUCCEEDED: "completed",
    Phase.FAILED: "failed",
    Phase.EXPIRED: "expired",
    Phase.CANCELLING: "cancelling",
    Phase.CANCELLED: "cancelled",
}
