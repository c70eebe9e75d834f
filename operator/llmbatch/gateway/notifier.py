"""Sends the tenants' webhooks for gateway batches: one event per terminal transition
(``batch.completed``, ``batch.failed``, ``batch.expired``, ``batch.cancelled``) to each of the
tenant's endpoints, signed per Standard Webhooks, retried with backoff for about 16 hours.

The delivery state of each (batch, endpoint) lives on the BatchJob, in the annotation
``llmbatch.io/webhook-<endpoint id>``, so a restart or another replica carries on where this one
stopped. Only one replica sends an attempt: it first claims it with a merge patch conditional on
the BatchJob's resourceVersion (a lost race answers 409 and that replica stays quiet), moving
the next attempt a claim period ahead, so a replica that dies mid-send is replaced after it.
The event id comes from the BatchJob's uid and the event type, so should two sends ever happen
they carry the same ``webhook-id`` and the receiver drops the second. Endpoints only hear of
batches that finished after they were registered.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

from llmbatch.api.gvk import LABEL_PREFIX
from llmbatch.gateway.batches import BATCH_ID_LABEL, TENANT_LABEL, output_created_at, phase_of
from llmbatch.gateway.informer import MANAGED_SELECTOR
from llmbatch.gateway.webhooks import WebhookEndpoint
from llmbatch.kube import Conflict, NotFound
from llmbatch.notify.delivery import Delivery, attempt
from llmbatch.notify.events import event_body, event_id, event_type

if TYPE_CHECKING:
    from llmbatch.gateway.state import Gateway

log = logging.getLogger(__name__)

DELIVERY_ANNOTATION_PREFIX = f"{LABEL_PREFIX}/webhook-"
# A claimed attempt is this replica's for this long; after it, another may try.
CLAIM_SECONDS = 60.0


def delivery_annotation(endpoint_id: str) -> str:
    return DELIVERY_ANNOTATION_PREFIX + endpoint_id


def pending_delivery(job: dict[str, Any], endpoint: WebhookEndpoint) -> Delivery | None:
    """The delivery this batch owes this endpoint now, or None (not finished, finished before
    the endpoint existed, or delivered or given up already)."""
    kind = event_type(phase_of(job))
    if kind is None:
        return None
    finished = output_created_at(job)
    if finished and finished < int(endpoint.created_unix):
        return None
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    stored = Delivery.from_json(annotations.get(delivery_annotation(endpoint.id)))
    if stored is not None and stored.type == kind:
        return stored if stored.state == "pending" else None
    source = str(meta.get("uid") or meta["name"])
    return Delivery(event=event_id(source, kind), type=kind, created_at=finished)


class Notifier:
    def __init__(self, gateway: Gateway, client: httpx.AsyncClient | None = None) -> None:
        self.gateway = gateway
        self.client = client or httpx.AsyncClient(follow_redirects=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run_once(self) -> int:
        """Make every attempt that is due; returns how many were made."""
        made = 0
        for job in await self.gateway.jobs.list(MANAGED_SELECTOR):
            if event_type(phase_of(job)) is None:
                continue
            tenant = (job["metadata"].get("labels") or {}).get(TENANT_LABEL, "")
            for endpoint in await self.gateway.webhooks.for_tenant(tenant):
                delivery = pending_delivery(job, endpoint)
                now = self.gateway.clock()
                if delivery is not None and delivery.due(now):
                    made += await self._send(job, endpoint, delivery, now)
        return made

    async def _patch(self, name: str, key: str, value: Delivery, version: str | None) -> bool:
        meta: dict[str, Any] = {"annotations": {key: value.to_json()}}
        if version is not None:
            meta["resourceVersion"] = version
        try:
            patched = await self.gateway.kube.patch_batchjob(name, {"metadata": meta})
        except (Conflict, NotFound):
            return False
        self.gateway.jobs.remember(patched)
        return True

    async def _send(
        self, job: dict[str, Any], endpoint: WebhookEndpoint, delivery: Delivery, now: float
    ) -> int:
        meta = job["metadata"]
        name, key = meta["name"], delivery_annotation(endpoint.id)
        claim = replace(delivery, next_at=now + CLAIM_SECONDS)
        if not await self._patch(name, key, claim, str(meta.get("resourceVersion", "")) or None):
            return 0  # another replica claimed it, or the batch changed: look again next time
        batch_id = (meta.get("labels") or {}).get(BATCH_ID_LABEL, name)
        body = event_body(delivery.event, delivery.type, delivery.created_at or int(now), batch_id)
        allow = self.gateway.config.webhooks.allow_private_targets
        outcome = await attempt(
            endpoint.url,
            endpoint.secret,
            delivery,
            body,
            now,
            allow_private=allow,
            client=self.client,
        )
        done = delivery.after(outcome, now)
        if not outcome.ok:
            log.warning(
                "webhook %s for %s to %s failed (attempt %d, %s): %s",
                delivery.event,
                batch_id,
                endpoint.id,
                done.attempts,
                done.state,
                outcome.error,
            )
        # No precondition: the claim makes this replica the only writer until it expires.
        await self._patch(name, key, done, None)
        return 1
