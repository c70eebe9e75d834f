"""Standard Webhooks (https://www.standardwebhooks.com), the scheme OpenAI's webhooks use.

Headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"``, keyed with the base64-decoded
part of a ``whsec_`` secret; several space-separated signatures are allowed so a secret can be
rotated). The receiver checks the signature and that the timestamp is recent, which bounds
replays; the id lets it drop a delivery it has already processed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# How far a receiver lets the timestamp stray from its clock (Standard Webhooks: 5 minutes).
DEFAULT_TOLERANCE = 300


class InvalidSignature(Exception):
    """The delivery is not signed with the secret, or its timestamp is out of tolerance."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret. Raises ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError("a webhook secret holds at least 16 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> str:
    """Check a delivery; returns its ``webhook-id``. Raises InvalidSignature."""
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    given = lowered.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or not given:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(now - int(stamp)) > tolerance:
        raise InvalidSignature(f"webhook-timestamp {stamp} is more than {tolerance} s off")
    expected = signature(secret, msg_id, int(stamp), body)
    for candidate in given.split():
        if hmac.compare_digest(candidate, expected):
            return msg_id
    raise InvalidSignature("no webhook-signature matches the secret")
