"""The I/O side of spec.notify: read the signing secret, make one signed attempt, record the
outcome in the BatchJob's ``llmbatch.io/notify`` annotation, and tell the daemon when to look
again. The daemon keeps the last annotation it wrote (``overlay``) so a pass that runs before
the watch delivers the patch does not send the same attempt twice.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmbatch.api.batchjob import NotifySpec
from llmbatch.controller.actions import Action, DeliverWebhook
from llmbatch.controller.policy.notify import NOTIFY_ANNOTATION, pending
from llmbatch.notify.delivery import Attempt, Delivery, attempt
from llmbatch.notify.events import event_body

if TYPE_CHECKING:
    from llmbatch.controller.decide import Decision
    from llmbatch.controller.observation import Observation
    from llmbatch.controller.runtime import Runtime

logger = logging.getLogger(__name__)
# Never spin: even a delivery that is due at once waits this long between passes.
MIN_RETRY_DELAY = 0.5


def overlay(batch: dict[str, Any], written: str | None) -> dict[str, Any]:
    """The BatchJob with the notify annotation this daemon wrote last (newer than the copy
    the watch has delivered so far)."""
    if written is None:
        return batch
    result = dict(batch)
    meta = copy.copy(dict(batch.get("metadata") or {}))
    meta["annotations"] = {**(meta.get("annotations") or {}), NOTIFY_ANNOTATION: written}
    result["metadata"] = meta
    return result


async def _signing_secret(runtime: Runtime, namespace: str, notify: NotifySpec) -> str | None:
    ref = notify.webhook_secret_ref
    secret = await runtime.api.get_secret(namespace, ref.name)
    value = ((secret or {}).get("data") or {}).get(ref.key)
    try:
        return base64.b64decode(value).decode() if value else None
    except (binascii.Error, UnicodeDecodeError):
        return None


async def _attempt(
    runtime: Runtime, batch: Mapping[str, Any], delivery: Delivery, now: float
) -> Attempt:
    meta = batch["metadata"]
    notify = NotifySpec.model_validate(batch["spec"]["notify"])
    secret = await _signing_secret(runtime, meta["namespace"], notify)
    if secret is None:
        ref = notify.webhook_secret_ref
        return Attempt(ok=False, error=f"Secret {ref.name} has no key {ref.key!r}")
    body = event_body(delivery.event, delivery.type, delivery.created_at, meta["name"])
    allow = runtime.config.webhooks_allow_private_targets
    return await attempt(notify.webhook_url, secret, delivery, body, now, allow_private=allow)


async def run(
    runtime: Runtime, batch: Mapping[str, Any], actions: list[Action], now: float
) -> str | None:
    """Make the pass's webhook attempt, if any; returns the annotation written (or None)."""
    written = None
    for action in actions:
        if not isinstance(action, DeliverWebhook):
            continue
        outcome = await _attempt(runtime, batch, action.delivery, now)
        done = action.delivery.after(outcome, now)
        meta = batch["metadata"]
        if not outcome.ok:
            logger.warning(
                "%s/%s: webhook %s attempt %d failed (%s): %s",
                meta["namespace"],
                meta["name"],
                done.event,
                done.attempts,
                done.state,
                outcome.error,
            )
        written = done.to_json()
        await runtime.api.annotate_batchjob(
            meta["namespace"], meta["name"], {NOTIFY_ANNOTATION: written}
        )
    return written


def next_delay(
    delay: float | None, obs: Observation, decision: Decision, written: str | None
) -> float | None:
    """The daemon's delay, shortened (or kept alive) for the next webhook attempt."""
    state = Delivery.from_json(written) if written else pending(obs, decision.status)
    if state is None or state.state != "pending":
        return delay
    retry = max(MIN_RETRY_DELAY, state.next_at - obs.now.timestamp())
    return retry if delay is None else min(delay, retry)
