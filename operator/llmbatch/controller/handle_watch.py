"""Watch-event bodies: wake a BatchJob's daemon when its spec or one of its Jobs changed, and
keep the metrics of every BatchJob (finished ones included) current."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmbatch.api.gvk import KIND
from llmbatch.api.phases import Phase
from llmbatch.controller import metrics
from llmbatch.controller.policy.notify import owes_webhook
from llmbatch.controller.runtime import Wakers


def on_batchjob_event(wakers: Wakers, event_type: str | None, body: Mapping[str, Any]) -> None:
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return
    if event_type == "DELETED":
        metrics.TRACKER.forget(uid)
        wakers.generations.pop(uid, None)
        return
    metrics.TRACKER.observe(
        uid, body.get("status") or {}, str(meta.get("namespace") or ""), str(meta.get("name") or "")
    )
    generation = int(meta.get("generation") or 0)
    # Only spec changes (cancel, suspend) bump the generation; our own status writes do not.
    if wakers.generations.get(uid) not in (None, generation):
        wakers.wake(uid)
    wakers.generations[uid] = generation


def on_job_event(wakers: Wakers, body: Mapping[str, Any]) -> None:
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("controller"):
            wakers.wake(str(owner.get("uid")))


def needs_daemon(body: Mapping[str, Any]) -> bool:
    """Finished BatchJobs need no daemon, unless their Jobs still await ttl deletion or their
    webhook still awaits its event."""
    phase = (body.get("status") or {}).get("phase")
    try:
        finished = bool(phase) and Phase(str(phase)).is_terminal()
    except ValueError:
        finished = False
    if not finished or (body.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
        return True
    return owes_webhook(body)
