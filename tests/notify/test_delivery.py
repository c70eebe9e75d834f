"""One event's delivery: signed POSTs to a local receiver, the backoff schedule with a moved
clock (no sleeps), the same webhook-id on every retry, the state surviving a JSON round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from llmbatch.notify.delivery import BACKOFF_SECONDS, Attempt, Delivery, attempt
from llmbatch.notify.events import event_body, event_id
from llmbatch.notify.signing import new_secret
from tests.notify.receiver import Receiver

NOW = 1_800_000_000.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = {"now": NOW}
    recv = Receiver(secret=new_secret(), fail_first=2, clock=lambda: box["now"])
    recv.box = box  # type: ignore[attr-defined]
    yield recv
    recv.close()


def test_event_ids_are_deterministic_and_distinct_per_type() -> None:
    assert event_id("uid-1", "batch.completed") == event_id("uid-1", "batch.completed")
    assert event_id("uid-1", "batch.completed") != event_id("uid-1", "batch.failed")
    assert event_id("uid-1", "batch.completed").startswith("evt_")


def test_backoff_retries_for_more_than_an_hour_then_gives_up() -> None:
    delivery = Delivery(event="evt_x", type="batch.completed", created_at=1)
    now = NOW
    failed = Attempt(ok=False, error="HTTP 503")
    while delivery.state == "pending":
        assert delivery.due(now)
        delivery = delivery.after(failed, now)
        if delivery.state == "pending":
            assert not delivery.due(now)
            now = delivery.next_at
    assert delivery.state == "failed"
    assert delivery.attempts == len(BACKOFF_SECONDS) + 1
    assert now - NOW == sum(BACKOFF_SECONDS) > 3600
    assert Delivery.from_json(delivery.to_json()) == delivery


def test_retries_reach_a_receiver_that_fails_first(receiver: Receiver) -> None:
    body = event_body("evt_r", "batch.completed", int(NOW), "batch_abc")
    delivery = Delivery(event="evt_r", type="batch.completed", created_at=int(NOW))

    async def run() -> Delivery:
        state = delivery
        async with httpx.AsyncClient() as client:
            now = NOW
            while state.state == "pending":
                receiver.box["now"] = now  # type: ignore[attr-defined]
                outcome = await attempt(
                    receiver.url,
                    receiver.secret,
                    state,
                    body,
                    now,
                    allow_private=True,
                    client=client,
                )
                state = state.after(outcome, now)
                now = max(now, state.next_at)
        return state

    final = asyncio.run(run())
    assert final.state == "delivered"
    assert final.attempts == 3
    assert [r.status for r in receiver.received] == [503, 503, 200]
    assert all(r.verified for r in receiver.received)
    assert {r.headers["webhook-id"] for r in receiver.received} == {"evt_r"}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert stamps == [int(NOW), int(NOW) + BACKOFF_SECONDS[0], int(NOW) + sum(BACKOFF_SECONDS[:2])]


def test_a_refused_target_is_an_outcome_not_a_crash() -> None:
    delivery = Delivery(event="evt_l", type="batch.failed", created_at=1)

    async def run() -> Attempt:
        return await attempt("http://127.0.0.1:9/x", new_secret(), delivery, b"{}", NOW)

    outcome = asyncio.run(run())
    assert not outcome.ok
    assert "loopback" in outcome.error
