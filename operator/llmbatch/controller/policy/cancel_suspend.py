"""Cancel and suspend: what the user asks for with spec.cancel and spec.suspend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action, CreateRunJob, SetRunJobSuspended
from llmbatch.controller.policy.verdict import Stop, Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def cancel_before_start(obs: Observation) -> Verdict | None:
    """Cancelled before validation named the Jobs: nothing ran, nothing to finalize."""
    if not obs.checked_spec.cancel:
        return None
    return Verdict(
        Phase.CANCELLED,
        Reason.CANCEL_REQUESTED,
        "cancelled before the batch started; no request ran",
    )


def cancel(obs: Observation) -> Stop | None:
    """spec.cancel: stop the shards, then finalize what they finished."""
    if not obs.checked_spec.cancel:
        return None
    return Stop(
        "cancelled",
        Verdict(
            Phase.CANCELLING,
            Reason.CANCEL_REQUESTED,
            "spec.cancel is true: stopping shards; finished requests are kept",
        ),
    )


def cancelled(summary: str) -> Verdict:
    """Finalize ran after a cancel."""
    return Verdict(Phase.CANCELLED, Reason.CANCEL_REQUESTED, f"cancelled; {summary}")


def suspend(obs: Observation) -> Verdict | None:
    """spec.suspend: the Job exists, suspended (created so if need be)."""
    if not obs.checked_spec.suspend:
        return None
    actions: tuple[Action, ...] = ()
    if not obs.run.exists:
        actions = (CreateRunJob(),)
    elif not obs.run.suspended:
        actions = (SetRunJobSuspended(True),)
    return Verdict(
        Phase.SUSPENDED,
        Reason.SUSPEND_REQUESTED,
        "spec.suspend is true: shards are stopped; clear it to resume",
        actions,
    )
