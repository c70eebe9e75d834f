"""Job conditions: their reasons and messages (the strings Kubernetes uses, which users and the
operator match on), and a pure setter that keeps ``lastTransitionTime`` when only the reason or
message changes."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"


@dataclass(frozen=True)
class Outcome:
    """Why a Job is finishing; becomes FailureTarget/SuccessCriteriaMet at once and the final
    Failed/Complete condition once the Job has no running pods left."""

    success: bool
    reason: str
    message: str


COMPLETIONS_REACHED = Outcome(
    True, "CompletionsReached", "Reached expected number of succeeded pods"
)
BACKOFF_LIMIT_EXCEEDED = Outcome(
    False, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
)
DEADLINE_EXCEEDED = Outcome(
    False, "DeadlineExceeded", "Job was active longer than specified deadline"
)
FAILED_INDEXES = Outcome(False, "FailedIndexes", "Job has failed indexes")
MAX_FAILED_INDEXES_EXCEEDED = Outcome(
    False,
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
)


def pod_failure_policy_outcome(message: str) -> Outcome:
    return Outcome(False, "PodFailurePolicy", message)


def get_condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == kind:
            return condition
    return None


def is_true(conditions: list[dict[str, Any]], kind: str) -> bool:
    condition = get_condition(conditions, kind)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    now: str,
) -> list[dict[str, Any]]:
    """A new list with ``kind`` set; the transition time moves only when the status does."""
    result = copy.deepcopy(conditions)
    current = get_condition(result, kind)
    if current is None:
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
        )
        return result
    if current.get("status") != status:
        current["lastTransitionTime"] = now
    if (current.get("status"), current.get("reason"), current.get("message")) != (
        status,
        reason,
        message,
    ):
        current["lastProbeTime"] = now
    current.update({"status": status, "reason": reason, "message": message})
    return result
