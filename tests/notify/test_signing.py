"""Standard Webhooks signing: our verify accepts what we sign, rejects tampering, stale
timestamps and other secrets; the official openai SDK's verifier accepts our signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import openai
import pytest

from llmbatch.notify.signing import (
    InvalidSignature,
    new_secret,
    secret_key,
    sign_headers,
    signature,
    verify,
)

BODY = b'{"id":"evt_1","object":"event","type":"batch.completed"}'


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_secret() -> None:
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert (
        signature(secret, "msg_1", 1700000000, BODY) == "v1," + base64.b64encode(expected).decode()
    )


def test_verify_accepts_own_signature_and_rotated_lists() -> None:
    secret, old = new_secret(), new_secret()
    now = 1_800_000_000
    headers = sign_headers(secret, "evt_a", now, BODY)
    assert verify(secret, headers, BODY, now=now + 10) == "evt_a"
    # Several signatures (a rotation): any one matching is enough.
    rotated = dict(headers)
    rotated["webhook-signature"] = (
        signature(old, "evt_a", now, BODY) + " " + headers["webhook-signature"]
    )
    assert verify(secret, rotated, BODY, now=now) == "evt_a"


@pytest.mark.parametrize(
    "change",
    ["body", "id", "secret", "stale", "missing"],
)
def test_verify_rejects(change: str) -> None:
    secret = new_secret()
    now = 1_800_000_000
    headers = sign_headers(secret, "evt_a", now, BODY)
    body, check_secret, at = BODY, secret, now
    if change == "body":
        body = BODY.replace(b"completed", b"failed")
    elif change == "id":
        headers["webhook-id"] = "evt_b"
    elif change == "secret":
        check_secret = new_secret()
    elif change == "stale":
        at = now + 301
    else:
        del headers["webhook-signature"]
    with pytest.raises(InvalidSignature):
        verify(check_secret, headers, body, now=at)


def test_the_official_sdk_verifies_our_signature() -> None:
    secret = new_secret()
    headers = sign_headers(secret, "evt_sdk", int(time.time()), BODY)
    client = openai.OpenAI(api_key="unused", webhook_secret=secret)
    client.webhooks.verify_signature(BODY, headers)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(BODY + b" ", headers)


SHORT = "whsec_" + base64.b64encode(b"short").decode()


@pytest.mark.parametrize("bad", ["abc", "whsec_!!!", SHORT])
def test_secret_key_refuses_what_is_not_a_whsec_secret(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)
