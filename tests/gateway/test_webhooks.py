"""Webhooks for gateway batches, delivered to a local receiver (127.0.0.1, allowed by the
gateway's config) that verifies every signature: one signed OpenAI event per terminal
transition, retried with backoff while the receiver fails (the gateway's clock is moved, no
sleeps), the same webhook-id on every retry, one sender among replicas, nothing resent once
delivered, and the state kept on the BatchJob so a fresh replica carries on."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.webhooks import BatchCompletedWebhookEvent, BatchFailedWebhookEvent

from llmbatch.api.timefmt import rfc3339
from llmbatch.gateway.notifier import Notifier, delivery_annotation
from llmbatch.gateway.state import Gateway
from llmbatch.gateway.webhooks import WebhookEndpoint, WebhookStore
from llmbatch.notify.delivery import BACKOFF_SECONDS, Delivery
from llmbatch.storage import get_store
from tests.fixtures.s3 import S3Server
from tests.gateway.conftest import NAMESPACE, GatewayEnv, serve_gateway
from tests.gateway.test_sdk import batch_file, client
from tests.notify.receiver import Receiver


@pytest.fixture(scope="module")
def hooks_env(s3_server: S3Server) -> Iterator[GatewayEnv]:
    # No background notifier: the tests step it themselves, as replicas of their own.
    webhooks = {"enabled": False, "allowPrivateTargets": True}
    with serve_gateway(s3_server, webhooks=webhooks) as env:
        yield env


@pytest.fixture
def receiver(hooks_env: GatewayEnv) -> Iterator[Receiver]:
    recv = Receiver(clock=hooks_env.clock)
    yield recv
    recv.close()


def replica(env: GatewayEnv) -> Gateway:
    """A gateway replica's state, built fresh: it remembers nothing between calls."""
    store = get_store(f"s3://{env.bucket}/", env.settings)
    return Gateway(config=env.config, kube=env.kube.client(NAMESPACE), store=store, clock=env.clock)


def step(env: GatewayEnv, replicas: int = 1) -> int:
    """One notifier pass on each of ``replicas`` fresh replicas at once; attempts made."""

    async def run() -> int:
        notifiers = [Notifier(replica(env)) for _ in range(replicas)]
        try:
            return sum(await asyncio.gather(*(n.run_once() for n in notifiers)))
        finally:
            for n in notifiers:
                await n.aclose()

    return asyncio.run(run())


def register(env: GatewayEnv, tenant: str, url: str) -> WebhookEndpoint:
    async def run() -> WebhookEndpoint:
        kube = env.kube.client(NAMESPACE)
        try:
            store = WebhookStore(kube, env.config.webhooks.secret)
            return await store.add(tenant, url, allow_private=True)
        finally:
            await kube.aclose()

    return asyncio.run(run())


def finished_batch(env: GatewayEnv, tenant: str, phase: str) -> str:
    sdk = client(env, env.key(tenant))
    uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(batch_file(1))), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    status: dict[str, Any] = {"phase": "Running"}
    env.kube.set_status(NAMESPACE, env.batch_name(batch.id), status)
    assert step(env) == 0  # nothing to send while it runs
    status = {"phase": phase, "completionTime": rfc3339(env.clock())}
    env.kube.set_status(NAMESPACE, env.batch_name(batch.id), status)
    return batch.id


def stored(env: GatewayEnv, batch_id: str, endpoint: WebhookEndpoint) -> Delivery | None:
    job = env.kube.get(NAMESPACE, "batchjobs", env.batch_name(batch_id))
    assert job is not None
    return Delivery.from_json(job["metadata"]["annotations"].get(delivery_annotation(endpoint.id)))


def test_completed_event_retried_until_the_receiver_answers(
    hooks_env: GatewayEnv, receiver: Receiver
) -> None:
    endpoint = register(hooks_env, "hooked", receiver.url)
    receiver.secret, receiver.fail_first = endpoint.secret, 2
    batch_id = finished_batch(hooks_env, "hooked", "Succeeded")

    assert step(hooks_env) == 1
    assert [r.status for r in receiver.received] == [503]
    assert step(hooks_env) == 0  # the retry is not due yet
    hooks_env.clock.advance(BACKOFF_SECONDS[0])
    assert step(hooks_env) == 1
    hooks_env.clock.advance(BACKOFF_SECONDS[1])
    assert step(hooks_env) == 1
    assert [r.status for r in receiver.received] == [503, 503, 200]
    hooks_env.clock.advance(24 * 3600)
    assert step(hooks_env) == 0  # delivered: never again

    assert all(r.verified for r in receiver.received)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1
    first = receiver.received[0]
    event = BatchCompletedWebhookEvent.model_validate(first.event)
    assert (event.id, event.type, event.object, event.data.id) == (
        ids.pop(),
        "batch.completed",
        "event",
        batch_id,
    )
    # The official SDK accepts the first delivery as it arrived (its clock is the real one).
    sdk = openai.OpenAI(api_key="unused", webhook_secret=endpoint.secret)
    unwrapped = sdk.webhooks.unwrap(first.body, first.headers)
    assert unwrapped.type == "batch.completed"
    state = stored(hooks_env, batch_id, endpoint)
    assert state is not None and (state.state, state.attempts) == ("delivered", 3)


def test_replicas_at_once_send_one_attempt(hooks_env: GatewayEnv, receiver: Receiver) -> None:
    endpoint = register(hooks_env, "twins", receiver.url)
    receiver.secret = endpoint.secret
    batch_id = finished_batch(hooks_env, "twins", "Failed")
    assert step(hooks_env, replicas=3) == 1
    assert len(receiver.received) == 1
    event = BatchFailedWebhookEvent.model_validate(receiver.received[0].event)
    assert event.data.id == batch_id
    assert receiver.received[0].verified


def test_a_bad_secret_is_seen_by_the_receiver(hooks_env: GatewayEnv, receiver: Receiver) -> None:
    endpoint = register(hooks_env, "wrongsecret", receiver.url)
    receiver.secret = register(hooks_env, "other", receiver.url).secret
    finished_batch(hooks_env, "wrongsecret", "Cancelled")
    assert step(hooks_env) == 1
    assert [(r.verified, r.status) for r in receiver.received] == [(False, 401)]
    assert receiver.received[0].event["type"] == "batch.cancelled"
    assert endpoint.id != ""


def test_endpoints_hear_only_of_batches_finished_after_they_were_added(
    hooks_env: GatewayEnv, receiver: Receiver
) -> None:
    batch_id = finished_batch(hooks_env, "late", "Expired")
    # The batch finished an hour "ago" by the gateway's clock, before the endpoint existed.
    hooks_env.kube.set_status(
        NAMESPACE,
        hooks_env.batch_name(batch_id),
        {"phase": "Expired", "completionTime": rfc3339(hooks_env.clock() - 3600 * 48)},
    )
    endpoint = register(hooks_env, "late", receiver.url)
    receiver.secret = endpoint.secret
    assert step(hooks_env) == 0
    assert receiver.received == []
