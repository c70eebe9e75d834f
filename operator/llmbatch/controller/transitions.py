"""Which phase may follow which: the lifecycle only moves forward.

A restarted operator, a stale watch event or a late progress object can never move a
BatchJob back (say from Finalizing to Running): ``compute_status`` keeps the current phase
when the table does not allow the move.
"""

from __future__ import annotations

from llmbatch.api.phases import Phase

ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.VALIDATING: frozenset(
        {
            Phase.QUEUED,
            Phase.SUSPENDED,
            Phase.FINALIZING,  # validated after the deadline already passed: finalize expired
            Phase.CANCELLING,
            Phase.CANCELLED,  # cancelled before anything ran
            Phase.FAILED,
        }
    ),
    Phase.QUEUED: frozenset(
        {Phase.RUNNING, Phase.SUSPENDED, Phase.FINALIZING, Phase.CANCELLING, Phase.FAILED}
    ),
    Phase.RUNNING: frozenset({Phase.SUSPENDED, Phase.FINALIZING, Phase.CANCELLING, Phase.FAILED}),
    Phase.SUSPENDED: frozenset(
        {Phase.QUEUED, Phase.RUNNING, Phase.FINALIZING, Phase.CANCELLING, Phase.FAILED}
    ),
    Phase.FINALIZING: frozenset({Phase.SUCCEEDED, Phase.EXPIRED, Phase.FAILED}),
    Phase.CANCELLING: frozenset({Phase.CANCELLED, Phase.FAILED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.EXPIRED: frozenset(),
    Phase.CANCELLED: frozenset(),
}


def is_allowed(current: Phase, target: Phase) -> bool:
    """Staying in a phase is always allowed (only its reason or message may change)."""
    return current == target or target in ALLOWED[current]
