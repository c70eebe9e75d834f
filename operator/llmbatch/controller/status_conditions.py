"""Pure helpers for ``status.conditions`` (a list keyed by ``type``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from llmbatch.api.batchjob import Condition

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    """A condition a policy wants set; the time and generation are the pass's."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def find_condition(conditions: Sequence[Condition], ctype: str) -> Condition | None:
    for condition in conditions:
        if condition.type == ctype:
            return condition
    return None


def set_condition(
    conditions: Sequence[Condition],
    update: ConditionUpdate,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """A new list with the condition set. ``lastTransitionTime`` moves only when the status
    flips: a new reason or message for the same status is not a transition."""
    ctype = str(update.type)
    result: list[Condition] = []
    found = False
    for existing in conditions:
        if existing.type != ctype:
            result.append(existing.model_copy())
            continue
        found = True
        changed = existing.status != update.status
        since = now if changed else (existing.last_transition_time or now)
        result.append(_condition(update, since, generation))
    if not found:
        result.append(_condition(update, now, generation))
    return result


def _condition(update: ConditionUpdate, since: datetime, generation: int | None) -> Condition:
    return Condition(
        type=str(update.type),
        status=update.status,
        reason=str(update.reason),
        message=update.message,
        last_transition_time=since,
        observed_generation=generation,
    )


def condition_is_true(conditions: Sequence[Condition], ctype: str) -> bool:
    found = find_condition(conditions, ctype)
    return found is not None and found.status == "True"
