"""The BatchJob status as the typed model the CRD is generated from, and its wire form.

The controller computes a ``BatchJobStatus``; the merge patch is the difference between the
wire forms (camelCase, unset fields left out) of the old and the new status. No status key is
spelt here by hand: names come from the model's fields through its alias generator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llmbatch.api.batchjob import BatchJobStatus

logger = logging.getLogger(__name__)


def alias(field: str) -> str:
    """The wire name of a status field (``request_counts`` -> ``requestCounts``)."""
    return BatchJobStatus.model_fields[field].alias or field


_WIRE_NAMES = frozenset(alias(name) for name in BatchJobStatus.model_fields)
# Fields that change with every progress document; written at most every few seconds.
VOLATILE_FIELDS = frozenset(
    alias(name)
    for name in (
        "request_counts",
        "usage",
        "progress",
        "throughput",
        "eta",
        "shards",
        "gpu_seconds",
        "gpu_seconds_at",
        "cost_usd",
    )
)


def parse_status(raw: Mapping[str, Any] | None) -> BatchJobStatus:
    """The status as stored, read leniently: unknown keys are ignored, and a field (or a list
    item) that does not parse is dropped and logged, so a status written by another version
    of the operator never stops a pass."""
    data: dict[str, Any] = {k: v for k, v in (raw or {}).items() if k in _WIRE_NAMES}
    for _ in range(len(data) + 1):
        try:
            return BatchJobStatus.model_validate(data)
        except ValidationError as exc:
            logger.warning("ignoring status fields that do not parse: %s", exc.errors()[:3])
            _drop_invalid(data, exc)
    return BatchJobStatus()


def _drop_invalid(data: dict[str, Any], exc: ValidationError) -> None:
    """Remove what ``exc`` complains about: the list item when it is one, else the field."""
    items: dict[str, set[int]] = {}
    for error in exc.errors():
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(data.get(key), list):
            items.setdefault(key, set()).add(loc[1])
        else:
            data.pop(key, None)
    for key, bad in items.items():
        if key in data:
            data[key] = [item for i, item in enumerate(data[key]) if i not in bad]


def to_wire(status: BatchJobStatus) -> dict[str, Any]:
    """camelCase JSON, unset fields and empty lists left out (the CRD defaults neither)."""
    wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {key: value for key, value in wire.items() if value != []}


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level JSON merge patch from ``old`` to ``new`` (None deletes a field)."""
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


def status_patch(old: BatchJobStatus, new: BatchJobStatus) -> dict[str, Any]:
    return merge_patch(to_wire(old), to_wire(new))
