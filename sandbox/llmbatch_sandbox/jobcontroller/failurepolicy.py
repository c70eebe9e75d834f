"""``spec.podFailurePolicy`` of batch/v1 Jobs: which rule, if any, a failed pod matches.

Mirrors the Kubernetes rules: rules are tried in order and the first match wins; an
``onExitCodes`` requirement looks only at terminated containers with a non-zero exit code
(optionally only the named container); ``onPodConditions`` patterns match a pod condition of
that type whose status equals the pattern's (default ``True``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["FailJob", "FailIndex", "Ignore", "Count"]
_ACTIONS: tuple[Action, ...] = ("FailJob", "FailIndex", "Ignore", "Count")


@dataclass(frozen=True)
class PolicyMatch:
    """The rule a failed pod matched: its action, position and a message in the words the Job
    controller uses for conditions."""

    action: Action
    rule_index: int
    message: str


def match_pod_failure_policy(
    policy: dict[str, Any] | None, pod: dict[str, Any]
) -> PolicyMatch | None:
    """The first rule of ``policy`` that matches the failed ``pod``, or None (default handling:
    the failure counts towards the backoff limits)."""
    if not policy:
        return None
    pod_ref = f"{pod['metadata'].get('namespace', '')}/{pod['metadata'].get('name', '')}"
    for position, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if action not in _ACTIONS:
            continue
        on_exit = rule.get("onExitCodes")
        if on_exit:
            container = _matching_container(pod, on_exit)
            if container is not None:
                code = container["state"]["terminated"].get("exitCode")
                return PolicyMatch(
                    action=action,
                    rule_index=position,
                    message=(
                        f"Container {container.get('name')} for pod {pod_ref} failed with exit "
                        f"code {code} matching {action} rule at index {position}"
                    ),
                )
            continue
        patterns = rule.get("onPodConditions") or []
        condition = _matching_condition(pod, patterns)
        if condition is not None:
            return PolicyMatch(
                action=action,
                rule_index=position,
                message=(
                    f"Pod {pod_ref} has condition {condition} matching {action} rule at "
                    f"index {position}"
                ),
            )
    return None


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def _matching_container(pod: dict[str, Any], requirement: dict[str, Any]) -> dict[str, Any] | None:
    wanted_name = requirement.get("containerName")
    operator = requirement.get("operator")
    values = {int(v) for v in requirement.get("values") or []}
    for status in _container_statuses(pod):
        terminated = (status.get("state") or {}).get("terminated")
        if not terminated:
            continue
        if wanted_name is not None and status.get("name") != wanted_name:
            continue
        code = int(terminated.get("exitCode", 0))
        if code == 0:
            continue  # Kubernetes never matches a successful container
        if (operator == "In" and code in values) or (operator == "NotIn" and code not in values):
            return status
    return None


def _matching_condition(pod: dict[str, Any], patterns: list[dict[str, Any]]) -> str | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    for pattern in patterns:
        wanted_status = pattern.get("status", "True")
        for condition in conditions:
            if condition.get("type") == pattern.get("type") and (
                condition.get("status") == wanted_status
            ):
                return str(condition.get("type"))
    return None
