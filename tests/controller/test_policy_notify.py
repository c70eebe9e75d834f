"""spec.notify: the terminal event goes to the BatchJob's webhook after the status write that
made it terminal, under an id derived from the uid and the event type; the delivery state in
the llmbatch.io/notify annotation decides retries, so a restarted operator resends nothing new;
and the I/O step signs, sends and records one attempt (a local receiver verifies it)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller import notify_delivery
from llmbatch.controller.actions import DeliverWebhook
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.decide import decide
from llmbatch.controller.handle_watch import needs_daemon
from llmbatch.controller.policy import notify
from llmbatch.controller.runtime import Runtime
from llmbatch.notify.delivery import BACKOFF_SECONDS, Attempt, Delivery
from llmbatch.notify.events import event_id
from llmbatch.notify.signing import new_secret
from tests.controller.factories import at, batchjob, observed, validated
from tests.notify.receiver import Receiver

URL = "https://hooks.example.com/batches"
NOTIFY = {"webhookUrl": URL, "webhookSecretRef": {"name": "hook"}}


def annotated(body: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    body["metadata"]["annotations"] = {notify.NOTIFY_ANNOTATION: delivery.to_json()}
    return body


def test_the_terminal_transition_sends_its_event_after_the_status_write() -> None:
    decision = decide(observed(batchjob(cancel=True, notify=NOTIFY), at(0)))
    assert decision.phase == Phase.CANCELLED
    (action,) = decision.actions
    assert isinstance(action, DeliverWebhook)
    assert action.delivery.event == event_id("uid-1", "batch.cancelled")
    assert (action.delivery.type, action.delivery.attempts) == ("batch.cancelled", 0)
    # Without spec.notify, or when the event is not wanted: nothing.
    assert decide(observed(batchjob(cancel=True), at(0))).actions == []
    only_completed = {**NOTIFY, "events": ["batch.completed"]}
    assert decide(observed(batchjob(cancel=True, notify=only_completed), at(0))).actions == []


def test_nothing_is_sent_before_the_batch_is_finished() -> None:
    obs = observed(batchjob(validated("Running"), notify=NOTIFY), at(1))
    assert notify.pending(obs, obs.status) is None
    assert notify.seconds_to_retry(obs, obs.status) is None


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Expired", "Cancelled"])
def test_each_terminal_phase_has_its_event(phase: str) -> None:
    status = validated(phase, completionTime="2026-01-01T12:10:00Z")
    obs = observed(batchjob(status, notify=NOTIFY), at(11))
    delivery = notify.pending(obs, obs.status)
    assert delivery is not None
    kind = {"Succeeded": "completed", "Failed": "failed", "Expired": "expired"}.get(
        phase, "cancelled"
    )
    assert delivery.type == f"batch.{kind}"
    assert delivery.created_at == int(at(10).timestamp())


def test_the_stored_state_drives_retries_with_the_same_id() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    first = Delivery(
        event=event_id("uid-1", "batch.completed"), type="batch.completed", created_at=1
    )
    failed_once = first.after(Attempt(ok=False, error="HTTP 503"), at(10).timestamp())
    body = annotated(batchjob(status, notify=NOTIFY), failed_once)
    # Before the backoff passed: no attempt, and the daemon is told when to come back.
    early = observed(body, at(10))
    assert decide(early).actions == []
    assert notify.seconds_to_retry(early, early.status) == BACKOFF_SECONDS[0]
    # After it: one attempt of the same event, its count carried on (a restarted operator
    # reads the same annotation and does the same).
    due = decide(observed(body, at(10.1)))
    assert due.actions == [DeliverWebhook(failed_once)]
    # Delivered or given up: never again.
    for final in ("delivered", "failed"):
        done = Delivery.from_json(failed_once.to_json().replace('"pending"', f'"{final}"'))
        assert done is not None
        assert (
            decide(observed(annotated(batchjob(status, notify=NOTIFY), done), at(60))).actions == []
        )


def test_the_daemon_stays_for_a_pending_delivery_and_leaves_after_it() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    obs = observed(batchjob(status, notify=NOTIFY), at(10))
    decision = decide(obs)
    pending = decision.actions[0]
    assert isinstance(pending, DeliverWebhook)
    now = at(10).timestamp()
    failed = pending.delivery.after(Attempt(ok=False, error="x"), now)
    assert notify_delivery.next_delay(None, obs, decision, failed.to_json()) == BACKOFF_SECONDS[0]
    assert notify_delivery.next_delay(2.0, obs, decision, failed.to_json()) == 2.0
    delivered = pending.delivery.after(Attempt(ok=True, status=200), now)
    assert notify_delivery.next_delay(None, obs, decision, delivered.to_json()) is None


# --- The I/O step against a local receiver ------------------------------------------------------


@dataclass
class FakeApi:
    secret: str
    annotations: list[dict[str, str]] = field(default_factory=list)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        if name != "hook":
            return None
        return {"data": {"secret": base64.b64encode(self.secret.encode()).decode()}}

    async def annotate_batchjob(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> dict[str, Any]:
        self.annotations.append(dict(annotations))
        return {}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver(secret=new_secret(), fail_first=1, clock=lambda: at(10).timestamp())
    yield recv
    recv.close()


def test_one_signed_attempt_per_pass_recorded_on_the_batchjob(receiver: Receiver) -> None:
    api = FakeApi(receiver.secret)
    config = OperatorConfig(webhooks_allow_private_targets=True)
    runtime = Runtime(api=cast(Any, api), config=config)
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, notify={**NOTIFY, "webhookUrl": receiver.url})
    now = at(10).timestamp()

    def one_pass(body: dict[str, Any]) -> str | None:
        decision = decide(observed(body, at(10)))
        return asyncio.run(notify_delivery.run(runtime, body, decision.actions, now))

    written = one_pass(body)
    assert written is not None
    state = Delivery.from_json(written)
    assert state is not None and (state.state, state.attempts) == ("pending", 1)
    # The daemon's overlay: the next pass sees what was written, not the stale watch copy.
    body = notify_delivery.overlay(body, written)
    assert one_pass(body) is None  # not due yet
    body = notify_delivery.overlay(body, state.to_json().replace(str(state.next_at), str(now)))
    final = Delivery.from_json(one_pass(body))
    assert final is not None and (final.state, final.attempts) == ("delivered", 2)

    assert [r.status for r in receiver.received] == [503, 200]
    assert all(r.verified for r in receiver.received)
    assert {r.headers["webhook-id"] for r in receiver.received} == {state.event}
    assert receiver.received[1].event["data"] == {"id": "demo"}
    assert [a[notify.NOTIFY_ANNOTATION] for a in api.annotations] == [written, final.to_json()]


def test_loopback_targets_are_refused_unless_the_operator_allows_them(
    receiver: Receiver,
) -> None:
    api = FakeApi(receiver.secret)
    runtime = Runtime(api=cast(Any, api), config=OperatorConfig())
    status = validated("Failed", completionTime="2026-01-01T12:10:00Z")
    body = batchjob(status, notify={**NOTIFY, "webhookUrl": receiver.url})
    decision = decide(observed(body, at(10)))
    written = asyncio.run(notify_delivery.run(runtime, body, decision.actions, at(10).timestamp()))
    state = Delivery.from_json(written)
    assert state is not None and state.state == "pending" and "loopback" in state.error
    assert receiver.received == []


def test_a_finished_batchjob_keeps_its_daemon_while_its_webhook_is_owed() -> None:
    status = validated("Succeeded", completionTime="2026-01-01T12:10:00Z")
    assert not needs_daemon(batchjob(status))
    body = batchjob(status, notify=NOTIFY)
    assert notify.owes_webhook(body) and needs_daemon(body)
    pending_state = Delivery(event="evt_1", type="batch.completed", created_at=1, attempts=2)
    assert needs_daemon(annotated(batchjob(status, notify=NOTIFY), pending_state))
    for final in ("delivered", "failed"):
        done = Delivery(event="evt_1", type="batch.completed", created_at=1, state=final)
        assert not needs_daemon(annotated(batchjob(status, notify=NOTIFY), done))
    unwanted = batchjob(status, notify={**NOTIFY, "events": ["batch.failed"]})
    assert not needs_daemon(unwanted)
    assert not notify.owes_webhook(batchjob(validated("Running"), notify=NOTIFY))
