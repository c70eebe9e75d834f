"""Events about an object, as controllers and the kubelet record them (``kubectl describe``
lists them). Best effort: a failed event never blocks the component that sent it."""

from __future__ import annotations

import logging

from llmbatch.api.timefmt import now_rfc3339
from llmbatch_sandbox.kubeapi import JsonObject, KubeApi

log = logging.getLogger(__name__)


def build_event(
    involved: JsonObject, kind: str, reason: str, message: str, component: str
) -> JsonObject:
    meta = involved["metadata"]
    namespace = meta.get("namespace") or "default"
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", ""),
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
    }


async def record_event(
    api: KubeApi, involved: JsonObject, kind: str, reason: str, message: str, component: str
) -> None:
    event = build_event(involved, kind, reason, message, component)
    namespace = event["metadata"]["namespace"]
    try:
        await api.create(f"/api/v1/namespaces/{namespace}/events", event)
    except Exception as error:
        log.debug("event %s on %s not recorded: %s", reason, involved["metadata"]["name"], error)
