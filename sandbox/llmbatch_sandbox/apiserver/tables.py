"""``meta.k8s.io/v1`` Table responses, as ``kubectl get`` asks for them: a CRD's
additionalPrinterColumns, and columns like the real printers' for the built-in kinds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from llmbatch_sandbox.apiserver import jsonpath
from llmbatch_sandbox.apiserver.resources import ResourceType

JSON = dict[str, Any]
Cell = Any

NAME_COLUMN: JSON = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept.replace(" ", "")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's duration format: 45s, 3m12s, 17m, 5h3m, 20h, 3d4h, 12d, 2y."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(obj: JSON, field: str = "creationTimestamp") -> str:
    stamp = parse_time((obj.get("metadata") or {}).get(field))
    if stamp is None:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - stamp).total_seconds())


def _col(name: str, kind: str = "string", priority: int = 0, description: str = "") -> JSON:
    return {
        "name": name,
        "type": kind,
        "format": "",
        "description": description,
        "priority": priority,
    }


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _pod_cells(obj: JSON) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for c in statuses:
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        _name(obj),
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts,
        age(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


def _job_status(obj: JSON) -> str:
    conditions = {
        c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
    }
    for kind in ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if conditions.get(kind) == "True":
            return {
                "FailureTarget": "FailureTarget",
                "SuccessCriteriaMet": "SuccessCriteriaMet",
            }.get(kind, kind)
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return "Running"


def _job_cells(obj: JSON) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    completions = spec.get("completions")
    succeeded = int(status.get("succeeded") or 0)
    shown = (
        f"{succeeded}/{completions}"
        if completions is not None
        else f"{succeeded}/1 of {spec.get('parallelism', 1)}"
    )
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if start:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    return [_name(obj), _job_status(obj), shown, duration, age(obj)]


def _event_cells(obj: JSON) -> list[Cell]:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp")
        or obj.get("eventTime")
        or (obj.get("metadata") or {}).get("creationTimestamp")
    )
    stamp = parse_time(last)
    seen = human_duration((datetime.now(UTC) - stamp).total_seconds()) if stamp else "<unknown>"
    target = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
    return [seen, obj.get("type", ""), obj.get("reason", ""), target, obj.get("message", "")]


_BUILTIN: dict[str, tuple[list[JSON], Callable[[JSON], list[Cell]]]] = {
    "pods": (
        [
            NAME_COLUMN,
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
        ],
        _pod_cells,
    ),
    "jobs": (
        [NAME_COLUMN, _col("Status"), _col("Completions"), _col("Duration"), _col("Age")],
        _job_cells,
    ),
    "namespaces": (
        [NAME_COLUMN, _col("Status"), _col("Age")],
        lambda o: [_name(o), (o.get("status") or {}).get("phase", ""), age(o)],
    ),
    "events": (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        _event_cells,
    ),
    "secrets": (
        [NAME_COLUMN, _col("Type"), _col("Data", "integer"), _col("Age")],
        lambda o: [_name(o), o.get("type", "Opaque"), len(o.get("data") or {}), age(o)],
    ),
    "configmaps": (
        [NAME_COLUMN, _col("Data", "integer"), _col("Age")],
        lambda o: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)],
    ),
    "customresourcedefinitions": (
        [NAME_COLUMN, _col("Created At", "date")],
        lambda o: [_name(o), (o.get("metadata") or {}).get("creationTimestamp", "")],
    ),
}


def _custom_columns(rt: ResourceType) -> tuple[list[JSON], Callable[[JSON], list[Cell]]]:
    specs = list(rt.printer_columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    columns = [NAME_COLUMN] + [
        {
            "name": c.get("name", ""),
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in specs
    ]

    def cells(obj: JSON) -> list[Cell]:
        row: list[Cell] = [_name(obj)]
        for spec in specs:
            found = jsonpath.find(obj, str(spec.get("jsonPath", "")))
            if not found or found[0] is None:
                row.append(None)
                continue
            value = found[0]
            if spec.get("type") == "date":
                # The API server humanizes date columns itself ("5m"), as apiextensions does.
                stamp = parse_time(value)
                if stamp is not None:
                    value = human_duration((datetime.now(UTC) - stamp).total_seconds())
            elif spec.get("type", "string") == "string" and not isinstance(value, str):
                value = _render_scalar(value)
            row.append(value)
        return row

    return columns, cells


def _render_scalar(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def columns_for(rt: ResourceType) -> tuple[list[JSON], Callable[[JSON], list[Cell]]]:
    if rt.custom:
        return _custom_columns(rt)
    if rt.plural in _BUILTIN and rt.group in ("", "batch", "apiextensions.k8s.io"):
        return _BUILTIN[rt.plural]
    return [NAME_COLUMN, _col("Age")], lambda o: [_name(o), age(o)]


def partial_metadata(obj: JSON) -> JSON:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(rt: ResourceType, objs: list[JSON], include: str, list_meta: JSON) -> JSON:
    columns, cells = columns_for(rt)
    rows = []
    for obj in objs:
        row: JSON = {"cells": cells(obj)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    }
