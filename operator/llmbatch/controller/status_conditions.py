"""Pure helpers for ``status.conditions`` (a list keyed by ``type``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def find_condition(conditions: Sequence[Mapping[str, Any]], ctype: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == ctype:
            return condition
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with the condition set. ``lastTransitionTime`` moves only when the status
    flips: a new reason or message for the same status is not a transition."""
    ctype, reason = str(ctype), str(reason)
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions:
        if existing.get("type") != ctype:
            result.append(dict(existing))
            continue
        found = True
        changed = existing.get("status") != status
        updated: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now if changed else existing.get("lastTransitionTime", now),
        }
        if generation is not None:
            updated["observedGeneration"] = generation
        result.append(updated)
    if not found:
        new: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        result.append(new)
    return result


def condition_is_true(conditions: Sequence[Mapping[str, Any]], ctype: str) -> bool:
    found = find_condition(conditions, ctype)
    return found is not None and found.get("status") == "True"
