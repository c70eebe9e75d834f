"""What a policy returns."""

from __future__ import annotations

from dataclasses import dataclass

from llmbatch.api.documents import FinalizeReason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action
from llmbatch.controller.status_conditions import ConditionUpdate


@dataclass(frozen=True)
class Verdict:
    """The phase the batch should be in, why (reason and message for status and events), the
    actions that move the world there, and conditions that hold whatever the phase guard
    decides."""

    phase: Phase
    reason: str
    message: str
    actions: tuple[Action, ...] = ()
    conditions: tuple[ConditionUpdate, ...] = ()


@dataclass(frozen=True)
class Stop:
    """The shards stop (or have finished): once none of them runs, finalize with ``mode``."""

    mode: FinalizeReason
    verdict: Verdict
