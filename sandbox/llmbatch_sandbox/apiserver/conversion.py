"""Shapes one stored object takes per served version: custom resources only change
``apiVersion``; events are stored as core/v1 and shown as events.k8s.io/v1 on that API."""

from __future__ import annotations

import copy
from typing import Any

from llmbatch_sandbox.apiserver.resources import ResourceType

JSON = dict[str, Any]

# events.k8s.io/v1 field <-> core/v1 field.
_EVENT_FIELDS = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def _is_events_v1(rt: ResourceType) -> bool:
    return rt.group == "events.k8s.io"


def to_storage(rt: ResourceType, obj: JSON) -> JSON:
    """The object as stored (core/v1 shape for events)."""
    out = copy.deepcopy(obj)
    if _is_events_v1(rt):
        for new, old in _EVENT_FIELDS:
            if new in out:
                out[old] = out.pop(new)
        if "reportingController" in out:
            out.setdefault("reportingComponent", out.pop("reportingController"))
        out["apiVersion"] = "v1"
    return out


def to_version(rt: ResourceType, obj: JSON) -> JSON:
    """The stored object as ``rt``'s version shows it."""
    out = copy.deepcopy(obj)
    if _is_events_v1(rt):
        for new, old in _EVENT_FIELDS:
            if old in out:
                out[new] = out.pop(old)
        if "reportingComponent" in out:
            out["reportingController"] = out.pop("reportingComponent")
        if not out.get("eventTime"):
            # Required in events.k8s.io/v1; legacy events get their first sighting instead.
            stamp = (
                out.get("deprecatedFirstTimestamp")
                or out.get("deprecatedLastTimestamp")
                or (out.get("metadata") or {}).get("creationTimestamp")
                or ""
            )
            if stamp:
                out["eventTime"] = stamp.replace("Z", ".000000Z") if "." not in stamp else stamp
    out["apiVersion"] = rt.api_version
    out["kind"] = rt.kind
    return out
