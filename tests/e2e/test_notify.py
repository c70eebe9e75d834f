"""spec.notify end to end on the sandbox: a BatchJob applied with kubectl names a webhook and a
Secret with its signing secret; the real operator sends the terminal event to a receiver on
127.0.0.1 that verifies the signature and fails the first attempt, and records the delivery
in the BatchJob's llmbatch.io/notify annotation. The batch is cancelled at creation, so no
shard runs: the test is about the webhook, not inference."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator

import pytest

from llmbatch.notify.events import event_id
from llmbatch.notify.signing import new_secret
from tests.e2e.cluster import Kubectl, OperatorProcess, wait_for
from tests.e2e.conftest import NAMESPACE, BatchJobFactory
from tests.notify.receiver import Receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        bool(os.environ.get("LLMBATCH_E2E_KUBECONFIG")),
        reason="the receiver listens on 127.0.0.1, which a real cluster's operator cannot reach",
    ),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver(secret=new_secret(), fail_first=1, clock=time.time)
    yield recv
    recv.close()


def test_the_operator_sends_the_terminal_event_once_delivered(
    kubectl: Kubectl, operator: OperatorProcess, new_batchjob: BatchJobFactory, receiver: Receiver
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "e2e-webhook", "namespace": NAMESPACE},
        "data": {"signing": base64.b64encode(receiver.secret.encode()).decode()},
    }
    kubectl.apply(secret)
    body = new_batchjob(
        "notify",
        upload=False,
        cancel=True,
        notify={
            "webhookUrl": receiver.url,
            "webhookSecretRef": {"name": "e2e-webhook", "key": "signing"},
        },
    )
    kubectl.apply(body)
    name = body["metadata"]["name"]
    kubectl.wait_phase(name, "Cancelled", timeout=60)

    def delivered() -> dict[str, object] | None:
        job = kubectl.get("batchjob", name) or {}
        raw = (job.get("metadata", {}).get("annotations") or {}).get("llmbatch.io/notify")
        state: dict[str, object] | None = json.loads(raw) if raw else None
        return state if state and state.get("state") == "delivered" else None

    # The first attempt fails (503); the retry 5 s later is answered 200.
    try:
        state = wait_for("the webhook to be delivered", delivered, timeout=60)
    except AssertionError as exc:
        job = kubectl.get("batchjob", name) or {}
        raise AssertionError(
            f"{exc}\nannotations: {job.get('metadata', {}).get('annotations')}\n"
            f"received: {[(r.status, r.verified) for r in receiver.received]}\n"
            f"operator log:\n{operator.log()[-3000:]}"
        ) from None
    assert state["attempts"] == 2
    assert [r.status for r in receiver.received] == [503, 200]
    assert all(r.verified for r in receiver.received)
    uid = (kubectl.get("batchjob", name) or {})["metadata"]["uid"]
    assert {r.headers["webhook-id"] for r in receiver.received} == {
        event_id(uid, "batch.cancelled")
    }
    event = receiver.received[-1].event
    assert (event["type"], event["object"], event["data"]) == (
        "batch.cancelled",
        "event",
        {"id": name},
    )
