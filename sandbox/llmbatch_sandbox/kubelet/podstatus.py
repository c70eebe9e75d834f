"""Pod status as a kubelet reports it: phase, conditions and one container status, built by
pure functions from what the kubelet knows about the local process."""

from __future__ import annotations

from typing import Any

from llmbatch_sandbox.kubeapi import JsonObject

HOST_IP = "127.0.0.1"
CONDITION_ORDER = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
    "DisruptionTarget",
)


def set_condition(
    status: JsonObject, kind: str, value: str, now: str, reason: str = "", message: str = ""
) -> None:
    """Set a pod condition in place; the transition time moves only when the value does."""
    conditions: list[JsonObject] = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == kind:
            if condition.get("status") != value:
                condition["lastTransitionTime"] = now
            condition["status"] = value
            _reason(condition, reason, message)
            break
    else:
        condition = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": now,
        }
        _reason(condition, reason, message)
        conditions.append(condition)
    conditions.sort(
        key=lambda c: CONDITION_ORDER.index(c["type"]) if c["type"] in CONDITION_ORDER else 99
    )


def _reason(condition: JsonObject, reason: str, message: str) -> None:
    for key, value in (("reason", reason), ("message", message)):
        if value:
            condition[key] = value
        else:
            condition.pop(key, None)


def container_status(
    container: JsonObject, state: JsonObject, ready: bool = False, container_id: str = ""
) -> JsonObject:
    image = str(container.get("image") or "")
    status: JsonObject = {
        "name": container.get("name", ""),
        "image": image,
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    }
    if container_id:
        status["containerID"] = container_id
    return status


def qos_class(pod: JsonObject) -> str:
    """BestEffort without requests or limits, Guaranteed when every container's cpu and memory
    limits equal their requests, Burstable otherwise."""
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        requests = r.get("requests") or limits
        for name in ("cpu", "memory"):
            if name not in limits or str(requests.get(name)) != str(limits.get(name)):
                return "Burstable"
    return "Guaranteed"


def initial_status(pod: JsonObject, now: str) -> JsonObject:
    """The fields a kubelet sets when it admits a pod (conditions are kept by the caller)."""
    return {
        "phase": "Pending",
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "qosClass": qos_class(pod),
        "startTime": now,
    }


def first_container(pod: JsonObject) -> JsonObject:
    containers: list[JsonObject] = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0]


def waiting(reason: str, message: str = "") -> JsonObject:
    body: dict[str, Any] = {"reason": reason}
    if message:
        body["message"] = message
    return {"waiting": body}


def terminated(
    exit_code: int,
    reason: str,
    started_at: str,
    finished_at: str,
    message: str = "",
    container_id: str = "",
) -> JsonObject:
    body: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if message:
        body["message"] = message
    if container_id:
        body["containerID"] = container_id
    return {"terminated": body}
