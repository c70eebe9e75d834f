"""spec.notify: once the batch is finished, its terminal event (batch.completed, batch.failed,
batch.expired or batch.cancelled) goes to the BatchJob's webhook, after the status write that
made it terminal, retried with backoff while the operator runs.

The delivery state lives in the annotation ``llmbatch.io/notify`` (JSON), so a restarted
operator carries on with the same event id rather than sending a new one; the id itself is
derived from the BatchJob's uid and the event type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmbatch.api.batchjob import WEBHOOK_EVENTS, BatchJobStatus
from llmbatch.api.gvk import LABEL_PREFIX
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action, DeliverWebhook
from llmbatch.notify.delivery import Delivery
from llmbatch.notify.events import event_id, event_type

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

NOTIFY_ANNOTATION = f"{LABEL_PREFIX}/notify"


def pending(obs: Observation, status: BatchJobStatus) -> Delivery | None:
    """The delivery the batch in ``status`` still owes its webhook; None when there is none
    (no spec.notify, not finished, an event it does not want, delivered or given up)."""
    notify = obs.spec.notify if obs.spec is not None else None
    kind = event_type(status.phase)
    if notify is None or kind is None or kind not in notify.events:
        return None
    stored = Delivery.from_json(obs.annotations.get(NOTIFY_ANNOTATION))
    if stored is not None and stored.type == kind:
        return stored if stored.state == "pending" else None
    finished = status.completion_time or obs.now
    return Delivery(
        event=event_id(obs.uid or obs.name, kind), type=kind, created_at=int(finished.timestamp())
    )


def owes_webhook(body: Mapping[str, Any]) -> bool:
    """Whether a finished BatchJob still owes its webhook an event (so its daemon must live):
    it has spec.notify, wants its phase's event, and no delivery has ended (delivered or
    given up) yet. Reads the raw object, as kopf's daemon filter sees it."""
    spec = body.get("spec") or {}
    notify = spec.get("notify")
    if not isinstance(notify, Mapping):
        return False
    try:
        kind = event_type(Phase(str((body.get("status") or {}).get("phase"))))
    except ValueError:
        return False
    if kind is None or kind not in notify.get("events", WEBHOOK_EVENTS):
        return False
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    stored = Delivery.from_json(annotations.get(NOTIFY_ANNOTATION))
    return stored is None or stored.type != kind or stored.state == "pending"


def deliveries(obs: Observation, status: BatchJobStatus) -> tuple[Action, ...]:
    """The attempt to make in this pass, if one is due."""
    delivery = pending(obs, status)
    if delivery is None or not delivery.due(obs.now.timestamp()):
        return ()
    return (DeliverWebhook(delivery),)


def seconds_to_retry(obs: Observation, status: BatchJobStatus) -> float | None:
    """Seconds until the next attempt is due (zero: now); None when nothing is owed."""
    delivery = pending(obs, status)
    if delivery is None:
        return None
    return max(0.0, delivery.next_at - obs.now.timestamp())
