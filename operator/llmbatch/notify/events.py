"""OpenAI's batch webhook events: ``{id, object: "event", type, created_at, data: {id}}``.

An event's id is derived from what it describes (the BatchJob's uid and the event type), never
drawn at random: every retry, every gateway replica and a restarted operator send the same id,
so a receiver can de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import json

from llmbatch.api.batchjob import WEBHOOK_EVENTS
from llmbatch.api.phases import Phase

BATCH_EVENTS = WEBHOOK_EVENTS

_BY_PHASE = {
    Phase.SUCCEEDED: "batch.completed",
    Phase.FAILED: "batch.failed",
    Phase.EXPIRED: "batch.expired",
    Phase.CANCELLED: "batch.cancelled",
}


def event_type(phase: Phase | None) -> str | None:
    """The event a terminal phase sends; None for the others."""
    return _BY_PHASE.get(phase) if phase is not None else None


def event_id(source: str, kind: str) -> str:
    """``evt_`` and 32 hex digits, the same for the same (source, kind) everywhere."""
    return "evt_" + hashlib.sha256(f"{source}\n{kind}".encode()).hexdigest()[:32]


def event_body(evt_id: str, kind: str, created_at: int, batch_id: str) -> bytes:
    """The JSON body; the same bytes for the same arguments (the signature covers them)."""
    event = {
        "id": evt_id,
        "object": "event",
        "type": kind,
        "created_at": created_at,
        "data": {"id": batch_id},
    }
    return json.dumps(event, separators=(",", ":")).encode()
